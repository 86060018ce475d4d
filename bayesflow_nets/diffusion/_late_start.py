"""Gaussian late start for few-step samplers (MATH.md §5, "Symmetry breaking / late start").

Instead of starting an ``n``-step sampler from ``N(0, I)`` at a large time, start from the
Gaussian with the mean and covariance of the noised training data at ``t_s`` and run the ``n``
steps on ``[0, t_s]``. For ``x_t = m x_0 + s ε`` those moments are exactly
``m μ`` and ``m² Σ + s² I`` (``μ``, ``Σ`` of the data, accumulated in streaming chunks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._schedules import AbstractSchedule

__all__ = [
    "GaussianStart",
    "streaming_moments",
    "gaussian_late_start",
    "critical_start_time",
    "LateStartSweep",
    "late_start_sweep",
]


class GaussianStart(eqx.Module):
    """``N(mean, factor factorᵀ + diag(diag))`` over events of shape ``shape``."""

    mean: Float[Array, " d"]
    factor: Float[Array, "d r"]
    diag: Float[Array, " d"]
    shape: tuple[int, ...] = eqx.field(static=True)

    def __check_init__(self):
        d = self.mean.shape[0]
        if self.factor.shape[0] != d or self.diag.shape != (d,):
            raise ValueError(
                f"GaussianStart: factor {self.factor.shape} and diag {self.diag.shape} must "
                f"match mean ({d},)."
            )
        if int(np.prod(self.shape)) != d:
            raise ValueError(f"GaussianStart: shape {self.shape} has not {d} entries.")

    @property
    def cov(self) -> Float[Array, "d d"]:
        return self.factor @ self.factor.T + jnp.diag(self.diag)

    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, " num *shape"]:
        """``num`` draws, shaped ``(num, *shape)``."""
        k1, k2 = jax.random.split(key)
        r = self.factor.shape[1]
        z1 = jax.random.normal(k1, (num, r), self.mean.dtype)
        z2 = jax.random.normal(k2, (num, self.mean.shape[0]), self.mean.dtype)
        x = self.mean + z1 @ self.factor.T + jnp.sqrt(self.diag) * z2
        return x.reshape(num, *self.shape)


def streaming_moments(
    data: Float[ArrayLike, " N *shape"], *, batch_size: int = 1024
) -> tuple[Float[Array, " d"], Float[Array, "d d"]]:
    """Mean and (1/N) covariance of flattened samples, accumulated over chunks of ``batch_size``.

    Sums are taken about the first sample (a shift) so float32 cancellation stays small.
    """
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"streaming_moments: batch_size must be an int >= 1, got {batch_size!r}.")
    n = data.shape[0]
    if n < 2:
        raise ValueError(f"streaming_moments: need at least 2 samples, got {n}.")
    shift = jnp.ravel(jnp.asarray(data[0]))
    d = shift.shape[0]

    @jax.jit
    def acc(carry, chunk):
        s1, s2 = carry
        c = chunk.reshape(chunk.shape[0], d) - shift
        return s1 + c.sum(0), s2 + c.T @ c

    s1 = jnp.zeros(d, shift.dtype)
    s2 = jnp.zeros((d, d), shift.dtype)
    for start in range(0, n, batch_size):
        s1, s2 = acc((s1, s2), jnp.asarray(data[start : start + batch_size]))
    mean_c = s1 / n
    cov = s2 / n - jnp.outer(mean_c, mean_c)
    return mean_c + shift, 0.5 * (cov + cov.T)


def gaussian_late_start(
    data: Float[ArrayLike, " N *shape"],
    schedule: AbstractSchedule,
    t_start: float,
    *,
    ridge: float = 0.0,
    rank: int | None = None,
    batch_size: int = 1024,
) -> GaussianStart:
    """The Gaussian of the noised data at ``t_start`` (MATH.md §5).

    ``ridge`` adds ``ridge·I`` (the paper uses 0.1 for large d); ``rank=r`` keeps the top ``r``
    eigenpairs and the residual diagonal (low-rank + diagonal); ``rank=None`` keeps the full
    covariance (stored as its Cholesky factor).
    """
    if ridge < 0:
        raise ValueError(f"gaussian_late_start: ridge must be >= 0, got {ridge}.")
    data_shape = tuple(np.shape(data)[1:])
    mu, sigma = streaming_moments(data, batch_size=batch_size)
    d = mu.shape[0]
    m = schedule.mean_coeff(t_start).astype(mu.dtype)
    s2 = schedule.variance(t_start).astype(mu.dtype)
    cov = m**2 * sigma + (s2 + ridge) * jnp.eye(d, dtype=mu.dtype)
    if rank is None:
        return GaussianStart(m * mu, jnp.linalg.cholesky(cov), jnp.zeros(d, mu.dtype), data_shape)
    if not (isinstance(rank, int) and 1 <= rank <= d):
        raise ValueError(
            f"gaussian_late_start: rank must be None or an int in [1, {d}], got {rank!r}."
        )
    lam, u = jnp.linalg.eigh(cov)
    lam, u = lam[-rank:], u[:, -rank:]
    factor = u * jnp.sqrt(jnp.maximum(lam, 0.0))
    diag = jnp.maximum(jnp.diag(cov) - jnp.sum(factor**2, axis=1), 0.0)
    return GaussianStart(m * mu, factor, diag, data_shape)


def critical_start_time(
    start_times: Float[ArrayLike, " n"], quality: Float[ArrayLike, " n"]
) -> float:
    """Critical start time: argmax of the second derivative of quality vs start time (MATH.md §5).

    Uses ``np.gradient`` twice (non-uniform grids allowed); ``start_times`` must increase.
    """
    ts = np.asarray(start_times, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if ts.ndim != 1 or ts.shape != q.shape or ts.shape[0] < 3:
        raise ValueError(
            f"critical_start_time: need 1-D start_times and quality of equal length >= 3, got "
            f"{ts.shape} and {q.shape}."
        )
    if np.any(np.diff(ts) <= 0):
        raise ValueError("critical_start_time: start_times must be strictly increasing.")
    second = np.gradient(np.gradient(q, ts), ts)
    return float(ts[int(np.argmax(second))])


class LateStartSweep(NamedTuple):
    start_times: np.ndarray
    quality: np.ndarray
    critical_time: float


def late_start_sweep(
    quality_fn: Callable[[float], float], start_times: Sequence[float] | Float[ArrayLike, " n"]
) -> LateStartSweep:
    """Evaluate ``quality_fn(t_s)`` over increasing start times and locate the critical time."""
    ts = np.asarray(start_times, dtype=np.float64)
    q = np.array([float(quality_fn(float(t))) for t in ts])
    return LateStartSweep(ts, q, critical_start_time(ts, q))

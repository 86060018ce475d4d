"""Delayed linear network model: simulator, log joint and NumPyro model (MATH.md §4).

Model (our choice, consistent with MATH.md §4; all times in seconds, one step = one TR)::

    x_0 = w_0,   x_{t+1} = F x_t + w_{t+1},   F = I + TR·A,   w_t ~ N(0, q² I)
    y_r(t) = Σ_j k_r[j] x_r(t − j) + σ_r ε_r(t),               ε ~ N(0, 1)

``A`` is a continuous-time coupling matrix (rows = target, columns = source, 1/s) that is
Euler-discretised at the sampling grid, so it is on the same scale as rDCM's ``A``. The
measurement kernel ``k_r`` is the region's double-gamma HRF (time dilation ``s_r``) sampled at
the TR grid and delayed by ``d_r`` seconds with a Fourier-domain fractional shift, then
truncated to ``kernel_length`` taps; it is a finite linear filter, so the model stays exactly
linear-Gaussian given ``(A, HP)`` (see ``kalman_log_likelihood``). The first ``burn_in`` steps
are simulated but not observed so the HRF history is filled. Values ``x_t`` for ``t < 0`` are 0.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jstats
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = [
    "CouplingModel",
    "CouplingParams",
    "double_gamma_hrf",
    "fractional_shift",
    "measurement_kernel",
    "simulate",
    "simulate_latent",
    "input_drive",
    "observe",
    "log_joint",
    "coupling_numpyro_model",
    "sample_prior",
    "stabilise",
    "check_data",
]


class CouplingParams(NamedTuple):
    """Parameters of the delayed network model: P = A, HP = (delays, hrf_scale, noise_scale)."""

    A: Float[Array, "N N"]
    delays: Float[Array, " N"]
    hrf_scale: Float[Array, " N"]
    noise_scale: Float[Array, " N"]


def _positive(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"argument {name!r} must be a real number, got {value!r}.") from err
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"argument {name!r} must be finite and > 0, got {value!r}.")
    return value


class CouplingModel(eqx.Module):
    """Static configuration and priors of the delayed network model (MATH.md §4).

    Priors (our choice): ``A_ii ~ N(diag_mean, diag_sd²)``, ``A_ij ~ N(0, offdiag_sd²)``,
    ``d_r ~ U(0, max_delay)``, ``s_r ~ LogNormal(0, hrf_scale_sd)``,
    ``σ_r ~ LogNormal(log noise_loc, noise_sd)``; state noise scale ``q = state_noise`` fixed.
    """

    n_nodes: int
    tr: float
    max_delay: float = 3.0
    hrf_length: float = 24.0
    state_noise: float = 1.0
    burn_in: int | None = None
    diag_mean: float = -0.5
    diag_sd: float = 0.1
    offdiag_sd: float = 0.3
    hrf_scale_sd: float = 0.1
    noise_loc: float = 0.1
    noise_sd: float = 0.5

    def __check_init__(self):
        if not isinstance(self.n_nodes, int) or isinstance(self.n_nodes, bool) or self.n_nodes < 1:
            raise ValueError(f"argument 'n_nodes' must be an int >= 1, got {self.n_nodes!r}.")
        for name in ("tr", "hrf_length", "state_noise", "diag_sd", "offdiag_sd", "hrf_scale_sd"):
            _positive(name, getattr(self, name))
        _positive("noise_loc", self.noise_loc)
        _positive("noise_sd", self.noise_sd)
        if not (math.isfinite(float(self.max_delay)) and float(self.max_delay) >= 0):
            raise ValueError(
                f"argument 'max_delay' must be finite and >= 0, got {self.max_delay!r}."
            )
        if self.burn_in is not None and (not isinstance(self.burn_in, int) or self.burn_in < 0):
            raise ValueError(
                f"argument 'burn_in' must be None or an int >= 0, got {self.burn_in!r}."
            )

    @property
    def kernel_length(self) -> int:
        """Number of taps L of the measurement kernel (HRF support plus the largest delay)."""
        return int(math.ceil((self.hrf_length + self.max_delay) / self.tr)) + 1

    @property
    def n_burn(self) -> int:
        """Unobserved leading steps (default: ``kernel_length``)."""
        return self.kernel_length if self.burn_in is None else self.burn_in

    @property
    def fft_length(self) -> int:
        """Zero-padded grid length used for the Fourier-domain shift."""
        need = self.kernel_length + int(math.ceil(40.0 / self.tr)) + 8
        return 1 << (need - 1).bit_length()

    def prior_mean_A(self, dtype=None) -> Float[Array, "N N"]:
        """Prior mean of A: ``diag_mean`` on the diagonal, 0 elsewhere."""
        return jnp.eye(self.n_nodes, dtype=dtype) * self.diag_mean

    def prior_sd_A(self, dtype=None) -> Float[Array, "N N"]:
        """Prior standard deviations of A."""
        eye = jnp.eye(self.n_nodes, dtype=dtype)
        return eye * self.diag_sd + (1 - eye) * self.offdiag_sd

    def min_time_points(self) -> int:
        """Shortest series accepted: the kernel must fit several times."""
        return 2 * self.kernel_length


def double_gamma_hrf(t: Float[Array, "..."], scale: Float[Array, "..."] | float = 1.0):
    """Canonical double-gamma HRF ``g₆(t/s) − g₁₆(t/s)/6`` (gamma pdfs, unit scale), 0 for t ≤ 0."""
    u = t / scale
    pos = u > 0
    u_safe = jnp.where(pos, u, 1.0)  # keeps gradients finite at and below t = 0
    h = jstats.gamma.pdf(u_safe, 6.0) - jstats.gamma.pdf(u_safe, 16.0) / 6.0
    return jnp.where(pos, h, 0.0)


def fractional_shift(
    signal: Float[Array, " M"], shift: Float[Array, ""] | float
) -> Float[Array, " M"]:
    """Delay a (circular, zero-padded) signal by ``shift`` samples via the Fourier shift theorem."""
    m = signal.shape[0]
    freqs = jnp.fft.rfftfreq(m).astype(signal.dtype)
    phase = jnp.exp(-2j * jnp.pi * freqs * shift)
    return jnp.fft.irfft(jnp.fft.rfft(signal) * phase, n=m).astype(signal.dtype)


def measurement_kernel(
    model: CouplingModel, delays: Float[Array, " N"], hrf_scale: Float[Array, " N"]
) -> Float[Array, "L N"]:
    """Per-region kernels ``k_r``: unit-sum HRF with dilation ``s_r``, shifted by ``d_r`` seconds."""
    m = model.fft_length
    t = jnp.arange(m, dtype=delays.dtype) * model.tr

    def one(d, s):
        h = double_gamma_hrf(t, s)
        h = h / jnp.sum(h)
        return fractional_shift(h, d / model.tr)[: model.kernel_length]

    return jax.vmap(one, out_axes=1)(delays, hrf_scale)


def simulate_latent(
    model: CouplingModel,
    A: Float[Array, "N N"],
    w: Float[Array, "S N"],
    drive: Float[Array, "S N"] | None = None,
) -> Float[Array, "S N"]:
    """Latent states: ``x_0 = w_0 + v_0``, ``x_t = F x_{t-1} + w_t + v_t`` (unit Jacobian in ``w``).

    ``drive`` ``v`` is the optional exogenous term, ``v_t = TR·C u_{t−1}`` (see ``input_drive``).
    """
    F = jnp.eye(model.n_nodes, dtype=A.dtype) + model.tr * A
    if drive is not None:
        w = w + drive

    def step(x, wt):
        x = F @ x + wt
        return x, x

    _, xs = jax.lax.scan(step, w[0], w[1:])
    return jnp.concatenate([w[:1], xs], axis=0)


def input_drive(
    model: CouplingModel, C: Float[Array, "N M"], inputs: Float[Array, "S M"]
) -> Float[Array, "S N"]:
    """Exogenous drive ``v_t = TR·C u_{t−1}`` (``v_0 = 0``) for inputs ``u`` on the full (burn-in + T) grid."""
    v = model.tr * inputs @ C.T
    return jnp.concatenate([jnp.zeros_like(v[:1]), v[:-1]], axis=0)


def observe(
    kernel: Float[Array, "L N"], X: Float[Array, "S N"], n_burn: int
) -> Float[Array, "T N"]:
    """Noise-free measurements ``Σ_j k_r[j] x_r(t−j)`` for the observed steps ``t >= n_burn``."""
    conv = jax.vmap(
        lambda x, k: jnp.convolve(x, k, mode="full")[: x.shape[0]], in_axes=(1, 1), out_axes=1
    )
    return conv(X, kernel)[n_burn:]


@eqx.filter_jit
def simulate(
    key: PRNGKeyArray,
    params: CouplingParams,
    model: CouplingModel,
    n_time: int,
    drive: Float[Array, "S N"] | None = None,
) -> tuple[Float[Array, "S N"], Float[Array, "T N"]]:
    """Draw ``(X, Y)``: latent states (burn-in included) and ``n_time`` noisy measurements.

    ``drive`` (optional, ``n_burn + n_time`` rows) adds exogenous input, see ``input_drive``.
    """
    k_w, k_e = jax.random.split(key)
    dtype = params.A.dtype
    s = model.n_burn + n_time
    w = model.state_noise * jax.random.normal(k_w, (s, model.n_nodes), dtype)
    X = simulate_latent(model, params.A, w, drive)
    kern = measurement_kernel(model, params.delays, params.hrf_scale)
    eps = jax.random.normal(k_e, (n_time, model.n_nodes), dtype)
    Y = observe(kern, X, model.n_burn) + params.noise_scale * eps
    return X, Y


def _log_prior(model: CouplingModel, params: CouplingParams):
    dtype = params.A.dtype
    lp = jnp.sum(jstats.norm.logpdf(params.A, model.prior_mean_A(dtype), model.prior_sd_A(dtype)))
    inside = jnp.all((params.delays >= 0) & (params.delays <= model.max_delay))
    lp_d = jnp.where(
        inside, -model.n_nodes * jnp.log(jnp.asarray(model.max_delay, dtype)), -jnp.inf
    )
    lp_s = jnp.sum(
        jstats.norm.logpdf(jnp.log(params.hrf_scale), 0.0, model.hrf_scale_sd)
        - jnp.log(params.hrf_scale)
    )
    lp_n = jnp.sum(
        jstats.norm.logpdf(jnp.log(params.noise_scale), math.log(model.noise_loc), model.noise_sd)
        - jnp.log(params.noise_scale)
    )
    return lp + lp_d + lp_s + lp_n


@eqx.filter_jit
def log_joint(
    model: CouplingModel, params: CouplingParams, X: Float[Array, "S N"], Y: Float[Array, "T N"]
) -> Float[Array, ""]:
    """``log p(A, HP, X, Y)`` written directly from the generative equations (the simulator's density)."""
    F = jnp.eye(model.n_nodes, dtype=X.dtype) + model.tr * params.A
    resid = jnp.concatenate([X[:1], X[1:] - X[:-1] @ F.T], axis=0)
    lp_x = jnp.sum(jstats.norm.logpdf(resid, 0.0, model.state_noise))
    kern = measurement_kernel(model, params.delays, params.hrf_scale)
    lp_y = jnp.sum(jstats.norm.logpdf(Y, observe(kern, X, model.n_burn), params.noise_scale))
    return _log_prior(model, params) + lp_x + lp_y


def coupling_numpyro_model(model: CouplingModel, n_time: int, Y: Float[Array, "T N"] | None = None):
    """The same model in NumPyro: sites ``A, delays, hrf_scale, noise_scale, w`` (innovations), ``Y``.

    ``X`` is a deterministic site (``x_t = F x_{t-1} + w_t`` has unit Jacobian, so the density
    of ``w`` is the density of ``X``).
    """
    n = model.n_nodes
    A = numpyro.sample("A", dist.Normal(model.prior_mean_A(), model.prior_sd_A()).to_event(2))
    delays = numpyro.sample("delays", dist.Uniform(0.0, model.max_delay).expand((n,)).to_event(1))
    hrf_scale = numpyro.sample(
        "hrf_scale", dist.LogNormal(0.0, model.hrf_scale_sd).expand((n,)).to_event(1)
    )
    noise_scale = numpyro.sample(
        "noise_scale",
        dist.LogNormal(math.log(model.noise_loc), model.noise_sd).expand((n,)).to_event(1),
    )
    s = model.n_burn + n_time
    w = numpyro.sample("w", dist.Normal(0.0, model.state_noise).expand((s, n)).to_event(2))
    X = numpyro.deterministic("X", simulate_latent(model, A, w))
    mean = observe(measurement_kernel(model, delays, hrf_scale), X, model.n_burn)
    numpyro.sample("Y", dist.Normal(mean, noise_scale).to_event(2), obs=Y)


def stabilise(
    model: CouplingModel, A: Float[Array, "N N"], radius: float = 0.95
) -> Float[Array, "N N"]:
    """Shrink the off-diagonal of ``A`` so that ``ρ(I + TR·A) ≤ radius`` (spectral-norm bound)."""
    eye = jnp.eye(model.n_nodes, dtype=A.dtype)
    diag_f = jnp.abs(1.0 + model.tr * jnp.diagonal(A))
    off = model.tr * A * (1 - eye)
    room = jnp.maximum(radius - jnp.max(diag_f), 0.0)
    norm = jnp.linalg.norm(off, ord=2) if model.n_nodes > 1 else jnp.asarray(0.0, A.dtype)
    c = jnp.minimum(1.0, room / jnp.maximum(norm, 1e-12))
    return A * eye + c * A * (1 - eye)


def sample_prior(key: PRNGKeyArray, model: CouplingModel, dtype=jnp.float32) -> CouplingParams:
    """One prior draw of ``(A, HP)``; ``A`` is shrunk to a stable system (``stabilise``)."""
    ka, kd, ks, kn = jax.random.split(key, 4)
    n = model.n_nodes
    A = model.prior_mean_A(dtype) + model.prior_sd_A(dtype) * jax.random.normal(ka, (n, n), dtype)
    A = jnp.where(
        jnp.eye(n, dtype=bool), jnp.minimum(A, -0.05 / model.tr), A
    )  # keep self-inhibition negative
    delays = jax.random.uniform(kd, (n,), dtype, 0.0, model.max_delay)
    hrf_scale = jnp.exp(model.hrf_scale_sd * jax.random.normal(ks, (n,), dtype))
    noise = model.noise_loc * jnp.exp(model.noise_sd * jax.random.normal(kn, (n,), dtype))
    return CouplingParams(stabilise(model, A), delays, hrf_scale, noise)


def check_data(Y, tr, model: CouplingModel | None = None, *, name: str = "Y") -> np.ndarray:
    """Validate a ``T×N`` data array and TR before any computation; returns a float array."""
    tr = _positive("TR", tr)
    arr = np.asarray(Y)
    if arr.ndim != 2:
        raise ValueError(
            f"argument {name!r} must be a 2-D array (T time points × N nodes), got shape {arr.shape}."
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"argument {name!r} must be numeric, got dtype {arr.dtype}.")
    if np.isnan(arr).any():
        bad = np.unique(np.nonzero(np.isnan(arr))[0])
        raise ValueError(
            f"argument {name!r} contains NaN at time points {bad[:10].tolist()}"
            f"{' …' if bad.size > 10 else ''}; missing data is not supported — drop or impute those rows."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"argument {name!r} contains ±inf values; pass finite data.")
    if model is not None:
        if arr.shape[1] != model.n_nodes:
            raise ValueError(
                f"argument {name!r} has {arr.shape[1]} nodes (columns) but the model has "
                f"n_nodes={model.n_nodes}; pass data with matching columns."
            )
        if abs(tr - model.tr) > 1e-9 * max(1.0, tr):
            raise ValueError(f"argument 'TR'={tr} does not match the model's tr={model.tr}.")
        if arr.shape[0] < model.min_time_points():
            raise ValueError(
                f"argument {name!r} has T={arr.shape[0]} time points, too short for the delay/HRF "
                f"range (kernel of {model.kernel_length} samples); need T >= {model.min_time_points()}."
            )
    elif arr.shape[0] < 8:
        raise ValueError(f"argument {name!r} has T={arr.shape[0]} time points; need at least 8.")
    return arr.astype(np.float64 if arr.dtype == np.float64 else np.float32)

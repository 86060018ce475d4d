"""Noise schedules (MATH.md §5).

Every schedule describes the Gaussian forward marginal ``x_t = m(t) x_0 + s(t) ε`` with
``ε ~ N(0, I)``. ``m`` is :meth:`AbstractSchedule.mean_coeff`, ``s²`` is
:meth:`AbstractSchedule.variance`. The equivalent variance-exploding time is
``τ(t) = s²/m²`` (for VP: ``τ = (1 − ᾱ)/ᾱ``), and ``x_t / m(t)`` is a VE state at time ``τ``.

The matching forward SDE is ``dx = f(t) x dt + g(t) dW`` with ``f = d log m / dt`` and
``g² = d s²/dt − 2 f s²`` (:meth:`drift_coeff`, :meth:`diffusion2`).
"""

from __future__ import annotations

import math
from abc import abstractmethod

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

__all__ = [
    "AbstractSchedule",
    "VESchedule",
    "VPSchedule",
    "DDPMSchedule",
    "ve_time_to_alpha_bar",
    "alpha_bar_to_ve_time",
    "vp_to_ve",
    "ve_to_vp",
]


def _positive_float(value, name: str, owner: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}.") from err
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{owner}: {name} must be positive and finite, got {value}.")
    return value


class AbstractSchedule(eqx.Module):
    """A Gaussian forward process ``x_t = m(t) x_0 + s(t) ε`` on ``t ∈ [t_min, t_max]``."""

    t_min: eqx.AbstractVar[float]
    t_max: eqx.AbstractVar[float]

    @abstractmethod
    def mean_coeff(self, t: ArrayLike) -> Array:
        """``m(t)``: the scale of ``x_0`` in ``x_t``."""

    @abstractmethod
    def variance(self, t: ArrayLike) -> Array:
        """``s(t)²``: the variance of the added noise."""

    def std(self, t: ArrayLike) -> Array:
        """``s(t)``."""
        return jnp.sqrt(self.variance(t))

    def alpha_bar(self, t: ArrayLike) -> Array:
        """VP-equivalent ``ᾱ = m² / (m² + s²) = 1 / (1 + τ)``."""
        return 1.0 / (1.0 + self.tau(t))

    def tau(self, t: ArrayLike) -> Array:
        """Equivalent VE time ``τ = s²/m²`` (MATH.md §5)."""
        return self.variance(t) / self.mean_coeff(t) ** 2

    def drift_coeff(self, t: ArrayLike) -> Array:
        """``f(t) = d log m/dt`` of the forward SDE ``dx = f x dt + g dW``."""
        return jax.grad(lambda u: jnp.log(self.mean_coeff(u)))(jnp.asarray(t, float))

    def diffusion2(self, t: ArrayLike) -> Array:
        """``g(t)² = d s²/dt − 2 f(t) s²(t)``."""
        t = jnp.asarray(t, float)
        return jax.grad(self.variance)(t) - 2.0 * self.drift_coeff(t) * self.variance(t)

    def marginal_sample(
        self, key: PRNGKeyArray, x0: Float[ArrayLike, "*shape"], t: ArrayLike
    ) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
        """Draw ``x_t ~ p(x_t | x_0)``; returns ``(x_t, ε)``. ``t`` broadcasts against ``x0``."""
        x0 = jnp.asarray(x0)
        eps = jax.random.normal(key, x0.shape, x0.dtype)
        return self.mean_coeff(t) * x0 + self.std(t) * eps, eps


class VESchedule(AbstractSchedule):
    """Variance exploding with ``σ² = t``: ``x_t = x_0 + √t ε`` (MATH.md §5).

    ``t`` runs over ``[sigma_min², sigma_max²]``; the SDE is ``dx = dW`` (``f = 0``, ``g² = 1``).
    """

    sigma_min: float
    sigma_max: float
    t_min: float
    t_max: float

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        self.sigma_min = _positive_float(sigma_min, "sigma_min", "VESchedule")
        self.sigma_max = _positive_float(sigma_max, "sigma_max", "VESchedule")
        if not self.sigma_min < self.sigma_max:
            raise ValueError(
                f"VESchedule: need sigma_min < sigma_max, got sigma_min={self.sigma_min}, "
                f"sigma_max={self.sigma_max}."
            )
        self.t_min = self.sigma_min**2
        self.t_max = self.sigma_max**2

    def mean_coeff(self, t: ArrayLike) -> Array:
        return jnp.ones_like(jnp.asarray(t, float))

    def variance(self, t: ArrayLike) -> Array:
        return jnp.asarray(t, float)

    def drift_coeff(self, t: ArrayLike) -> Array:
        return jnp.zeros_like(jnp.asarray(t, float))

    def diffusion2(self, t: ArrayLike) -> Array:
        return jnp.ones_like(jnp.asarray(t, float))


_VP_KINDS = ("linear", "cosine")


class VPSchedule(AbstractSchedule):
    """Variance preserving, continuous time ``t ∈ (0, 1]``: ``x_t = √ᾱ x_0 + √(1−ᾱ) ε``.

    ``kind="linear"``: ``β(t) = β_min + t (β_max − β_min)``, ``ᾱ = exp(−∫β)``.
    ``kind="cosine"``: ``ᾱ(t) = cos²(π/2 (t+s)/(1+s)) / cos²(π/2 s/(1+s))`` (Nichol & Dhariwal).
    """

    kind: str = eqx.field(static=True, default="linear")
    beta_min: float = 0.1
    beta_max: float = 20.0
    cosine_s: float = 0.008
    t_min: float = 1e-3
    t_max: float = 1.0

    def __check_init__(self):
        if self.kind not in _VP_KINDS:
            raise ValueError(f"VPSchedule: kind must be one of {_VP_KINDS}, got {self.kind!r}.")
        _positive_float(self.beta_min, "beta_min", "VPSchedule")
        _positive_float(self.beta_max, "beta_max", "VPSchedule")
        _positive_float(self.cosine_s, "cosine_s", "VPSchedule")
        _positive_float(self.t_min, "t_min", "VPSchedule")
        if not self.t_min < self.t_max <= 1.0:
            raise ValueError(
                f"VPSchedule: need 0 < t_min < t_max <= 1, got t_min={self.t_min}, "
                f"t_max={self.t_max}."
            )
        if self.kind == "cosine" and self.t_max >= 1.0:
            # ᾱ(1) = 0 exactly for the cosine schedule: keep m(t) > 0.
            raise ValueError(
                "VPSchedule: the cosine schedule has ᾱ(1) = 0; pass t_max < 1 (e.g. 0.999)."
            )

    def log_alpha_bar(self, t: ArrayLike) -> Array:
        """``log ᾱ(t)``."""
        t = jnp.asarray(t, float)
        if self.kind == "linear":
            return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)
        s = self.cosine_s
        f = jnp.cos(0.5 * jnp.pi * (t + s) / (1.0 + s))
        return 2.0 * (jnp.log(f) - math.log(math.cos(0.5 * math.pi * s / (1.0 + s))))

    def beta(self, t: ArrayLike) -> Array:
        """``β(t) = −d log ᾱ / dt``."""
        t = jnp.asarray(t, float)
        if self.kind == "linear":
            return self.beta_min + t * (self.beta_max - self.beta_min)
        s = self.cosine_s
        u = 0.5 * jnp.pi * (t + s) / (1.0 + s)
        return jnp.pi / (1.0 + s) * jnp.tan(u)

    def alpha_bar(self, t: ArrayLike) -> Array:
        return jnp.exp(self.log_alpha_bar(t))

    def mean_coeff(self, t: ArrayLike) -> Array:
        return jnp.exp(0.5 * self.log_alpha_bar(t))

    def variance(self, t: ArrayLike) -> Array:
        return -jnp.expm1(self.log_alpha_bar(t))

    def tau(self, t: ArrayLike) -> Array:
        return jnp.expm1(-self.log_alpha_bar(t))

    def drift_coeff(self, t: ArrayLike) -> Array:
        return -0.5 * self.beta(t)

    def diffusion2(self, t: ArrayLike) -> Array:
        return self.beta(t)


class DDPMSchedule(AbstractSchedule):
    """Discrete DDPM: ``β = linspace(beta_start, beta_end, num_steps)`` (MATH.md §5).

    Time is the number of noising steps, ``t ∈ [0, num_steps]``: ``ᾱ(k) = Π_{j<k} (1 − β_j)``,
    so ``ᾱ(0) = 1`` (clean data) and integer ``t = k`` is the usual DDPM index ``k − 1``. Between
    integers ``log ᾱ`` is interpolated linearly, which makes the continuous-time samplers usable.
    """

    log_alpha_bars: Float[Array, " T1"]
    num_steps: int = eqx.field(static=True)
    t_min: float
    t_max: float

    def __init__(self, beta_start: float = 1e-4, beta_end: float = 0.02, num_steps: int = 1000):
        beta_start = _positive_float(beta_start, "beta_start", "DDPMSchedule")
        beta_end = _positive_float(beta_end, "beta_end", "DDPMSchedule")
        if not (isinstance(num_steps, int) and num_steps >= 1):
            raise ValueError(f"DDPMSchedule: num_steps must be an int >= 1, got {num_steps!r}.")
        if not (beta_start <= beta_end < 1.0):
            raise ValueError(
                f"DDPMSchedule: need beta_start <= beta_end < 1, got {beta_start}, {beta_end}."
            )
        betas = jnp.linspace(beta_start, beta_end, num_steps)
        self.log_alpha_bars = jnp.concatenate([jnp.zeros(1), jnp.cumsum(jnp.log1p(-betas))])
        self.num_steps = num_steps
        self.t_min = 1.0
        self.t_max = float(num_steps)

    @property
    def betas(self) -> Float[Array, " T"]:
        return -jnp.expm1(jnp.diff(self.log_alpha_bars))

    def log_alpha_bar(self, t: ArrayLike) -> Array:
        t = jnp.asarray(t, float)
        grid = jnp.arange(self.num_steps + 1, dtype=self.log_alpha_bars.dtype)
        return jnp.interp(t, grid, self.log_alpha_bars)

    def alpha_bar(self, t: ArrayLike) -> Array:
        return jnp.exp(self.log_alpha_bar(t))

    def mean_coeff(self, t: ArrayLike) -> Array:
        return jnp.exp(0.5 * self.log_alpha_bar(t))

    def variance(self, t: ArrayLike) -> Array:
        return -jnp.expm1(self.log_alpha_bar(t))

    def tau(self, t: ArrayLike) -> Array:
        return jnp.expm1(-self.log_alpha_bar(t))


# --------------------------------------------------------------------------- conversions
def ve_time_to_alpha_bar(t: ArrayLike) -> Array:
    """VE time ``τ`` → VP ``ᾱ = 1/(1+τ)`` (MATH.md §5)."""
    return 1.0 / (1.0 + jnp.asarray(t, float))


def alpha_bar_to_ve_time(alpha_bar: ArrayLike) -> Array:
    """VP ``ᾱ`` → VE time ``τ = (1−ᾱ)/ᾱ`` (MATH.md §5)."""
    alpha_bar = jnp.asarray(alpha_bar, float)
    return (1.0 - alpha_bar) / alpha_bar


def vp_to_ve(x: Float[ArrayLike, "*shape"], alpha_bar: ArrayLike) -> tuple[Array, Array]:
    """Map a VP state at ``ᾱ`` to the VE state ``(x/√ᾱ, τ)`` with the same posterior over x_0."""
    alpha_bar = jnp.asarray(alpha_bar, float)
    return jnp.asarray(x) / jnp.sqrt(alpha_bar), alpha_bar_to_ve_time(alpha_bar)


def ve_to_vp(x: Float[ArrayLike, "*shape"], t: ArrayLike) -> tuple[Array, Array]:
    """Map a VE state at time ``t`` to the VP state ``(√ᾱ x, ᾱ)`` with ``ᾱ = 1/(1+t)``."""
    alpha_bar = ve_time_to_alpha_bar(t)
    return jnp.sqrt(alpha_bar) * jnp.asarray(x), alpha_bar

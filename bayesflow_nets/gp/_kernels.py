"""Kernels for (improper) Gaussian processes (MATH.md §3).

A kernel is a small Equinox module that writes :meth:`AbstractKernel.evaluate` on two *single*
points; the base class batches it to matrices (``kernel(X1, X2)``). Kernels combine with ``+``
and with positive scalar scaling (``2.0 * k``); proper kernels also multiply (``k1 * k2``).

Inputs: one point is a scalar (1-D inputs, ``X`` of shape ``(n,)``) or a vector of shape ``(d,)``
(``X`` of shape ``(n, d)``). Stationary kernels depend on ``τ = ‖x − x'‖``.

Proper kernels (positive definite): :class:`SquaredExponential`, :class:`Matern12`,
:class:`Matern32`, :class:`Matern52`, :class:`Periodic`.

Improper kernels (conditionally positive definite of order 1, ``k = −σ² γ(τ)`` for a variogram
``γ``): :class:`Brownian`, :class:`SmoothWalk`, :class:`MaternWalk`. A walk kernel ``−σ² γ`` is
the kernel of a process whose derivative is a stationary GP with covariance ``σ² c(τ)``:
``γ(τ) = ∫₀^τ (τ − u) c(u) du`` and ``Var(f(x) − f(x')) = 2σ² γ(τ)``. Such a kernel only defines
the distribution of *contrasts* (sums with zero total weight); :class:`ImproperGP` adds a flat
prior on the level.

Positive hyperparameters are stored as explicit ``log_*`` fields (the unconstrained leaves that
optimisers update); the positive values are properties.
"""

from __future__ import annotations

import functools
import math
from abc import abstractmethod

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._custom_types import Scalar

__all__ = [
    "AbstractKernel",
    "AbstractStationaryKernel",
    "SquaredExponential",
    "Matern12",
    "Matern32",
    "Matern52",
    "Periodic",
    "Brownian",
    "SmoothWalk",
    "MaternWalk",
    "Sum",
    "Scaled",
    "Product",
    "matern_correlation",
    "matern_walk_variogram",
    "smooth_walk_variogram",
]


def _log_positive(value, name: str, owner: str) -> Array:
    """Validate a positive scalar hyperparameter and return its log (a float array)."""
    if isinstance(value, jax.core.Tracer):
        return jnp.log(value)
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{owner}: {name} must be a positive real scalar, got {value!r}.") from err
    if arr.shape != ():
        raise ValueError(f"{owner}: {name} must be a scalar, got shape {arr.shape}.")
    if not (np.isfinite(arr) and arr > 0):
        raise ValueError(
            f"{owner}: {name} must be positive and finite, got {float(arr)}; pass e.g. "
            f"{name}=1.0 (it is stored as log_{name})."
        )
    return jnp.log(jnp.asarray(value, dtype=jnp.result_type(float)))


def _distance(x1: Array, x2: Array) -> Array:
    """Euclidean distance between two single points (scalars or vectors)."""
    diff = jnp.asarray(x1) - jnp.asarray(x2)
    if diff.ndim == 0:
        return jnp.abs(diff)
    sq = jnp.sum(diff**2)
    # Safe sqrt: finite gradients at zero distance.
    safe = jnp.where(sq > 0, sq, 1.0)
    return jnp.where(sq > 0, jnp.sqrt(safe), 0.0)


def _as_points(X: ArrayLike, name: str) -> Array:
    X = jnp.asarray(X)
    if X.ndim not in (1, 2):
        raise ValueError(
            f"{name} must have shape (n,) for 1-D inputs or (n, d), got shape {X.shape}."
        )
    return X


class AbstractKernel(eqx.Module):
    """A covariance function ``k(x, x')``; subclasses write :meth:`evaluate` on single points."""

    @abstractmethod
    def evaluate(self, x1: Array, x2: Array) -> Scalar:
        """``k(x1, x2)`` for two single points (scalars or ``(d,)`` vectors)."""

    @property
    @abstractmethod
    def is_improper(self) -> bool:
        """True when the kernel is only conditionally positive definite (order 1)."""

    def __call__(
        self, X1: Float[ArrayLike, " n *d"], X2: Float[ArrayLike, " m *d"] | None = None
    ) -> Float[Array, "n m"]:
        """The kernel matrix ``k(X1, X2)`` (``X2 = X1`` when omitted)."""
        X1 = _as_points(X1, "X1")
        X2 = X1 if X2 is None else _as_points(X2, "X2")
        if X1.shape[1:] != X2.shape[1:]:
            raise ValueError(
                f"X1 and X2 must have the same point shape, got {X1.shape[1:]} and {X2.shape[1:]}."
            )
        row = jax.vmap(self.evaluate, in_axes=(None, 0))
        return jax.vmap(row, in_axes=(0, None))(X1, X2)

    def diag(self, X: Float[ArrayLike, " n *d"]) -> Float[Array, " n"]:
        """``k(x_i, x_i)`` for each point."""
        X = _as_points(X, "X")
        return jax.vmap(lambda x: self.evaluate(x, x))(X)

    def __add__(self, other: AbstractKernel) -> Sum:
        if not isinstance(other, AbstractKernel):
            return NotImplemented
        return Sum(self, other)

    def __mul__(self, other) -> AbstractKernel:
        if isinstance(other, AbstractKernel):
            return Product(self, other)
        return Scaled(self, other)

    def __rmul__(self, other) -> AbstractKernel:
        if isinstance(other, AbstractKernel):
            return Product(other, self)
        return Scaled(self, other)


class AbstractStationaryKernel(AbstractKernel):
    """A kernel ``variance · κ(τ / ...)`` of the distance ``τ = ‖x − x'‖``."""

    log_variance: eqx.AbstractVar[Array]

    @property
    def variance(self) -> Array:
        return jnp.exp(self.log_variance)

    @abstractmethod
    def of_distance(self, tau: Array) -> Array:
        """The kernel as a function of the distance ``τ ≥ 0`` (elementwise)."""

    def evaluate(self, x1: Array, x2: Array) -> Scalar:
        return self.of_distance(_distance(x1, x2))


# ----------------------------------------------------------------------------- proper kernels


def matern_correlation(tau: ArrayLike, lengthscale: ArrayLike, nu: float) -> Array:
    """Matérn correlation ``c(τ)`` for half-integer ``ν = p + 1/2`` (``c(0) = 1``)."""
    p = _half_integer_order(nu, "nu", "matern_correlation")
    tau = jnp.asarray(tau)
    a = math.sqrt(2 * p + 1) / jnp.asarray(lengthscale)
    r = a * tau
    coeffs = _matern_poly_coeffs(p)
    poly = sum(c * (2 * r) ** k for k, c in enumerate(coeffs))
    return jnp.exp(-r) * poly


def _half_integer_order(nu, name: str, owner: str) -> int:
    try:
        p = float(nu) - 0.5
    except (TypeError, ValueError) as err:
        raise TypeError(f"{owner}: {name} must be a half-integer like 1.5, got {nu!r}.") from err
    if p < 0 or p != int(p) or p > 6:
        raise ValueError(
            f"{owner}: {name} must be a half-integer p + 1/2 with 0 ≤ p ≤ 6 "
            f"(e.g. 0.5, 1.5, 2.5), got {nu!r}."
        )
    return int(p)


def _matern_poly_coeffs(p: int) -> list[float]:
    """Coefficients ``b_k`` with ``c(τ) = e^{−r} Σ_k b_k (2r)^k``, ``r = √(2ν) τ / ℓ``."""
    out = [0.0] * (p + 1)
    for i in range(p + 1):
        k = p - i
        out[k] = (
            math.factorial(p)
            / math.factorial(2 * p)
            * math.factorial(p + i)
            / (math.factorial(i) * math.factorial(p - i))
        )
    return out


class SquaredExponential(AbstractStationaryKernel):
    """``variance · exp(−τ² / 2ℓ²)`` (proper)."""

    log_lengthscale: Array
    log_variance: Array

    def __init__(self, lengthscale: ArrayLike = 1.0, variance: ArrayLike = 1.0):
        self.log_lengthscale = _log_positive(lengthscale, "lengthscale", "SquaredExponential")
        self.log_variance = _log_positive(variance, "variance", "SquaredExponential")

    @property
    def lengthscale(self) -> Array:
        return jnp.exp(self.log_lengthscale)

    @property
    def is_improper(self) -> bool:
        return False

    def of_distance(self, tau: Array) -> Array:
        return self.variance * jnp.exp(-0.5 * (tau / self.lengthscale) ** 2)


class Matern12(AbstractStationaryKernel):
    """Matérn ν = 1/2: ``variance · exp(−τ/ℓ)`` (proper)."""

    log_lengthscale: Array
    log_variance: Array

    def __init__(self, lengthscale: ArrayLike = 1.0, variance: ArrayLike = 1.0):
        self.log_lengthscale = _log_positive(lengthscale, "lengthscale", "Matern12")
        self.log_variance = _log_positive(variance, "variance", "Matern12")

    @property
    def lengthscale(self) -> Array:
        return jnp.exp(self.log_lengthscale)

    @property
    def is_improper(self) -> bool:
        return False

    def of_distance(self, tau: Array) -> Array:
        return self.variance * jnp.exp(-tau / self.lengthscale)


class Matern32(AbstractStationaryKernel):
    """Matérn ν = 3/2: ``variance · (1 + √3τ/ℓ) exp(−√3τ/ℓ)`` (proper)."""

    log_lengthscale: Array
    log_variance: Array

    def __init__(self, lengthscale: ArrayLike = 1.0, variance: ArrayLike = 1.0):
        self.log_lengthscale = _log_positive(lengthscale, "lengthscale", "Matern32")
        self.log_variance = _log_positive(variance, "variance", "Matern32")

    @property
    def lengthscale(self) -> Array:
        return jnp.exp(self.log_lengthscale)

    @property
    def is_improper(self) -> bool:
        return False

    def of_distance(self, tau: Array) -> Array:
        r = math.sqrt(3.0) * tau / self.lengthscale
        return self.variance * (1 + r) * jnp.exp(-r)


class Matern52(AbstractStationaryKernel):
    """Matérn ν = 5/2: ``variance · (1 + r + r²/3) exp(−r)``, ``r = √5τ/ℓ`` (proper)."""

    log_lengthscale: Array
    log_variance: Array

    def __init__(self, lengthscale: ArrayLike = 1.0, variance: ArrayLike = 1.0):
        self.log_lengthscale = _log_positive(lengthscale, "lengthscale", "Matern52")
        self.log_variance = _log_positive(variance, "variance", "Matern52")

    @property
    def lengthscale(self) -> Array:
        return jnp.exp(self.log_lengthscale)

    @property
    def is_improper(self) -> bool:
        return False

    def of_distance(self, tau: Array) -> Array:
        r = math.sqrt(5.0) * tau / self.lengthscale
        return self.variance * (1 + r + r**2 / 3) * jnp.exp(-r)


class Periodic(AbstractStationaryKernel):
    """``variance · exp(−2 sin²(πτ/period) / ℓ²)`` (proper; 1-D distance ``τ``)."""

    log_period: Array
    log_lengthscale: Array
    log_variance: Array

    def __init__(
        self, period: ArrayLike = 1.0, lengthscale: ArrayLike = 1.0, variance: ArrayLike = 1.0
    ):
        self.log_period = _log_positive(period, "period", "Periodic")
        self.log_lengthscale = _log_positive(lengthscale, "lengthscale", "Periodic")
        self.log_variance = _log_positive(variance, "variance", "Periodic")

    @property
    def period(self) -> Array:
        return jnp.exp(self.log_period)

    @property
    def lengthscale(self) -> Array:
        return jnp.exp(self.log_lengthscale)

    @property
    def is_improper(self) -> bool:
        return False

    def of_distance(self, tau: Array) -> Array:
        s = jnp.sin(jnp.pi * tau / self.period)
        return self.variance * jnp.exp(-2.0 * (s / self.lengthscale) ** 2)


# --------------------------------------------------------------------------- improper kernels


def smooth_walk_variogram(tau: ArrayLike, lengthscale: ArrayLike) -> Array:
    """``γ(τ) = √(π/2) ℓτ erf(τ/(√2ℓ)) + ℓ²(e^{−τ²/2ℓ²} − 1)`` (SE derivative, MATH.md §3)."""
    tau = jnp.asarray(tau)
    ell = jnp.asarray(lengthscale)
    return math.sqrt(math.pi / 2) * ell * tau * jax.scipy.special.erf(
        tau / (math.sqrt(2.0) * ell)
    ) + ell**2 * jnp.expm1(-0.5 * (tau / ell) ** 2)


def matern_walk_variogram(tau: ArrayLike, lengthscale: ArrayLike, nu: float) -> Array:
    """``γ(τ) = ∫₀^τ (τ − u) c(u) du`` for the Matérn-ν correlation ``c`` (ν = p + 1/2).

    Closed form through lower incomplete gamma integrals; equals the MATH.md §3 expressions for
    ν ∈ {1/2, 3/2, 5/2}. The walk is ``p + 1`` times mean-square differentiable.
    """
    p = _half_integer_order(nu, "nu", "matern_walk_variogram")
    tau = jnp.asarray(tau)
    ell = jnp.asarray(lengthscale)
    a = math.sqrt(2 * p + 1) / ell
    x = a * tau
    lin, expo = _matern_walk_polys(p)
    # γ = (P(x) + e^{−x} Q(x)) / a²: Horner, one exp (the polynomials are built once per ν)
    return (_horner(lin, x) + jnp.exp(-x) * _horner(expo, x)) / a**2


def _horner(coeffs: tuple[float, ...], x: Array) -> Array:
    """``Σ_m coeffs[m] x^m``."""
    out = jnp.full_like(x, coeffs[-1])
    for c in coeffs[-2::-1]:
        out = out * x + c
    return out


@functools.cache
def _matern_walk_polys(p: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``P, Q`` (ascending coefficients) with ``a² γ(τ) = P(x) + e^{−x} Q(x)``, ``x = aτ``.

    From ``I_k(τ) = ∫₀^τ u^k e^{−au} du = k!/a^{k+1} (1 − e^{−x} S_k(x))``, ``S_k = Σ_{m≤k}
    x^m/m!``, each term ``b_k (τ I_k − I_{k+1})`` of the variogram is ``c_k 2^k k! / a² ·
    [x − (k+1) − e^{−x}(x S_k(x) − (k+1) S_{k+1}(x))]``.
    """
    P = np.zeros(2)
    Q = np.zeros(p + 3)
    for k, c in enumerate(_matern_poly_coeffs(p)):
        w = c * 2**k * math.factorial(k)
        P += w * np.array([-(k + 1), 1.0])
        for m in range(k + 1):  # −x S_k(x)
            Q[m + 1] -= w / math.factorial(m)
        for m in range(k + 2):  # +(k+1) S_{k+1}(x)
            Q[m] += w * (k + 1) / math.factorial(m)
    return tuple(float(v) for v in P), tuple(float(v) for v in Q)


class Brownian(AbstractKernel):
    """Brownian motion with flat level: ``k = −variance · τ / 2`` (improper).

    ``Var(f(x) − f(x')) = variance · τ``. Conditionally positive definite in any dimension.
    """

    log_variance: Array

    def __init__(self, variance: ArrayLike = 1.0):
        self.log_variance = _log_positive(variance, "variance", "Brownian")

    @property
    def variance(self) -> Array:
        return jnp.exp(self.log_variance)

    @property
    def is_improper(self) -> bool:
        return True

    def of_distance(self, tau: Array) -> Array:
        return -0.5 * self.variance * tau

    def evaluate(self, x1: Array, x2: Array) -> Scalar:
        return self.of_distance(_distance(x1, x2))


class SmoothWalk(AbstractKernel):
    """Smooth Walk: ``k = −variance · γ_SE(τ)`` — integrated SE process (improper).

    The derivative is a stationary SE process with variance ``variance`` and lengthscale ``ℓ``;
    samples are infinitely smooth and do not revert to a mean.
    """

    log_lengthscale: Array
    log_variance: Array

    def __init__(self, lengthscale: ArrayLike = 1.0, variance: ArrayLike = 1.0):
        self.log_lengthscale = _log_positive(lengthscale, "lengthscale", "SmoothWalk")
        self.log_variance = _log_positive(variance, "variance", "SmoothWalk")

    @property
    def lengthscale(self) -> Array:
        return jnp.exp(self.log_lengthscale)

    @property
    def variance(self) -> Array:
        return jnp.exp(self.log_variance)

    @property
    def is_improper(self) -> bool:
        return True

    def of_distance(self, tau: Array) -> Array:
        return -self.variance * smooth_walk_variogram(tau, self.lengthscale)

    def evaluate(self, x1: Array, x2: Array) -> Scalar:
        return self.of_distance(_distance(x1, x2))


class MaternWalk(AbstractKernel):
    """Matérn walk: ``k = −variance · γ_ν(τ)`` — integrated Matérn-ν process (improper).

    ``ν = p + 1/2`` (0.5, 1.5, 2.5, … up to 6.5) gives a ``p + 1`` times mean-square
    differentiable walk (the "improper Matérn, j-times differentiable" family with ``j = p + 1``).
    Has an exact O(n) state-space form (see ``ImproperGP(..., method="state_space")``).
    """

    log_lengthscale: Array
    log_variance: Array
    nu: float = eqx.field(static=True)

    def __init__(self, nu: float = 1.5, lengthscale: ArrayLike = 1.0, variance: ArrayLike = 1.0):
        _half_integer_order(nu, "nu", "MaternWalk")
        self.nu = float(nu)
        self.log_lengthscale = _log_positive(lengthscale, "lengthscale", "MaternWalk")
        self.log_variance = _log_positive(variance, "variance", "MaternWalk")

    @property
    def lengthscale(self) -> Array:
        return jnp.exp(self.log_lengthscale)

    @property
    def variance(self) -> Array:
        return jnp.exp(self.log_variance)

    @property
    def differentiability(self) -> int:
        """Number of mean-square derivatives of the walk (``j = ν + 1/2``)."""
        return int(self.nu - 0.5) + 1

    @property
    def is_improper(self) -> bool:
        return True

    def of_distance(self, tau: Array) -> Array:
        return -self.variance * matern_walk_variogram(tau, self.lengthscale, self.nu)

    def evaluate(self, x1: Array, x2: Array) -> Scalar:
        return self.of_distance(_distance(x1, x2))


# ------------------------------------------------------------------------------- combinators


class Sum(AbstractKernel):
    """``k1 + k2``; improper when either term is."""

    kernel1: AbstractKernel
    kernel2: AbstractKernel

    def __check_init__(self):
        for name in ("kernel1", "kernel2"):
            if not isinstance(getattr(self, name), AbstractKernel):
                raise TypeError(
                    f"Sum: {name} must be a kernel, got {type(getattr(self, name)).__name__}."
                )

    @property
    def is_improper(self) -> bool:
        return self.kernel1.is_improper or self.kernel2.is_improper

    def evaluate(self, x1: Array, x2: Array) -> Scalar:
        return self.kernel1.evaluate(x1, x2) + self.kernel2.evaluate(x1, x2)


class Scaled(AbstractKernel):
    """``scale · k`` with a positive scale (stored as ``log_scale``)."""

    kernel: AbstractKernel
    log_scale: Array

    def __init__(self, kernel: AbstractKernel, scale: ArrayLike):
        if not isinstance(kernel, AbstractKernel):
            raise TypeError(f"Scaled: kernel must be a kernel, got {type(kernel).__name__}.")
        self.kernel = kernel
        self.log_scale = _log_positive(scale, "scale", "Scaled")

    @property
    def scale(self) -> Array:
        return jnp.exp(self.log_scale)

    @property
    def is_improper(self) -> bool:
        return self.kernel.is_improper

    def evaluate(self, x1: Array, x2: Array) -> Scalar:
        return self.scale * self.kernel.evaluate(x1, x2)


class Product(AbstractKernel):
    """``k1 · k2`` for proper kernels (a product with an improper kernel is not CPD in general)."""

    kernel1: AbstractKernel
    kernel2: AbstractKernel

    def __check_init__(self):
        for name in ("kernel1", "kernel2"):
            k = getattr(self, name)
            if not isinstance(k, AbstractKernel):
                raise TypeError(f"Product: {name} must be a kernel, got {type(k).__name__}.")
            if k.is_improper:
                raise ValueError(
                    f"Product: {name} is improper ({type(k).__name__}); products are only "
                    "supported for proper kernels. Add improper kernels with `+` instead."
                )

    @property
    def is_improper(self) -> bool:
        return False

    def evaluate(self, x1: Array, x2: Array) -> Scalar:
        return self.kernel1.evaluate(x1, x2) * self.kernel2.evaluate(x1, x2)

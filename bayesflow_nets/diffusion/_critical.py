"""Critical times of symmetry breaking (MATH.md §5). Each criterion is named separately.

* Reverse-SDE stability (VP): the central fixed point of the reverse drift destabilises at
  ``θ_c² = √(λ_max² + 1) − λ_max`` with ``θ = √ᾱ`` (``±1``: ``θ_c = √(√2 − 1) ≈ 0.6436``).
* Bimodality of ``p_t`` (VP): ``∂²log p_t(0) = 0`` at ``θ² = 1/(1 + λ_max)`` (``±1``: ``θ² = 1/2``).
* VE / thermodynamics: ``x = m(x)`` loses its central solution at ``σ_c² = λ_max(Cov)``
  (two deltas ``±a``: ``T_c = a²``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "vp_reverse_sde_critical_theta",
    "vp_bimodality_theta",
    "two_delta_critical_variance",
    "equal_norm_critical_variance",
    "data_lambda_max",
]


def _nonneg(value, name, fn):
    value = jnp.asarray(value, float)
    if value.ndim != 0:
        raise ValueError(f"{fn}: {name} must be a scalar, got shape {value.shape}.")
    return value


def data_lambda_max(data: Float[ArrayLike, "N d"], *, centred: bool = True) -> Float[Array, ""]:
    """Largest eigenvalue of the data covariance (``1/N``; ``centred=False``: second moment)."""
    data = jnp.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"data_lambda_max: data must have shape (N, d), got {data.shape}.")
    c = data - jnp.mean(data, axis=0) if centred else data
    return jnp.linalg.eigvalsh(c.T @ c / data.shape[0])[-1]


def vp_reverse_sde_critical_theta(lambda_max: ArrayLike = 1.0) -> Float[Array, ""]:
    """``θ_c = (√(λ² + 1) − λ)^{1/2}``: reverse-SDE stability of the central fixed point (VP).

    ``lambda_max`` is the top eigenvalue of the (centred, symmetric) data's second moment;
    ``1`` for the two deltas ``±1`` giving ``θ_c = √(√2 − 1)``.
    """
    lam = _nonneg(lambda_max, "lambda_max", "vp_reverse_sde_critical_theta")
    return jnp.sqrt(jnp.sqrt(lam**2 + 1.0) - lam)


def vp_bimodality_theta(lambda_max: ArrayLike = 1.0) -> Float[Array, ""]:
    """``θ = (1 + λ)^{-1/2}``: ``p_t`` turns bimodal at the centre (VP; ``±1``: ``θ² = ½``)."""
    lam = _nonneg(lambda_max, "lambda_max", "vp_bimodality_theta")
    return 1.0 / jnp.sqrt(1.0 + lam)


def two_delta_critical_variance(a: ArrayLike) -> Float[Array, ""]:
    """``T_c = σ_c² = a²`` for two deltas ``±a`` under VE (fixed point ``x = a tanh(ax/σ²)``)."""
    return _nonneg(a, "a", "two_delta_critical_variance") ** 2


def equal_norm_critical_variance(data: Float[ArrayLike, "N d"]) -> Float[Array, ""]:
    """``σ_c² = λ_max(Cov)`` for an equal-norm data set under VE (hypercube 1, sphere r²/d)."""
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(
            f"equal_norm_critical_variance: data must have shape (N, d), got {data.shape}."
        )
    norms = np.sum(data.astype(np.float64) ** 2, axis=1)
    if not np.allclose(norms, norms[0], rtol=1e-4):
        raise ValueError(
            "equal_norm_critical_variance: data rows must have equal norms (got norms² from "
            f"{norms.min():.4g} to {norms.max():.4g}); use data_lambda_max for other data."
        )
    return data_lambda_max(data)

"""Exact (memorising) score of a finite data set and modern Hopfield networks (MATH.md §5).

For data ``{y_μ}`` the noised density is ``p_t(x) = N⁻¹ Σ_μ N(x; m y_μ, s² I)``; its score is
``(m Σ_μ w_μ y_μ − x)/s²`` with ``w = softmax(−‖x − m y_μ‖²/(2 s²))``. Under VE with ``β = 1/σ²``:
``−σ² log p_σ(x) = −β⁻¹ log Σ_μ exp(β ξ_μᵀx − β‖ξ_μ‖²/2) + ½‖x‖² + const``, and one Euler step of
size σ² on the score is the Hopfield update ``x ← Ξᵀ softmax(βΞx − β‖ξ‖²/2)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._schedules import AbstractSchedule

__all__ = [
    "empirical_log_density",
    "empirical_score",
    "empirical_denoiser",
    "hopfield_energy",
    "hopfield_update",
    "hopfield_energy_constant",
]


def _check_data(data, x, name: str) -> tuple[Array, Array]:
    data = jnp.asarray(data)
    x = jnp.asarray(x)
    if data.ndim != 2:
        raise ValueError(f"{name}: data must have shape (N, d), got {data.shape}.")
    if x.shape != data.shape[1:]:
        raise ValueError(
            f"{name}: x has shape {x.shape}, expected ({data.shape[1]},) to match data "
            "(one unbatched point; batch with jax.vmap)."
        )
    return data, x


def _logits(schedule, data, x, t):
    m = schedule.mean_coeff(t)
    s2 = schedule.variance(t)
    return -0.5 * jnp.sum((x - m * data) ** 2, axis=-1) / s2


def empirical_log_density(
    schedule: AbstractSchedule, data: Float[ArrayLike, "N d"], x: Float[ArrayLike, " d"], t
) -> Float[Array, ""]:
    """``log p_t(x)`` of the noised empirical distribution of ``data``."""
    data, x = _check_data(data, x, "empirical_log_density")
    n, d = data.shape
    s2 = schedule.variance(t)
    return (
        jax.nn.logsumexp(_logits(schedule, data, x, t))
        - math.log(n)
        - 0.5 * d * jnp.log(2 * jnp.pi * s2)
    )


def empirical_denoiser(
    schedule: AbstractSchedule, data: Float[ArrayLike, "N d"], x: Float[ArrayLike, " d"], t
) -> Float[Array, " d"]:
    """``E[x_0 | x_t = x] = Σ_μ w_μ y_μ`` (the magnetisation ``m(x)`` of MATH.md §5)."""
    data, x = _check_data(data, x, "empirical_denoiser")
    w = jax.nn.softmax(_logits(schedule, data, x, t))
    return w @ data


def empirical_score(
    schedule: AbstractSchedule, data: Float[ArrayLike, "N d"], x: Float[ArrayLike, " d"], t
) -> Float[Array, " d"]:
    """Exact score ``∇ log p_t(x) = (m D(x) − x)/s²`` of the noised data set."""
    data, x = _check_data(data, x, "empirical_score")
    den = empirical_denoiser(schedule, data, x, t)
    return (schedule.mean_coeff(t) * den - x) / schedule.variance(t)


def _hopfield_logits(patterns, x, beta, equal_norm):
    logits = beta * (patterns @ x)
    if not equal_norm:
        logits = logits - 0.5 * beta * jnp.sum(patterns**2, axis=-1)
    return logits


def hopfield_energy(
    patterns: Float[ArrayLike, "N d"],
    x: Float[ArrayLike, " d"],
    beta: ArrayLike,
    *,
    equal_norm: bool = False,
) -> Float[Array, ""]:
    """Modern Hopfield energy ``−β⁻¹ log Σ_μ exp(β ξ_μᵀx [− β‖ξ_μ‖²/2]) + ½‖x‖²``.

    With ``equal_norm=True`` the norm term is dropped (MATH.md §5: it is a constant then).
    """
    patterns, x = _check_data(patterns, x, "hopfield_energy")
    logits = _hopfield_logits(patterns, x, beta, equal_norm)
    return -jax.nn.logsumexp(logits) / beta + 0.5 * jnp.sum(x**2)


def hopfield_energy_constant(
    patterns: Float[ArrayLike, "N d"], sigma2: ArrayLike, *, equal_norm: bool = False
) -> Float[Array, ""]:
    """``c`` in ``−σ² log p_σ(x) = hopfield_energy(x, β=1/σ²) + c`` (VE, MATH.md §5)."""
    patterns = jnp.asarray(patterns)
    n, d = patterns.shape
    c = sigma2 * (math.log(n) + 0.5 * d * jnp.log(2 * jnp.pi * sigma2))
    if equal_norm:
        c = c + 0.5 * jnp.sum(patterns[0] ** 2)
    return c


def hopfield_update(
    patterns: Float[ArrayLike, "N d"],
    x: Float[ArrayLike, " d"],
    beta: ArrayLike,
    *,
    equal_norm: bool = False,
) -> Float[Array, " d"]:
    """One Hopfield retrieval step ``x ← Ξᵀ softmax(β Ξ x [− β‖ξ‖²/2])``.

    Equals one Euler step of size ``σ² = 1/β`` on the exact VE score (MATH.md §5).
    """
    patterns, x = _check_data(patterns, x, "hopfield_update")
    return jax.nn.softmax(_hopfield_logits(patterns, x, beta, equal_norm)) @ patterns

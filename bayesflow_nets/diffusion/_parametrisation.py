"""Score / denoiser / ε parametrisations and their Tweedie conversions (MATH.md §5).

With ``x_t = m x_0 + s ε``:  ``score = −ε̂ / s``,  ``D = E[x_0 | x_t] = (x_t + s² score) / m``.
(For VE, ``m = 1`` and ``s² = t``: ``D = x + t·score``.)
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._schedules import AbstractSchedule

__all__ = [
    "PARAMETRISATIONS",
    "score_from_eps",
    "eps_from_score",
    "denoiser_from_score",
    "score_from_denoiser",
    "eps_from_denoiser",
    "denoiser_from_eps",
    "convert",
    "as_score_fn",
]

PARAMETRISATIONS = ("score", "eps", "denoiser")


def _check(param: str, name: str) -> None:
    if param not in PARAMETRISATIONS:
        raise ValueError(f"{name} must be one of {PARAMETRISATIONS}, got {param!r}.")


def score_from_eps(
    schedule: AbstractSchedule, eps: Float[ArrayLike, "*shape"], t: ArrayLike
) -> Float[Array, "*shape"]:
    """``score = −ε̂ / s(t)``."""
    return -jnp.asarray(eps) / schedule.std(t)


def eps_from_score(
    schedule: AbstractSchedule, score: Float[ArrayLike, "*shape"], t: ArrayLike
) -> Float[Array, "*shape"]:
    """``ε̂ = −s(t) · score``."""
    return -schedule.std(t) * jnp.asarray(score)


def denoiser_from_score(
    schedule: AbstractSchedule,
    x: Float[ArrayLike, "*shape"],
    score: Float[ArrayLike, "*shape"],
    t: ArrayLike,
) -> Float[Array, "*shape"]:
    """Tweedie: ``D = (x + s² score) / m``."""
    return (jnp.asarray(x) + schedule.variance(t) * jnp.asarray(score)) / schedule.mean_coeff(t)


def score_from_denoiser(
    schedule: AbstractSchedule,
    x: Float[ArrayLike, "*shape"],
    denoised: Float[ArrayLike, "*shape"],
    t: ArrayLike,
) -> Float[Array, "*shape"]:
    """Tweedie inverted: ``score = (m D − x) / s²``."""
    return (schedule.mean_coeff(t) * jnp.asarray(denoised) - jnp.asarray(x)) / schedule.variance(t)


def eps_from_denoiser(
    schedule: AbstractSchedule,
    x: Float[ArrayLike, "*shape"],
    denoised: Float[ArrayLike, "*shape"],
    t: ArrayLike,
) -> Float[Array, "*shape"]:
    """``ε̂ = (x − m D) / s``."""
    return (jnp.asarray(x) - schedule.mean_coeff(t) * jnp.asarray(denoised)) / schedule.std(t)


def denoiser_from_eps(
    schedule: AbstractSchedule,
    x: Float[ArrayLike, "*shape"],
    eps: Float[ArrayLike, "*shape"],
    t: ArrayLike,
) -> Float[Array, "*shape"]:
    """``D = (x − s ε̂) / m``."""
    return (jnp.asarray(x) - schedule.std(t) * jnp.asarray(eps)) / schedule.mean_coeff(t)


def convert(
    schedule: AbstractSchedule,
    x: Float[ArrayLike, "*shape"],
    value: Float[ArrayLike, "*shape"],
    t: ArrayLike,
    *,
    source: str,
    target: str,
) -> Float[Array, "*shape"]:
    """Convert a prediction ``value`` at ``(x, t)`` between score, eps and denoiser."""
    _check(source, "source")
    _check(target, "target")
    if source == target:
        return jnp.asarray(value)
    if source == "eps":
        score = score_from_eps(schedule, value, t)
    elif source == "denoiser":
        score = score_from_denoiser(schedule, x, value, t)
    else:
        score = jnp.asarray(value)
    if target == "score":
        return score
    if target == "eps":
        if source == "denoiser":
            return eps_from_denoiser(schedule, x, value, t)
        return eps_from_score(schedule, score, t)
    if source == "eps":
        return denoiser_from_eps(schedule, x, value, t)
    return denoiser_from_score(schedule, x, score, t)


def input_scale(schedule: AbstractSchedule, t: ArrayLike) -> Array:
    """``c_in = 1/√(m² + s²)``: the network sees ``c_in·x_t`` (unit variance for unit data)."""
    return 1.0 / jnp.sqrt(schedule.mean_coeff(t) ** 2 + schedule.variance(t))


def model_output(
    model: Callable, schedule: AbstractSchedule, x: Array, t: ArrayLike, precondition: bool
) -> Array:
    """Evaluate a network on one sample, with the optional input scaling ``c_in``."""
    x_in = x * input_scale(schedule, t) if precondition else x
    return model(x_in, jnp.asarray(t, x.dtype))


def as_score_fn(
    model: Callable,
    schedule: AbstractSchedule,
    parametrisation: str = "eps",
    *,
    precondition: bool = True,
) -> Callable[[Array, Array], Array]:
    """Turn a network ``model(x, t)`` (one unbatched sample) into a score function ``(x, t) → s``.

    ``parametrisation`` says what the network predicts (``"score"``, ``"eps"`` or
    ``"denoiser"``); ``precondition`` must match what :func:`dsm_loss` used in training.
    """
    _check(parametrisation, "parametrisation")

    def score_fn(x, t):
        x = jnp.asarray(x)
        out = model_output(model, schedule, x, t, precondition)
        return convert(schedule, x, out, t, source=parametrisation, target="score")

    return score_fn

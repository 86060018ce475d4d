"""Denoising score matching with per-time weighting (MATH.md §5)."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._parametrisation import PARAMETRISATIONS, convert, model_output
from ._schedules import AbstractSchedule

__all__ = ["dsm_loss", "WEIGHTINGS"]

WEIGHTINGS = ("eps", "score")


def _weight_over_variance(weighting: str | Callable, schedule: AbstractSchedule, t: Array) -> Array:
    """``λ(t)/s²(t)``: the factor that turns ``λ ‖ŝ − s‖²`` into a weight on ``‖ε̂ − ε‖²``."""
    if callable(weighting):
        return jnp.asarray(weighting(t)) / schedule.variance(t)
    if weighting == "eps":  # λ = s²: plain ε-prediction loss
        return jnp.ones_like(t)
    if weighting == "score":  # λ = 1: unweighted score loss
        return 1.0 / schedule.variance(t)
    raise ValueError(
        f"dsm_loss: weighting must be one of {WEIGHTINGS} or a callable t -> λ(t), "
        f"got {weighting!r}."
    )


def dsm_loss(
    model: Callable,
    schedule: AbstractSchedule,
    x0: Float[ArrayLike, " batch *shape"],
    key: PRNGKeyArray,
    *,
    parametrisation: str = "eps",
    weighting: str | Callable = "eps",
    t_min: float | None = None,
    t_max: float | None = None,
    t_sampling: str = "uniform",
    precondition: bool = True,
) -> Float[Array, ""]:
    """Denoising score matching ``E_t E_ε λ(t) ‖ŝ_θ(x_t, t) + ε/s(t)‖²`` (mean over the batch).

    ``t ~ U[t_min, t_max]`` (the schedule's range by default), or log-uniform with
    ``t_sampling="log"`` (advisable for VE, whose range spans decades). ``model(x, t)`` acts on one
    sample and predicts ``parametrisation`` (``"eps"``, ``"score"`` or ``"denoiser"``); every
    parametrisation is compared through its ε-prediction, so ``weighting="eps"`` (``λ = s²``)
    is the usual ``‖ε̂ − ε‖²`` and ``weighting="score"`` is ``λ = 1``. A callable
    ``weighting(t)`` gives ``λ(t)`` directly. Sum over event dims, mean over the batch.
    """
    if parametrisation not in PARAMETRISATIONS:
        raise ValueError(
            f"dsm_loss: parametrisation must be one of {PARAMETRISATIONS}, got {parametrisation!r}."
        )
    x0 = jnp.asarray(x0)
    if x0.ndim < 2:
        raise ValueError(
            f"dsm_loss: x0 must be a batch of samples with shape (batch, *event), got {x0.shape}."
        )
    lo = schedule.t_min if t_min is None else float(t_min)
    hi = schedule.t_max if t_max is None else float(t_max)
    if not lo < hi:
        raise ValueError(f"dsm_loss: need t_min < t_max, got t_min={lo}, t_max={hi}.")
    key_t, key_e = jax.random.split(key)
    n = x0.shape[0]
    if t_sampling == "uniform":
        t = jax.random.uniform(key_t, (n,), x0.dtype, lo, hi)
    elif t_sampling == "log":
        if lo <= 0:
            raise ValueError(f"dsm_loss: t_sampling='log' needs t_min > 0, got t_min={lo}.")
        u = jax.random.uniform(key_t, (n,), x0.dtype, math.log(lo), math.log(hi))
        t = jnp.exp(u)
    else:
        raise ValueError(f"dsm_loss: t_sampling must be 'uniform' or 'log', got {t_sampling!r}.")
    keys = jax.random.split(key_e, n)

    def one(x0_i, t_i, k):
        x_t, eps = schedule.marginal_sample(k, x0_i, t_i)
        out = model_output(model, schedule, x_t, t_i, precondition)
        eps_hat = convert(schedule, x_t, out, t_i, source=parametrisation, target="eps")
        return jnp.sum((eps_hat - eps) ** 2) * _weight_over_variance(weighting, schedule, t_i)

    return jnp.mean(jax.vmap(one)(x0, t, keys))

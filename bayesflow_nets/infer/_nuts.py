"""``nuts``: BlackJAX window adaptation + NUTS on a NumPyro model's unconstrained potential.

The model is turned into ``potential_fn`` / ``postprocess_fn`` by
``numpyro.infer.util.initialize_model``; each chain runs Stan-style window adaptation (step size
by dual averaging, diagonal or dense inverse mass matrix) and then NUTS, chains ``vmap``-ed in one
jitted call. Draws are mapped back to the constrained space (deterministic sites included) and
returned as ``arviz.InferenceData`` through `to_inference_data`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import arviz as az
import blackjax
import jax
import jax.numpy as jnp
from blackjax.adaptation.base import get_filter_adapt_info_fn
from jaxtyping import PRNGKeyArray
from numpyro.infer.util import initialize_model

from ..emf._checks import check_model_inputs
from ..train import to_inference_data

__all__ = ["nuts"]


def _raw_keys(key, n: int):
    keys = jax.random.split(key, n)
    if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        keys = jax.random.key_data(keys)
    return keys


def _check_counts(num_chains: int, num_warmup: int, num_samples: int) -> None:
    for name, value, low in (
        ("num_chains", num_chains, 1),
        ("num_warmup", num_warmup, 1),
        ("num_samples", num_samples, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"argument {name!r} must be an integer >= {low}, got {value!r}.")


def _check_options(target_acceptance_rate, max_num_doublings) -> None:
    rate = target_acceptance_rate
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 < rate < 1.0:
        raise ValueError(f"argument 'target_acceptance_rate' must lie in (0, 1), got {rate!r}.")
    doublings = max_num_doublings
    if isinstance(doublings, bool) or not isinstance(doublings, int) or doublings < 1:
        raise ValueError(f"argument 'max_num_doublings' must be an int >= 1, got {doublings!r}.")


def _sample(
    logdensity_fn: Callable,
    positions: Any,
    key,
    *,
    num_warmup: int,
    num_samples: int,
    target_acceptance_rate: float,
    dense_mass: bool,
    max_num_doublings: int,
):
    """Window adaptation + NUTS for every chain (leading axis of ``positions``), vmapped.

    Returns the position draws ``(chain, draw, ...)`` and per-draw statistics.
    """
    num_chains = jax.tree_util.tree_leaves(positions)[0].shape[0]

    def one_chain(key, position):
        k_warm, k_draw = jax.random.split(key)
        warmup = blackjax.window_adaptation(
            blackjax.nuts,
            logdensity_fn,
            is_mass_matrix_diagonal=not dense_mass,
            target_acceptance_rate=target_acceptance_rate,
            adaptation_info_fn=get_filter_adapt_info_fn(),
            max_num_doublings=max_num_doublings,
        )
        (state, parameters), _ = warmup.run(k_warm, position, num_steps=num_warmup)
        kernel = blackjax.nuts(logdensity_fn, **parameters)

        def body(state, k):
            state, info = kernel.step(k, state)
            stats = {
                "diverging": info.is_divergent,
                "acceptance_rate": info.acceptance_rate,
                "n_steps": info.num_integration_steps,
                "tree_depth": info.num_trajectory_expansions,
                "energy": info.energy,
                "lp": state.logdensity,
            }
            return state, (state.position, stats)

        _, (draws, stats) = jax.lax.scan(body, state, jax.random.split(k_draw, num_samples))
        stats["step_size"] = jnp.full((num_samples,), parameters["step_size"])
        return draws, stats

    keys = jax.random.split(key, num_chains)
    out = jax.jit(jax.vmap(one_chain))(keys, positions)
    return jax.block_until_ready(out)


def _nuts_attrs(sampler: str, num_warmup: int, seconds: float) -> dict[str, Any]:
    return {
        "inference_library": "blackjax",
        "inference_library_version": str(blackjax.__version__),
        "sampler": sampler,
        "num_warmup": int(num_warmup),
        "sampling_time": float(seconds),
    }


def _stats_for_arviz(stats: dict) -> dict:
    out = dict(stats)
    out["num_integration_steps"] = out.pop("n_steps")
    return out


def nuts(
    model: Callable,
    *args: Any,
    rng_key: PRNGKeyArray,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    target_acceptance_rate: float = 0.8,
    dense_mass: bool = False,
    max_num_doublings: int = 10,
    coords: dict | None = None,
    dims: dict | None = None,
    **kwargs: Any,
) -> az.InferenceData:
    """Sample a NumPyro model with BlackJAX's NUTS after window adaptation.

    ``*args, **kwargs`` go to the model. Chains start from NumPyro's default (uniform in
    (−2, 2) unconstrained) initialisation and run vmapped. The result holds the constrained
    latent and deterministic sites (dims from plates), ``sample_stats`` (``diverging``,
    ``acceptance_rate``, ``num_integration_steps``, ``tree_depth``, ``energy``, ``lp``,
    ``step_size``) and the model's observed data; ``attrs["sampling_time"]`` is the wall time
    (compilation included).
    """
    _check_counts(num_chains, num_warmup, num_samples)
    _check_options(target_acceptance_rate, max_num_doublings)
    if not callable(model):
        raise TypeError(f"argument 'model' must be a callable NumPyro model, got {type(model)}.")
    check_model_inputs(model, args, kwargs, needs="NUTS")
    t0 = time.perf_counter()
    k_init, k_run = jax.random.split(rng_key)
    info = initialize_model(
        _raw_keys(k_init, num_chains), model, model_args=args, model_kwargs=kwargs
    )
    potential_fn, postprocess_fn = info.potential_fn, info.postprocess_fn
    draws, stats = _sample(
        lambda z: -potential_fn(z),
        info.param_info.z,
        k_run,
        num_warmup=num_warmup,
        num_samples=num_samples,
        target_acceptance_rate=target_acceptance_rate,
        dense_mass=dense_mass,
        max_num_doublings=max_num_doublings,
    )
    constrained = jax.jit(jax.vmap(jax.vmap(postprocess_fn)))(draws)
    seconds = time.perf_counter() - t0
    return to_inference_data(
        constrained,
        model,
        args,
        kwargs,
        sample_stats=_stats_for_arviz(stats),
        coords=coords,
        dims=dims,
        attrs=_nuts_attrs("nuts", num_warmup, seconds),
    )

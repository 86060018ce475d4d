"""``neutra``: NUTS in the space warped by a trained flow guide (NeuTra; Hoffman et al. 2019).

A fitted continuous guide (``AutoEMF`` or any NumPyro ``AutoContinuous``) gives a bijection
T: ε ↦ z from its base N(0, I) to the flat unconstrained latent vector (``get_transform``). NUTS
runs on the pulled-back potential U_ε(ε) = U(T(ε)) − log|det J_T(ε)|; if q ≈ p the warped target
is close to N(0, I) and a unit mass matrix with a large step size mixes well. Draws are mapped
back through T and then to the constrained space.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import PRNGKeyArray
from numpyro import handlers
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.util import initialize_model

from ..train import to_inference_data
from ._nuts import _check_counts, _check_options, _nuts_attrs, _raw_keys, _sample, _stats_for_arviz

__all__ = ["neutra", "warped_potential"]


def _setup_guide(guide: Any, params: Any, key, args, kwargs):
    if not isinstance(guide, AutoContinuous):
        raise TypeError(
            "argument 'guide' must be a NumPyro AutoContinuous guide with get_transform "
            f"(e.g. AutoEMF, AutoMultivariateNormal, AutoIAFNormal), got {type(guide).__name__}."
        )
    if not isinstance(params, dict):
        raise TypeError(
            f"argument 'params' must be the guide's parameter dict, got {type(params)}."
        )
    if getattr(guide, "prototype_trace", None) is None:
        with handlers.block():
            handlers.seed(handlers.substitute(guide, data=params), key)(*args, **kwargs)
    return guide.get_transform(params)


def warped_potential(
    model: Callable,
    guide: Any,
    params: Any,
    *args: Any,
    rng_key: PRNGKeyArray,
    **kwargs: Any,
) -> tuple[Callable, Callable, int]:
    """``(log_density_eps, eps_to_constrained, dim)`` for NeuTra with a fitted ``guide``.

    ``log_density_eps(ε) = −U(T(ε)) + log|det J_T(ε)|`` (unnormalised, one unbatched ε of size
    ``dim``); ``eps_to_constrained(ε)`` maps one ε to the dict of constrained latent and
    deterministic sites.
    """
    k_guide, k_init = jax.random.split(rng_key)
    transform = _setup_guide(guide, params, k_guide, args, kwargs)
    info = initialize_model(_raw_keys(k_init, 1)[0], model, model_args=args, model_kwargs=kwargs)
    z0, unravel = ravel_pytree(info.param_info.z)
    if z0.shape[0] != guide.latent_dim:
        raise ValueError(
            f"the model has {z0.shape[0]} unconstrained latent dimensions but the guide has "
            f"{guide.latent_dim}; fit the guide to the same model and data."
        )
    potential_fn, postprocess_fn = info.potential_fn, info.postprocess_fn

    def log_density_eps(eps):
        z, intermediates = transform.call_with_intermediates(eps)
        log_det = transform.log_abs_det_jacobian(eps, z, intermediates)
        return -potential_fn(unravel(z)) + jnp.sum(log_det)

    def eps_to_constrained(eps):
        return postprocess_fn(unravel(transform(eps)))

    return log_density_eps, eps_to_constrained, int(z0.shape[0])


def neutra(
    model: Callable,
    guide: Any,
    params: Any,
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
    """NeuTra HMC: BlackJAX NUTS on the potential pulled back through the guide's flow.

    Args:
        model: the NumPyro model; ``*args, **kwargs`` go to it (the same as for the guide fit).
        guide: a fitted ``AutoEMF`` (or other ``AutoContinuous``) guide.
        params: the guide's fitted parameters (``fit_vi(...).params``, ``svi.get_params``).
        *args: positional arguments of the model.
        rng_key: PRNG key; chains start at draws of the guide's base N(0, I).
        num_chains: number of chains (vmapped).
        num_warmup: window-adaptation steps per chain.
        num_samples: draws per chain.
        target_acceptance_rate: the step-size adaptation's target.
        dense_mass: adapt a dense (instead of diagonal) inverse mass matrix.
        max_num_doublings: maximum NUTS tree depth.
        coords: passed to `to_inference_data`.
        dims: passed to `to_inference_data`.
        **kwargs: keyword arguments of the model.

    Returns constrained draws as ``arviz.InferenceData`` (same groups and sample stats as
    `nuts`, ``attrs["sampler"] == "neutra"``).
    """
    _check_counts(num_chains, num_warmup, num_samples)
    _check_options(target_acceptance_rate, max_num_doublings)
    t0 = time.perf_counter()
    k_setup, k_start, k_run = jax.random.split(rng_key, 3)
    log_density_eps, eps_to_constrained, dim = warped_potential(
        model, guide, params, *args, rng_key=k_setup, **kwargs
    )
    dtype = jnp.result_type(float)
    eps0 = jax.random.normal(k_start, (num_chains, dim), dtype=dtype)
    eps, stats = _sample(
        log_density_eps,
        eps0,
        k_run,
        num_warmup=num_warmup,
        num_samples=num_samples,
        target_acceptance_rate=target_acceptance_rate,
        dense_mass=dense_mass,
        max_num_doublings=max_num_doublings,
    )
    constrained = jax.jit(jax.vmap(jax.vmap(eps_to_constrained)))(eps)
    seconds = time.perf_counter() - t0
    return to_inference_data(
        constrained,
        model,
        args,
        kwargs,
        sample_stats=_stats_for_arviz(stats),
        coords=coords,
        dims=dims,
        attrs=_nuts_attrs("neutra", num_warmup, seconds),
    )

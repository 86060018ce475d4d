"""Guide draws with their log weights log p(x, y) − log q(x): ``fit_vi``'s final ELBO and PSIS
k̂, and ``VIResult``'s draws (for models with subsampling plates, the full-data versions from
:mod:`._subsample`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer.util import log_density

from .._compile import top_level_jit, training_options
from ..train import psis_khat
from ._structured import prototype_trace
from ._subsample import quiet_full_plates

EVAL_BATCH = 1000


# compiled as the training chunk is (not at run-once level 0): it serves the final ELBO and
# every later ``samples``/``to_arviz`` call, and loops in numerically inverted site maps run
# several times slower at level 0
@functools.partial(top_level_jit, options=training_options)
def _draws_and_log_weights_batch(
    model, guide, params, key, index, batch, args, kwargs, sites, weights=True
):
    """Batch ``index`` of ``batch`` guide draws (``sites``) with log p(x, y) and log q(x), keyed
    by ``fold_in(key, index)``; model and guide are static, so every batch of the same size
    reuses one compilation (key derivation included). With ``weights=False`` both log
    densities are returned as zeros, and XLA drops the likelihood's computation."""

    def one(k):
        lq, gtr = log_density(handlers.seed(guide, k), args, kwargs, params)
        # seeded too: NumPyro's scan runs its body once unreplayed to slice the guide's values
        lp, mtr = log_density(handlers.replay(handlers.seed(model, k), gtr), args, kwargs, params)
        draws = {s: mtr[s]["value"] for s in sites if s in mtr}
        return (draws, lp, lq) if weights else (draws, jnp.zeros_like(lp), jnp.zeros_like(lq))

    return jax.vmap(one)(jax.random.split(jax.random.fold_in(key, index), batch))


def _latent_and_deterministic_sites(model, args, kwargs) -> tuple[str, ...]:
    return tuple(
        k
        for k, s in prototype_trace(model, args, kwargs).items()
        if (s["type"] == "sample" and not s["is_observed"]) or s["type"] == "deterministic"
    )


def draws_and_log_weights(
    model, guide, params, key, n, args, kwargs, sites=None, batch: int = EVAL_BATCH, weights=True
):
    """``n`` guide draws of every latent and deterministic site with log p(x, y) and log q(x)
    (zeros with ``weights=False``), in batches of ``batch`` (one compilation serves the final
    ELBO and ``samples``)."""
    batch = min(n, batch)
    num_batches = -(-n // batch)
    with quiet_full_plates():
        if sites is None:
            sites = _latent_and_deterministic_sites(model, args, kwargs)
        parts = [
            _draws_and_log_weights_batch(
                model,
                guide,
                params,
                key,
                np.asarray(i, np.int32),
                batch,
                args,
                kwargs,
                sites,
                weights,
            )
            for i in range(num_batches)
        ]
    if num_batches == 1 and n == batch:
        return parts[0]
    # joined on the host: eager jnp.concatenate/slicing would compile a program per shape
    return jax.tree_util.tree_map(
        lambda *a: jnp.asarray(np.concatenate([np.asarray(v) for v in a])[:n]), *parts
    )


def log_weights(model, guide, params, key, n, args, kwargs):
    """log p(x, y) − log q(x) for ``n`` guide draws (one particle each)."""
    _, lp, lq = draws_and_log_weights(model, guide, params, key, n, args, kwargs, sites=())
    return np.asarray(lp) - np.asarray(lq)


def lower_evaluation(model, guide, params, key, n, args, kwargs, batch: int = EVAL_BATCH):
    """The evaluation batch of ``n`` draws traced and lowered (not compiled, not run)."""
    with quiet_full_plates():
        sites = _latent_and_deterministic_sites(model, args, kwargs)
        return _draws_and_log_weights_batch.lower(
            model,
            guide,
            params,
            key,
            np.asarray(0, np.int32),
            min(n, batch),
            args,
            kwargs,
            sites,
            True,
        )


def all_log_weights(model, guide, params, key, n, args, kwargs, batch: int = EVAL_BATCH):
    """log p − log q from the evaluation program that also draws every site (the one that
    ``fit_vi`` compiles ahead and ``VIResult.samples`` reuses)."""
    _, lp, lq = draws_and_log_weights(model, guide, params, key, n, args, kwargs, batch=batch)
    return np.asarray(lp) - np.asarray(lq)


def elbo_and_khat(logw: np.ndarray) -> tuple[float, float, float]:
    """ELBO ± standard error over the finite log weights, and PSIS k̂ (:func:`psis_khat`)."""
    finite = np.isfinite(logw)
    elbo = float(np.mean(logw[finite])) if finite.any() else float("nan")
    elbo_se = float(np.std(logw[finite]) / np.sqrt(max(finite.sum(), 1)))
    return elbo, elbo_se, psis_khat(logw)

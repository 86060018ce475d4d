"""``fit_vi_restarts``: independent ``fit_vi`` runs as the chains of one ``InferenceData``.

Each restart builds a fresh guide (``guide_factory(model)``), fits it from its own PRNG key and
contributes ``num_draws`` guide draws as one chain, so ``az.summary``'s R̂ measures the agreement
between restarts (different local optima or unconverged fits show up as R̂ > 1), which the
i.i.d. draws of a single fit cannot.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import arviz as az
import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from ..emf import fit_vi

__all__ = ["fit_vi_restarts"]

_FIT_OPTIONS = frozenset(
    name
    for name, p in inspect.signature(fit_vi).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)


def fit_vi_restarts(
    model: Callable,
    guide_factory: Callable,
    *args: Any,
    num_restarts: int = 4,
    rng_key: PRNGKeyArray | None = None,
    num_draws: int = 1000,
    coords: dict | None = None,
    dims: dict | None = None,
    **kwargs: Any,
) -> az.InferenceData:
    """Run ``num_restarts`` independent ``fit_vi`` fits; return their draws with chain = restart.

    ``guide_factory(model)`` builds each restart's guide (e.g. ``AutoEMF`` or
    ``AutoDiagonalNormal``); ``*args`` and the keyword arguments that are not ``fit_vi``
    options go to the model, ``fit_vi`` options (``num_steps``, ``init``, ``progress``, ...)
    go to every fit. Each chain holds ``num_draws`` draws of that restart's guide
    (``VIResult.to_arviz``); ``sample_stats`` holds ``log_weight`` and ``lp`` per draw and
    ``restart_khat`` / ``restart_elbo`` per chain (repeated over its draws); the attributes hold
    the per-restart arrays ``khat``, ``elbo``, ``elbo_se``, ``num_steps`` and ``status``
    (comma-separated), and ``max_khat``.
    """
    for name, value in (("num_restarts", num_restarts), ("num_draws", num_draws)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"argument {name!r} must be an int >= 1, got {value!r}.")
    if not callable(guide_factory):
        raise TypeError(
            "argument 'guide_factory' must be a callable model -> guide (e.g. AutoEMF), got "
            f"{type(guide_factory).__name__}."
        )
    options = {k: v for k, v in kwargs.items() if k in _FIT_OPTIONS}
    model_kwargs = {k: v for k, v in kwargs.items() if k not in _FIT_OPTIONS}
    key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    idatas, results = [], []
    for k in jax.random.split(key, num_restarts):
        k_fit, k_draw = jax.random.split(k)
        res = fit_vi(model, guide_factory(model), *args, rng_key=k_fit, **options, **model_kwargs)
        results.append(res)
        idatas.append(res.to_arviz(k_draw, num_draws, coords=coords, dims=dims))
    idata = az.concat(idatas, dim="chain") if num_restarts > 1 else idatas[0]
    khat = np.array([r.khat for r in results], dtype=float)
    elbo = np.array([r.elbo for r in results], dtype=float)
    shape = (num_restarts, num_draws)
    idata.sample_stats["restart_khat"] = (("chain", "draw"), np.broadcast_to(khat[:, None], shape))
    idata.sample_stats["restart_elbo"] = (("chain", "draw"), np.broadcast_to(elbo[:, None], shape))
    attrs = {
        "inference_library": "bayesflow_nets.fit_vi_restarts",
        "num_restarts": num_restarts,
        "khat": khat,
        "max_khat": float(np.nanmax(khat)) if np.any(np.isfinite(khat)) else float("nan"),
        "elbo": elbo,
        "elbo_se": np.array([r.elbo_se for r in results], dtype=float),
        "num_steps": np.array([r.num_steps for r in results], dtype=np.int64),
        "status": ",".join(str(r.status) for r in results),
        "sampling_time": float(sum(r.wall_time for r in results)),
    }
    first = idatas[0].posterior.attrs
    attrs = {
        **{k: first[k] for k in ("created_at", "arviz_version", "guide") if k in first},
        **attrs,
    }
    for group in idata.groups():  # replace az.concat's merged ("combined_*") attributes
        getattr(idata, group).attrs = dict(attrs)
    return idata

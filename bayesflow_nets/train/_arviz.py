"""``to_inference_data``: one converter from constrained draws to ``arviz.InferenceData``.

Every fitter (``fit_vi``, ``nuts``, ``neutra``) hands its draws ``{site: (chain, draw, *shape)}``
here. Dims come from the model's plates: the model is traced once with NumPyro's effect handlers
(values substituted from the first draw, so data-dependent shapes agree), each site's
``cond_indep_stack`` gives the plate name of each batch axis; other axes are named
``{site}_dim_{i}`` as ArviZ does. Coords are integer ranges unless the caller supplies ``coords``.
Imports only NumPy, JAX, NumPyro, xarray and ArviZ, so every layer above can use it.

``density_to_inference_data`` is the counterpart for fitted density models (EMF density, AEF,
VAE), which are point estimates: draws from the density go to ``posterior_predictive`` and the
held-out log-likelihood per data point to ``log_likelihood`` (one draw), so ``az.waic`` /
``az.compare(..., ic="waic")`` read the held-out elpd.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import arviz as az
import jax
import numpy as np
import xarray as xr
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform

__all__ = ["density_to_inference_data", "model_dims", "to_inference_data"]


def _trace(model: Callable, args: Sequence[Any], kwargs: Mapping[str, Any], first: dict):
    def value(site):
        if site["type"] != "sample" or site["is_observed"]:
            return None
        if site["name"] in first:
            return first[site["name"]]
        return init_to_uniform(site)

    substituted = handlers.substitute(handlers.seed(model, 0), substitute_fn=value)
    return handlers.trace(substituted).get_trace(*args, **kwargs)


def _site_dims(name: str, site: dict, shape: tuple[int, ...]) -> list[str]:
    """Axis names of one site value of ``shape``: plate names on batch axes, else defaults."""
    dims = [f"{name}_dim_{i}" for i in range(len(shape))]
    if site["type"] == "sample":
        event_ndim = len(getattr(site["fn"], "event_shape", ()))
    else:  # deterministic: plates index the rightmost axes of the value
        event_ndim = 0
    for frame in site.get("cond_indep_stack", ()):
        axis = len(shape) - event_ndim + frame.dim
        if 0 <= axis < len(shape) and shape[axis] == frame.size:
            dims[axis] = frame.name
    return dims


def model_dims(
    model: Callable,
    draws: Mapping[str, Any],
    model_args: Sequence[Any] = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[dict[str, list[str]], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Trace ``model`` once and return ``(dims, coords, observed)`` for the sites in ``draws``.

    ``draws`` maps site names to arrays of shape ``(chain, draw, *shape)``; ``observed`` holds the
    values of the model's observed sample sites (for the ``observed_data`` group).
    """
    kwargs = dict(model_kwargs or {})
    first = {k: np.asarray(v)[0, 0] for k, v in draws.items()}
    with handlers.block():
        trace = _trace(model, tuple(model_args), kwargs, first)
    dims: dict[str, list[str]] = {}
    coords: dict[str, np.ndarray] = {}
    observed: dict[str, np.ndarray] = {}
    for name, site in trace.items():
        if site["type"] not in ("sample", "deterministic"):
            continue
        if site["type"] == "sample" and site["is_observed"]:
            value = np.asarray(site["value"])
            if name not in draws:
                observed[name] = value
                dims[name] = _site_dims(name, site, value.shape)
            continue
        if name not in draws:
            continue
        shape = tuple(np.shape(draws[name]))[2:]
        dims[name] = _site_dims(name, site, shape)
    for name, names in dims.items():
        shape = observed[name].shape if name in observed else np.shape(draws[name])[2:]
        for dim, size in zip(names, shape):
            if dim in coords and len(coords[dim]) != size:
                raise ValueError(
                    f"plate {dim!r} has size {len(coords[dim])} at one site and {size} at site "
                    f"{name!r}; pass explicit 'dims=' to to_inference_data."
                )
            coords.setdefault(dim, np.arange(size))
    return dims, coords, observed


def _as_numpy(x: Any) -> np.ndarray:
    return np.asarray(jax.device_get(x))


def to_inference_data(
    draws: Mapping[str, Any],
    model: Callable | None = None,
    model_args: Sequence[Any] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    *,
    sample_stats: Mapping[str, Any] | None = None,
    coords: Mapping[str, Sequence[Any]] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    attrs: Mapping[str, Any] | None = None,
    observed_data: bool = True,
) -> az.InferenceData:
    """Constrained draws ``{site: (chain, draw, *shape)}`` as an ``arviz.InferenceData``.

    Args:
        draws: posterior draws per site, leading axes ``(chain, draw)``.
        model: the NumPyro model (traced once) whose plates name the dims; without a model every
            axis gets ArviZ's default ``{site}_dim_{i}`` name.
        model_args: positional arguments of the model.
        model_kwargs: keyword arguments of the model.
        sample_stats: per-draw statistics ``(chain, draw)`` (e.g. ``diverging``, ``lp``).
        coords: coordinate values per dim, overriding the plate-derived integer ranges.
        dims: dim names per site, overriding the plate-derived ones.
        attrs: attributes for the posterior and sample_stats groups (e.g. ``khat``, ``elbo``).
        observed_data: add the model's observed sites as the ``observed_data`` group.
    """
    if not isinstance(draws, Mapping) or not draws:
        raise TypeError(
            f"argument 'draws' must be a non-empty mapping site -> array, got {type(draws)}."
        )
    posterior = {k: _as_numpy(v) for k, v in draws.items()}
    for k, v in posterior.items():
        if v.ndim < 2:
            raise ValueError(
                f"draws of site {k!r} must have shape (chain, draw, ...), got {v.shape}."
            )
    n_chain, n_draw = next(iter(posterior.values())).shape[:2]
    for k, v in posterior.items():
        if v.shape[:2] != (n_chain, n_draw):
            raise ValueError(
                f"draws of site {k!r} have leading shape {v.shape[:2]}, other sites "
                f"{(n_chain, n_draw)}; all sites need the same (chain, draw) axes."
            )
    all_dims: dict[str, list[str]] = {}
    all_coords: dict[str, Any] = {}
    observed: dict[str, np.ndarray] = {}
    if model is not None:
        all_dims, all_coords, observed = model_dims(model, posterior, model_args, model_kwargs)
    if dims:
        for k, v in dims.items():
            n_axes = posterior[k].ndim - 2 if k in posterior else None
            if n_axes is not None and len(v) > n_axes:
                raise ValueError(
                    f"argument 'dims' names {len(v)} axes {list(v)} for site {k!r}, whose draws "
                    f"of shape {posterior[k].shape} have {n_axes} after (chain, draw)."
                )
        all_dims.update({k: list(v) for k, v in dims.items()})
    if coords:
        all_coords.update({k: list(v) for k, v in coords.items()})
    stats = None
    if sample_stats:
        stats = {k: _as_numpy(v) for k, v in sample_stats.items()}
        for k, v in stats.items():
            if v.shape[:2] != (n_chain, n_draw):
                raise ValueError(
                    f"sample_stats {k!r} must have leading shape {(n_chain, n_draw)}, got "
                    f"{v.shape}."
                )
    group_attrs = {k: v for k, v in (attrs or {}).items() if v is not None}
    used = {d for k, names in all_dims.items() if k in posterior or k in observed for d in names}
    idata = az.from_dict(
        posterior=posterior,
        sample_stats=stats,
        observed_data=observed if (observed_data and observed) else None,
        coords={k: v for k, v in all_coords.items() if k in used or k in (coords or {})},
        dims={k: v for k, v in all_dims.items() if k in posterior or k in observed},
        attrs=dict(group_attrs),
        posterior_attrs=dict(group_attrs),
        sample_stats_attrs=dict(group_attrs) if stats is not None else None,
    )
    return idata


def density_to_inference_data(
    samples: Any,
    log_likelihood: Any,
    observed: Any,
    *,
    name: str = "x",
    obs_dim: str = "obs",
    event_dims: Sequence[str] | None = None,
    coords: Mapping[str, Sequence[Any]] | None = None,
    constant_data: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> az.InferenceData:
    """A fitted density model as ``arviz.InferenceData`` (one chain; a point estimate).

    Groups: ``posterior_predictive[name]`` ``(1, n, *event)`` — ``n`` draws from the fitted
    density; ``log_likelihood[name]`` ``(1, 1, n_obs)`` — log p(x_i) of each held-out point
    (one draw: ``az.waic`` gives elpd = Σ_i log p(x_i) with ``p_waic`` = 0, and ``az.compare(...,
    ic="waic")`` ranks models; PSIS-LOO needs posterior draws and does not apply);
    ``observed_data[name]`` ``(n_obs, *event)``; optionally ``constant_data`` (fitted point
    values, e.g. an embedded program's param sites). ``attrs`` go on every group, with
    ``elpd`` (Σ log p) and ``mean_log_likelihood`` added.

    Args:
        samples: ``(n, *event)`` draws from the fitted density.
        log_likelihood: ``(n_obs,)`` held-out log densities.
        observed: ``(n_obs, *event)`` held-out data.
        name: variable name shared by the three groups.
        obs_dim: name of the held-out observation axis.
        event_dims: names of the event axes (default ``{name}_dim_{i}``).
        coords: coordinate values per dim (default integer ranges).
        constant_data: arrays for the ``constant_data`` group (default dims).
        attrs: attributes (e.g. ``model``, ``log_likelihood_estimator``).
    """
    samples, ll, obs = _as_numpy(samples), _as_numpy(log_likelihood), _as_numpy(observed)
    event = samples.shape[1:]
    if samples.ndim < 1 or samples.shape[0] < 1:
        raise ValueError(f"argument 'samples' must have shape (n, *event), got {samples.shape}.")
    if obs.shape[1:] != event or obs.shape[0] < 1:
        raise ValueError(
            f"argument 'observed' must have shape (n_obs, *{event}) like the samples' events, "
            f"got {obs.shape}."
        )
    if ll.shape != obs.shape[:1]:
        raise ValueError(
            f"argument 'log_likelihood' must have shape {obs.shape[:1]} (one value per observed "
            f"point), got {ll.shape}."
        )
    if not np.all(np.isfinite(ll)):
        raise ValueError(
            f"argument 'log_likelihood' has {int(np.sum(~np.isfinite(ll)))} non-finite value(s): "
            "a held-out point lies outside the model's support or the model is broken."
        )
    ev_dims = (
        [f"{name}_dim_{i}" for i in range(len(event))] if event_dims is None else list(event_dims)
    )
    if len(ev_dims) != len(event):
        raise ValueError(
            f"argument 'event_dims' must name {len(event)} axes {event}, got {event_dims!r}."
        )
    all_coords: dict[str, Any] = {d: np.arange(s) for d, s in zip(ev_dims, event)}
    all_coords[obs_dim] = np.arange(obs.shape[0])
    all_coords.update({k: list(v) for k, v in (coords or {}).items()})
    group_attrs = {k: v for k, v in (attrs or {}).items() if v is not None}
    group_attrs["elpd"] = float(np.sum(ll, dtype=np.float64))
    group_attrs["mean_log_likelihood"] = float(np.mean(ll, dtype=np.float64))

    def dataset(data, dims, default_dims=None):
        used = {d for names in dims.values() for d in names}
        return az.dict_to_dataset(
            data,
            coords={k: v for k, v in all_coords.items() if k in used},
            dims=dims,
            attrs=dict(group_attrs),
            default_dims=default_dims,
        )

    groups = {
        "posterior_predictive": dataset({name: samples[None]}, {name: ev_dims}),
        "log_likelihood": dataset({name: ll[None, None]}, {name: [obs_dim]}),
        "observed_data": dataset({name: obs}, {name: [obs_dim, *ev_dims]}, default_dims=[]),
    }
    if constant_data:
        # scalars stay 0-d (``dict_to_dataset`` would give them a length-1 axis)
        consts = {k: _as_numpy(v) for k, v in constant_data.items()}
        groups["constant_data"] = xr.Dataset(
            {k: (tuple(f"{k}_dim_{i}" for i in range(v.ndim)), v) for k, v in consts.items()},
            attrs=dict(group_attrs),
        )
    return az.InferenceData(**groups)

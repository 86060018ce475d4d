"""Checks at the VI boundary: one eager trace of a NumPyro model, errors that name the site.

:func:`check_model_inputs` runs the model once with latent sites set by ``init_to_uniform`` and
raises ``ValueError`` for a discrete latent site and for observed data that is non-finite, outside
its distribution's support or of a shape that does not match the distribution. Masked entries
(``handlers.mask``, ``obs_mask``, ``Distribution.mask``) are not checked, nor are values that are
tracers (under jit) or outside the drawn subsample of a subsampled plate.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import ExpandedDistribution, Independent, MaskedDistribution
from numpyro.infer.initialization import init_to_uniform

_WRAPPERS = (ExpandedDistribution, Independent, MaskedDistribution)


def check_learning_rate(value, name: str = "learning_rate") -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite real number > 0."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    if not ok and isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 0:
        real = np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)
        ok = real and not isinstance(value, jax.core.Tracer)
    if not (ok and math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"argument {name!r} must be a finite number > 0, got {value!r}.")


def check_model_inputs(
    model, args: tuple, kwargs: dict, *, needs: str = "AutoEMF and fit_vi"
) -> None:
    """Trace ``model(*args, **kwargs)`` once and raise ``ValueError`` naming the site for a
    discrete latent site, or observed data whose shape does not match its distribution, that is
    NaN/±inf, or that lies outside the distribution's support. A support violation is confirmed
    by a second trace with another seed: a support that moves with the latent values (``y ~
    Uniform(0, θ)``) is not a data error. ``needs`` names the method in the message for a
    discrete latent site."""
    trace = _trace(model, args, kwargs, seed=0)
    second = functools.cache(lambda: _trace(model, args, kwargs, seed=1))
    for site in trace.values():
        if site["type"] != "sample":
            continue
        name = _shown_name(site["name"], trace)
        if not site["is_observed"]:
            _check_continuous(site, name, needs)
            continue
        _check_shape(site, name)
        if _traced(site):
            continue
        _check_finite(site, name)
        problem = _support_problem(site, name)
        if problem is not None and _same_support(site, second().get(site["name"])):
            raise ValueError(problem)


def _traced(site) -> bool:
    """Whether the observed value or the distribution holds a tracer (values unknown under jit)."""
    leaves = [site["value"], site.get("mask"), *jax.tree_util.tree_leaves(site["fn"])]
    return any(isinstance(x, jax.core.Tracer) for x in leaves)


def _trace(model, args, kwargs, seed):
    """The trace of one run with latent sites drawn by ``init_to_uniform`` from ``seed``; a
    ``ValueError`` raised while tracing is re-raised naming the site it came from."""
    tracer = handlers.trace(
        handlers.substitute(handlers.seed(model, seed), substitute_fn=init_to_uniform)
    )
    try:
        with handlers.block():  # hidden from any handler around the caller (e.g. SVI's trace)
            return tracer.get_trace(*args, **kwargs)
    except ValueError as err:
        raise ValueError(_tracing_message(err, tracer.trace)) from err


def _tracing_message(err, partial_trace) -> str:
    """Explain a ``ValueError`` raised while tracing: name the sample site NumPyro was handling
    (with the shapes when a distribution does not broadcast with its plates), else the last
    sample site recorded."""
    msg = _failing_message(err.__traceback__)
    if msg is None:
        done = [k for k, s in partial_trace.items() if s["type"] == "sample"]
        where = f"after site {done[-1]!r}" if done else "before its first sample site"
        return f"tracing the model failed {where}: {err}"
    if "broadcast" not in str(err):
        return f"tracing the model failed at site {msg['name']!r}: {err}"
    fn, plates = msg["fn"], msg.get("cond_indep_stack", ())
    plate_shape = [1] * max((-f.dim for f in plates), default=0)
    for f in plates:
        plate_shape[f.dim] = f.size
    obs = "" if msg.get("value") is None else f", observed value shape {jnp.shape(msg['value'])}"
    names = ", ".join(f"{f.name!r} (size {f.size}, dim {f.dim})" for f in plates)
    return (
        f"site {msg['name']!r}: distribution shape {tuple(fn.batch_shape) + tuple(fn.event_shape)}"
        f" (batch {tuple(fn.batch_shape)}, event {tuple(fn.event_shape)}{obs}) does not broadcast"
        f" with the plate shape {tuple(plate_shape)} of plates {names}; give the parameters one"
        f" entry per plate element along the plate's dim ({err})."
    )


def _failing_message(tb):
    """The innermost NumPyro sample message among the frames of traceback ``tb``, if any."""
    found = None
    while tb is not None:
        local = tb.tb_frame.f_locals.get("msg")
        if isinstance(local, dict) and local.get("type") == "sample" and "name" in local:
            found = local
        tb = tb.tb_next
    return found


def _check_continuous(site, name: str, needs: str) -> None:
    """Raise for a latent site with a discrete support."""
    support = site["fn"].support
    if not support.is_discrete:
        return
    raise ValueError(
        f"latent site {name} is discrete (support {support}); {needs} need"
        " continuous latent sites: marginalise it out of the model (sum over its values with"
        " numpyro.factor / logsumexp) or pass its value as data (obs=...)."
    )


def _shown_name(name: str, trace) -> str:
    """``name`` quoted, with the site it stands for when NumPyro split it for ``obs_mask``."""
    for part, other in (("_observed", "_unobserved"), ("_unobserved", "_observed")):
        stem = name[: -len(part)]
        if name.endswith(part) and stem + other in trace and stem in trace:
            return f"{name!r} (the{part.replace('_', ' ')} entries of obs_mask site {stem!r})"
    return repr(name)


def _check_shape(site, name: str) -> None:
    """Raise when the observed value's shape does not match ``batch_shape + event_shape``: the
    event dims must agree and broadcasting may expand the distribution but never the value."""
    fn = site["fn"]
    vshape, event = tuple(jnp.shape(site["value"])), tuple(fn.event_shape)
    dshape = tuple(fn.batch_shape) + event
    shapes = f"value shape {vshape}, distribution shape {dshape} (event shape {event})"
    if event and vshape[len(vshape) - len(event) :] != event:
        raise ValueError(
            f"observed site {name}: {shapes}; the value's trailing dims must equal the event shape."
        )
    try:
        joint = np.broadcast_shapes(vshape, dshape)
    except ValueError:
        raise ValueError(
            f"observed site {name}: {shapes} do not broadcast; make the data and the"
            " distribution parameters (or the plate / subsample size) agree."
        ) from None
    if joint != vshape:
        raise ValueError(
            f"observed site {name}: {shapes} broadcast to {joint}, so observed values would be"
            " scored more than once; check for parameters of shape (n, 1) against data of shape"
            " (n,), and the plate dims."
        )


def _used(site, shape):
    """Boolean NumPy array of ``shape``: False where a mask hides the observed entry."""
    fn, mask = site["fn"], site.get("mask")
    used = np.ones((), bool)
    if mask is not None:
        used = np.reshape(np.asarray(mask), np.shape(mask) + (1,) * fn.event_dim)
    while isinstance(fn, _WRAPPERS):
        if isinstance(fn, MaskedDistribution):
            mask = np.asarray(fn._mask)
            used = used & np.reshape(mask, mask.shape + (1,) * fn.event_dim)
        fn = fn.base_dist
    return np.broadcast_to(used, shape)


def _base(fn):
    """The distribution under mask / expand / to_event wrappers."""
    while isinstance(fn, _WRAPPERS):
        fn = fn.base_dist
    return fn


def _first(bad):
    """Count of True entries of ``bad`` and the index of the first one, as a tuple of ints."""
    index = np.unravel_index(int(np.argmax(bad)), bad.shape)
    return int(np.count_nonzero(bad)), tuple(int(i) for i in index)


def _check_finite(site, name: str) -> None:
    """Raise when an unmasked observed entry is NaN or ±inf."""
    value = np.asarray(site["value"])
    if not np.issubdtype(value.dtype, np.inexact):
        return
    bad = ~np.isfinite(value) & _used(site, value.shape)
    if not bad.any():
        return
    count, index = _first(bad)
    raise ValueError(
        f"observed site {name} has {count} non-finite value(s) (NaN or ±inf), the first"
        f" at index {index} ({value[index]}); drop or impute them, or mark them missing"
        " with obs_mask=."
    )


def _support_problem(site, name: str) -> str | None:
    """A message for the first unmasked observed entry outside the support, else None; for an
    event-shaped support (simplex, Cholesky factor) the index is that of the whole event."""
    fn, value = site["fn"], np.asarray(site["value"])
    support = fn.support
    ok = np.asarray(support(value))
    used = _used(site, value.shape).any(axis=tuple(range(ok.ndim, value.ndim)))
    bad = ~ok & used
    if not bad.any():
        return None
    count, index = _first(bad)
    shown = value[index]
    shown = str(shown) if np.ndim(shown) == 0 else np.array2string(shown, separator=", ")
    return (
        f"observed site {name} has {count} value(s) outside the support {support} of"
        f" its {type(_base(fn)).__name__} distribution, the first at index {index}: {shown}."
    )


def _same_support(site, other) -> bool:
    """Whether the support is the same in ``other`` (the site traced with another seed): a
    support that moves with the latent values or the subsample is not a data error."""
    if other is None:
        return False
    a = jax.tree_util.tree_leaves(site["fn"].support)
    b = jax.tree_util.tree_leaves(other["fn"].support)
    return len(a) == len(b) and all(
        np.shape(x) == np.shape(y) and bool(np.all(np.asarray(x) == np.asarray(y)))
        for x, y in zip(a, b, strict=True)
    )


def is_data(v) -> bool:
    """A numeric array argument of the model (JAX, or NumPy of a numeric dtype)."""
    return isinstance(v, jax.Array) or (isinstance(v, np.ndarray) and v.dtype.kind in "biufc")


def as_jax_data(args, kwargs):
    """Numeric NumPy arrays among the model's arguments as JAX arrays, so that the guide's own
    traces of the model (its structured layer, the Laplace fit) can index them with traced
    indices (e.g. a plate's), as ``SVI.run``'s traced arguments can be."""
    return jax.tree_util.tree_map(lambda v: jnp.asarray(v) if is_data(v) else v, (args, kwargs))

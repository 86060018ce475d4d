"""Shared validation and helpers of the AEF / VAE models."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._custom_types import Shape
from ..bijectors import (
    AbstractBijector,
    StandardNormal,
    Transformed,
    init_actnorm,
    logit_preprocessing,
)
from ..train import density_to_inference_data
from ._data import check_unit_interval

LOG_2PI = float(np.log(2 * np.pi))


def std_normal_logpdf(v: Array) -> Array:
    """Σ log N(v_i; 0, 1)."""
    return -0.5 * jnp.sum(v**2) - 0.5 * v.size * LOG_2PI


def normal_logpdf(v: Array, mu: Array, sigma: Array) -> Array:
    """Σ log N(v_i; μ_i, σ_i²)."""
    return std_normal_logpdf((v - mu) / sigma) - jnp.sum(jnp.log(sigma))


def check_shape(shape) -> Shape:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as err:
        raise TypeError(f"argument 'shape' must be a tuple of ints, got {shape!r}.") from err
    if not shape or min(shape) < 1:
        raise ValueError(f"argument 'shape' must be a non-empty tuple of positive ints, got {shape}.")
    return shape


def _describe(out) -> str:
    return str(jax.tree_util.tree_map(lambda a: getattr(a, "shape", a), out))


def check_net(name: str, net, in_shape: Shape, out_shape: Shape) -> None:
    """Trace ``net`` on one input of ``in_shape``; require it to return (μ, σ) of ``out_shape``."""
    if not callable(net):
        raise TypeError(f"argument {name!r} must be a callable Equinox module, got {type(net)}.")
    leaves = [x for x in jax.tree_util.tree_leaves(net) if eqx.is_inexact_array(x)]
    dtype = leaves[0].dtype if leaves else jnp.result_type(float)
    try:
        out = eqx.filter_eval_shape(net, jax.ShapeDtypeStruct(in_shape, dtype))
    except Exception as err:  # any shape/channel mismatch inside the network
        raise ValueError(
            f"argument {name!r} ({type(net).__name__}) cannot take an input of shape {in_shape} "
            f"(check its channels / input size): {type(err).__name__}: {err}"
        ) from err
    ok = (
        isinstance(out, tuple)
        and len(out) == 2
        and all(getattr(o, "shape", None) == out_shape for o in out)
    )
    if not ok:
        raise ValueError(
            f"argument {name!r} must map an input of shape {in_shape} to a pair (mu, sigma) of "
            f"shape {out_shape}; got {_describe(out)}."
        )


def as_flow(name: str, flow, dim: int) -> AbstractBijector | None:
    """Accept None, a bijector on (dim,), or Transformed(StandardNormal((dim,)), bijector)."""
    if flow is None:
        return None
    if isinstance(flow, Transformed):
        if not isinstance(flow.base, StandardNormal):
            raise ValueError(
                f"argument {name!r}: a Transformed flow must have a StandardNormal base, "
                f"got {type(flow.base).__name__}."
            )
        flow = flow.bijector
    if not isinstance(flow, AbstractBijector):
        raise TypeError(
            f"argument {name!r} must be None, an AbstractBijector or a Transformed flow, "
            f"got {type(flow)}."
        )
    if flow.shape != (dim,) or flow.cond_shape is not None:
        raise ValueError(
            f"argument {name!r} must be an unconditional bijector of shape {(dim,)}, got shape "
            f"{flow.shape} and cond_shape {flow.cond_shape}."
        )
    return flow


def as_preprocess(preprocess, shape: Shape) -> AbstractBijector | None:
    """"logit" → :func:`logit_preprocessing`; None; or a bijector on ``shape`` ([0,1] → R)."""
    if preprocess is None:
        return None
    if isinstance(preprocess, str):
        if preprocess != "logit":
            raise ValueError(
                f"argument 'preprocess' must be 'logit', None or a bijector, got {preprocess!r}."
            )
        return logit_preprocessing(shape)
    if not isinstance(preprocess, AbstractBijector):
        raise TypeError(
            f"argument 'preprocess' must be 'logit', None or an AbstractBijector, got "
            f"{type(preprocess)}."
        )
    if preprocess.shape != shape or preprocess.cond_shape is not None:
        raise ValueError(
            f"argument 'preprocess' must be unconditional with shape {shape}, got "
            f"{preprocess.shape}."
        )
    return preprocess


def apply_preprocess(pre: AbstractBijector | None, x: Array) -> tuple[Array, Array]:
    if pre is None:
        return x, jnp.zeros((), x.dtype)
    return pre.transform_and_log_det(x)


def invert_preprocess(pre: AbstractBijector | None, y: Array) -> Array:
    return y if pre is None else pre.inverse(y)


def flow_inverse(flow: AbstractBijector | None, y: Array) -> tuple[Array, Array]:
    if flow is None:
        return y, jnp.zeros((), y.dtype)
    return flow.inverse_and_log_det(y)


def flow_forward(flow: AbstractBijector | None, x: Array) -> Array:
    return x if flow is None else flow.transform(x)


def batch_of(name: str, x, event: Shape, *, unit_range: bool = True) -> tuple[Array, Shape]:
    """Check trailing ``event`` dims (and [0, 1] range when concrete); flatten the batch dims."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    n = len(event)
    if x.ndim < n or x.shape[x.ndim - n :] != tuple(event):
        raise ValueError(
            f"argument {name!r} has shape {x.shape}; its trailing dimensions must equal the "
            f"model's image shape {tuple(event)} (check the number of channels)."
        )
    if unit_range:
        check_unit_interval(name, x)
    batch = x.shape[: x.ndim - n]
    return x.reshape((-1,) + tuple(event)), batch


def with_initialised_actnorm(model, x: Array):
    """Copy of ``model`` whose preprocessing ActNorm layers are initialised on ``x`` ([0, 1])."""
    if getattr(model, "preprocess", None) is None:
        return model
    return eqx.tree_at(lambda m: m.preprocess, model, init_actnorm(model.preprocess, x))


def image_dims(shape: Shape) -> list[str] | None:
    """Names of the image axes for ArviZ: (channel, row, col), (row, col) or the defaults."""
    return {3: ["channel", "row", "col"], 2: ["row", "col"]}.get(len(shape))


def check_draws(n) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"argument 'n' must be an int >= 1, got {n!r}.")
    return n


def check_heldout(model, x) -> Array:
    """Held-out images ``(n_obs, *shape)`` in [0, 1] (for ``to_arviz``)."""
    x = jnp.asarray(x)
    if x.ndim != len(model.shape) + 1 or x.shape[1:] != tuple(model.shape):
        raise ValueError(
            f"argument 'x' must be held-out images of shape (n_obs, *{tuple(model.shape)}), got "
            f"{x.shape}."
        )
    batch_of("x", x, model.shape, unit_range=model.preprocess is not None)
    return x


def density_arviz(model, x: Array, samples: Array, log_lik: Array, estimator: str):
    """``bayesflow_nets.infer.density_to_inference_data`` for an image density model."""
    return density_to_inference_data(
        samples,
        log_lik,
        x,
        event_dims=image_dims(model.shape),
        attrs={
            "inference_library": "bayesflow_nets.aef",
            "model": type(model).__name__,
            "latent_dim": int(model.latent_dim),
            "log_likelihood_estimator": estimator,
        },
    )

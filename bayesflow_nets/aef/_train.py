"""Training AEF / VAE / flow density models on quantised images with ``infer.fit_to_data``."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._custom_types import Shape
from ..bijectors import AbstractDistribution
from ..infer import FitResult, fit_to_data
from ._common import with_initialised_actnorm
from ._data import _check_levels, check_levels_data, dequantise


def batch_key(x: Array, salt: int = 0) -> PRNGKeyArray:
    """A PRNG key derived from a minibatch's contents (and row order).

    ``fit_to_data`` passes no key to ``loss_fn``; minibatches are reshuffled every epoch, so this
    gives fresh dequantisation / reparametrisation noise per step while the fixed validation
    chunks get the same noise every epoch (common random numbers for early stopping).
    """
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32).reshape(x.shape[0], -1)
    pos = jnp.arange(bits.shape[1], dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
    rows = jnp.sum(bits * pos, axis=1, dtype=jnp.uint32)
    order = jnp.arange(x.shape[0], dtype=jnp.uint32) * jnp.uint32(40503) + jnp.uint32(7)
    seed = jnp.sum(rows * order, dtype=jnp.uint32)
    return jax.random.fold_in(jax.random.key(salt), seed)


class _Trainee(AbstractDistribution):
    """Private adapter: presents any model to ``fit_to_data`` (typed for distributions).

    Only the loss of :func:`dequantised_loss` is used; it unwraps ``model``.
    """

    model: eqx.Module
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, model: eqx.Module, shape: Shape):
        self.model = model
        self.shape = shape
        self.cond_shape = None

    def _log_prob(self, x, condition):
        raise NotImplementedError("_Trainee is a training adapter; use the wrapped model.")

    def _sample_and_log_prob(self, key, condition):
        raise NotImplementedError("_Trainee is a training adapter; use the wrapped model.")


def dequantised_loss(levels: int):
    """``loss_fn(model, x_int)`` for ``fit_to_data``: −mean objective on dequantised images.

    Uses ``model.objective(key, x)`` (exact log p for PartitionAEF, log p(x, Wy) for
    ExpansionAEF, the ELBO for VAE) or, if absent, ``model.log_prob(x)`` (e.g. a flow).
    """
    levels = _check_levels(levels)

    def loss_fn(model, x_int):
        if isinstance(model, _Trainee):
            model = model.model
        k1, k2 = jax.random.split(batch_key(x_int))
        u = jax.random.uniform(k1, x_int.shape, x_int.dtype)
        x = (x_int + u) / levels
        if hasattr(model, "objective"):
            lp = model.objective(k2, x)
        else:
            lp = model.log_prob(x)
        return -jnp.mean(lp)

    return loss_fn


def fit_dequantised(
    key: PRNGKeyArray,
    model: eqx.Module,
    images: ArrayLike,
    levels: int,
    *,
    init_actnorm: bool = True,
    **fit_kwargs: Any,
) -> FitResult:
    """Fit ``model`` to quantised ``images`` (integer levels) with ``infer.fit_to_data``.

    Validates the images before training (shape = ``(n,) + model.shape``, integer levels in
    {0, …, levels − 1}), initialises the preprocessing ActNorm on a dequantised batch and trains
    on freshly dequantised minibatches (:func:`dequantised_loss`). ``fit_kwargs`` go to
    ``fit_to_data`` (``max_epochs``, ``batch_size``, ``learning_rate``, ``max_patience``, …);
    with ``checkpoint=path`` (and ``checkpoint_every=`` epochs) a call that finds the file
    resumes to the same result as an uninterrupted run (same ``key``, model and images).
    """
    levels = _check_levels(levels)
    shape = tuple(getattr(model, "shape", ()))
    x = np.asarray(images)
    if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
        raise ValueError(
            f"argument 'images' has shape {x.shape}; expected (n,) + {shape} to match the "
            "model (check the number of channels and the image size)."
        )
    check_levels_data("images", x, levels)
    if "loss_fn" in fit_kwargs:
        raise TypeError("argument 'loss_fn' is set by fit_dequantised; use fit_to_data directly.")
    key, k_init = jax.random.split(key)
    x = jnp.asarray(x, jnp.float32)
    if init_actnorm:
        model = with_initialised_actnorm(model, dequantise(k_init, x[:1000], levels))
    trainee = _Trainee(model, shape)
    result = fit_to_data(key, trainee, x, loss_fn=dequantised_loss(levels), **fit_kwargs)
    return result._replace(model=result.model.model)


__all__ = ["batch_key", "dequantised_loss", "fit_dequantised"]

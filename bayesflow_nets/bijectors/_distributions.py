"""Distributions: StandardNormal, Normal and Transformed(base, bijector)."""

from __future__ import annotations

from abc import abstractmethod

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._custom_types import Shape
from ._base import AbstractBijector, _as_shape
from ._utils import as_float_array, broadcast_shape, positive_param

_LOG_2PI = float(np.log(2 * np.pi))


def _batch_shape(x: Array, event: Shape, arg: str, owner: str) -> Shape:
    n = len(event)
    if x.ndim < n or (n and x.shape[x.ndim - n :] != event):
        raise ValueError(
            f"{owner}: argument {arg!r} has shape {x.shape}; its trailing dimensions must equal "
            f"the event shape {event}."
        )
    return x.shape[: x.ndim - n]


class AbstractDistribution(eqx.Module):
    """A distribution over events of shape ``shape``, optionally conditional on ``cond_shape``.

    Subclasses write single-sample ``_log_prob`` and ``_sample_and_log_prob``; the public methods
    vectorise over leading batch dimensions of ``x`` / ``condition`` and over ``sample_shape``.
    """

    shape: eqx.AbstractVar[Shape]
    cond_shape: eqx.AbstractVar[Shape | None]

    @abstractmethod
    def _log_prob(self, x: Array, condition: Array | None) -> Array: ...

    @abstractmethod
    def _sample_and_log_prob(
        self, key: PRNGKeyArray, condition: Array | None
    ) -> tuple[Array, Array]: ...

    def _sample(self, key, condition):
        return self._sample_and_log_prob(key, condition)[0]

    def _check_condition(self, condition):
        owner = type(self).__name__
        if self.cond_shape is None:
            if condition is not None:
                raise ValueError(
                    f"{owner}: got a 'condition' but the distribution is unconditional."
                )
            return None, ()
        if condition is None:
            raise ValueError(
                f"{owner}: 'condition' with trailing shape {self.cond_shape} is required."
            )
        condition = jnp.asarray(condition)
        return condition, _batch_shape(condition, self.cond_shape, "condition", owner)

    def log_prob(self, x: ArrayLike, condition: ArrayLike | None = None) -> Array:
        """Log density; leading dims of ``x`` (and ``condition``) are batch dims (broadcast)."""
        x = jnp.asarray(x)
        xb = _batch_shape(x, self.shape, "x", type(self).__name__)
        condition, cb = self._check_condition(condition)
        batch = jnp.broadcast_shapes(xb, cb)
        x = jnp.broadcast_to(x, batch + self.shape)
        fn = self._log_prob
        if condition is None:
            flat = x.reshape((-1,) + self.shape)
            out = eqx.filter_vmap(lambda xi: fn(xi, None))(flat) if batch else fn(x, None)
        else:
            condition = jnp.broadcast_to(condition, batch + self.cond_shape)
            if batch:
                flat_c = condition.reshape((-1,) + self.cond_shape)
                out = eqx.filter_vmap(fn)(x.reshape((-1,) + self.shape), flat_c)
            else:
                out = fn(x, condition)
        return out.reshape(batch)

    def sample_and_log_prob(
        self,
        key: PRNGKeyArray,
        sample_shape: Shape = (),
        condition: ArrayLike | None = None,
    ) -> tuple[Array, Array]:
        """Draw samples of shape ``sample_shape + condition batch + shape`` with their log density."""
        sample_shape = _as_shape(sample_shape, "sample_shape", min_size=0)
        condition, cb = self._check_condition(condition)
        batch = sample_shape + cb
        n = int(np.prod(batch)) if batch else 1
        keys = jax.random.split(key, n)
        if condition is None:
            x, lp = eqx.filter_vmap(lambda k: self._sample_and_log_prob(k, None))(keys)
        else:
            c = jnp.broadcast_to(condition, batch + self.cond_shape).reshape((n,) + self.cond_shape)
            x, lp = eqx.filter_vmap(self._sample_and_log_prob)(keys, c)
        return x.reshape(batch + self.shape), lp.reshape(batch)

    def sample(
        self, key: PRNGKeyArray, sample_shape: Shape = (), condition: ArrayLike | None = None
    ) -> Array:
        """Draw samples of shape ``sample_shape + condition batch + shape``."""
        return self.sample_and_log_prob(key, sample_shape, condition)[0]


class StandardNormal(AbstractDistribution):
    """N(0, I) over events of shape ``shape``."""

    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, shape: Shape = ()):
        self.shape = _as_shape(shape, "shape")

    def _log_prob(self, x, condition):
        return -0.5 * jnp.sum(x**2) - 0.5 * x.size * _LOG_2PI

    def _sample_and_log_prob(self, key, condition):
        x = jax.random.normal(key, self.shape)
        return x, self._log_prob(x, None)


class Normal(AbstractDistribution):
    """Independent N(loc, scale²) per element; scale softplus-parametrised (trainable)."""

    loc: Array
    scale_unconstrained: Array
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, loc: ArrayLike = 0.0, scale: ArrayLike = 1.0):
        loc = as_float_array("loc", loc)
        scale = as_float_array("scale", scale)
        shape = broadcast_shape(loc=loc, scale=scale)
        self.loc = jnp.broadcast_to(loc, shape)
        self.scale_unconstrained = jnp.broadcast_to(positive_param("scale", scale), shape)
        self.shape = shape

    @property
    def scale(self) -> Array:
        return jax.nn.softplus(self.scale_unconstrained)

    def _log_prob(self, x, condition):
        s = self.scale
        z = (x - self.loc) / s
        return -0.5 * jnp.sum(z**2) - jnp.sum(jnp.log(s)) - 0.5 * x.size * _LOG_2PI

    def _sample_and_log_prob(self, key, condition):
        x = self.loc + self.scale * jax.random.normal(key, self.shape)
        return x, self._log_prob(x, None)


class Transformed(AbstractDistribution):
    """Push-forward of ``base`` by ``bijector``: x = f(z). ``log_prob`` is one inverse pass."""

    base: AbstractDistribution
    bijector: AbstractBijector
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(self, base: AbstractDistribution, bijector: AbstractBijector):
        if not isinstance(base, AbstractDistribution):
            raise TypeError(f"argument 'base' must be an AbstractDistribution, got {type(base)}.")
        if not isinstance(bijector, AbstractBijector):
            raise TypeError(
                f"argument 'bijector' must be an AbstractBijector, got {type(bijector)}."
            )
        if base.shape != bijector.shape:
            raise ValueError(
                f"argument 'bijector' has shape {bijector.shape} but 'base' has shape {base.shape}."
            )
        if (
            base.cond_shape is not None
            and bijector.cond_shape is not None
            and base.cond_shape != bijector.cond_shape
        ):
            raise ValueError(
                f"cond_shape mismatch: base {base.cond_shape} vs bijector {bijector.cond_shape}."
            )
        self.base = base
        self.bijector = bijector
        self.shape = base.shape
        self.cond_shape = (
            bijector.cond_shape if bijector.cond_shape is not None else base.cond_shape
        )

    def _log_prob(self, x, condition):
        bc = condition if self.bijector.cond_shape is not None else None
        z, ld = self.bijector.inverse_and_log_det(x, bc)
        base_c = condition if self.base.cond_shape is not None else None
        return self.base._log_prob(z, base_c) + ld

    def _sample_and_log_prob(self, key, condition):
        base_c = condition if self.base.cond_shape is not None else None
        z, lp = self.base._sample_and_log_prob(key, base_c)
        bc = condition if self.bijector.cond_shape is not None else None
        x, ld = self.bijector.transform_and_log_det(z, bc)
        return x, lp - ld

    def merge_transforms(self) -> Transformed:
        """Flatten nested Transformed bases into one Chain (same distribution)."""
        if isinstance(self.base, Transformed):
            inner = self.base.merge_transforms()
            from ._structure import Chain

            return Transformed(inner.base, Chain([inner.bijector, self.bijector]))
        return self


__all__ = ["AbstractDistribution", "StandardNormal", "Normal", "Transformed"]

"""Fixed elementwise bijectors: Exp, Softplus, Sigmoid, Tanh."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Shape
from ._base import AbstractBijector, _as_shape


class Exp(AbstractBijector):
    """y = exp(x): R → (0, ∞)."""

    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, shape: Shape = ()):
        self.shape = _as_shape(shape, "shape")

    def _transform_and_log_det(self, x, condition):
        return jnp.exp(x), jnp.sum(x)

    def _inverse_and_log_det(self, y, condition):
        x = jnp.log(y)
        return x, -jnp.sum(x)


class Softplus(AbstractBijector):
    """y = log(1 + eˣ): R → (0, ∞)."""

    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, shape: Shape = ()):
        self.shape = _as_shape(shape, "shape")

    def _transform_and_log_det(self, x, condition):
        return jax.nn.softplus(x), jnp.sum(jax.nn.log_sigmoid(x))

    def _inverse_and_log_det(self, y, condition):
        x = y + jnp.log(-jnp.expm1(-y))
        return x, -jnp.sum(jax.nn.log_sigmoid(x))


class Sigmoid(AbstractBijector):
    """y = 1 / (1 + e⁻ˣ): R → (0, 1)."""

    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, shape: Shape = ()):
        self.shape = _as_shape(shape, "shape")

    def _transform_and_log_det(self, x, condition):
        ld = jax.nn.log_sigmoid(x) + jax.nn.log_sigmoid(-x)
        return jax.nn.sigmoid(x), jnp.sum(ld)

    def _inverse_and_log_det(self, y, condition):
        x = jnp.log(y) - jnp.log1p(-y)
        ld = jax.nn.log_sigmoid(x) + jax.nn.log_sigmoid(-x)
        return x, -jnp.sum(ld)


def _tanh_log_det(x):
    # log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x)), stable for large |x|.
    return 2.0 * (jnp.log(2.0) - x - jax.nn.softplus(-2.0 * x))


class Tanh(AbstractBijector):
    """y = tanh(x): R → (−1, 1)."""

    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, shape: Shape = ()):
        self.shape = _as_shape(shape, "shape")

    def _transform_and_log_det(self, x, condition):
        return jnp.tanh(x), jnp.sum(_tanh_log_det(x))

    def _inverse_and_log_det(self, y, condition):
        x = jnp.arctanh(y)
        return x, -jnp.sum(_tanh_log_det(x))


__all__ = ["Exp", "Softplus", "Sigmoid", "Tanh"]

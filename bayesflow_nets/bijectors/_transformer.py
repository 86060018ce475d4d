"""Elementwise 'transformer' bijectors whose parameters are produced by a conditioner network."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ._base import AbstractBijector
from ._rqs import RationalQuadraticSpline, rqs_blocked, rqs_blocked_biased


class TransformerSpec(eqx.Module):
    """Flat parametrisation of a scalar (shape ()) bijector used as an elementwise transformer."""

    static: AbstractBijector = eqx.field(static=True)
    treedef: object = eqx.field(static=True)
    leaf_shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    num_params: int = eqx.field(static=True)

    def __init__(self, transformer: AbstractBijector, *, arg: str = "transformer"):
        if not isinstance(transformer, AbstractBijector):
            raise TypeError(
                f"argument {arg!r} must be an AbstractBijector, got {type(transformer)}."
            )
        if transformer.shape != () or transformer.cond_shape is not None:
            raise ValueError(
                f"argument {arg!r} must be an unconditional scalar bijector (shape=(), "
                f"cond_shape=None), got shape={transformer.shape}, cond_shape={transformer.cond_shape}."
            )
        params, static = eqx.partition(transformer, eqx.is_inexact_array)
        leaves, treedef = jax.tree_util.tree_flatten(params)
        self.static = static
        self.treedef = treedef
        self.leaf_shapes = tuple(tuple(leaf.shape) for leaf in leaves)
        self.num_params = int(sum(leaf.size for leaf in leaves))

    @staticmethod
    def initial_params(transformer: AbstractBijector) -> Array:
        """The transformer's own parameters as one flat vector (initial conditioner output)."""
        leaves = jax.tree_util.tree_leaves(eqx.filter(transformer, eqx.is_inexact_array))
        if not leaves:
            return jnp.zeros((0,))
        return jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])

    def build(self, flat: Array) -> AbstractBijector:
        """Scalar bijector from a flat parameter vector."""
        leaves, i = [], 0
        for shp in self.leaf_shapes:
            size = 1
            for s in shp:
                size *= s
            leaves.append(flat[i : i + size].reshape(shp))
            i += size
        params = jax.tree_util.tree_unflatten(self.treedef, leaves)
        return eqx.combine(params, self.static)

    def apply(
        self, x: Array, params: Array, inverse: bool, bias: Array | None = None
    ) -> tuple[Array, Array]:
        """Apply per element: ``x`` shape (d,), ``params`` shape (num_params, d) (blocked layout),
        plus ``bias`` (same shape) when given: a conditioner's head bias, kept apart so that a
        spline's native kernel can add it as it reads (:func:`rqs_blocked_biased`).

        A spline runs on the blocked layout as it is (:func:`rqs_blocked`, elementwise across the
        d splines); other transformers are built per element and vmapped.
        """
        if isinstance(self.static, RationalQuadraticSpline):
            k = self.leaf_shapes[0][0]
            if bias is None:
                y, ld = rqs_blocked(x, params, k, *self.static.interval, inverse)
            else:
                y, ld = rqs_blocked_biased(x, params, bias, k, *self.static.interval, inverse)
            return y, jnp.sum(ld)
        if bias is not None:
            params = params + bias

        def one(xi, pi):
            b = self.build(pi)
            if inverse:
                return b.inverse_and_log_det(xi)
            return b.transform_and_log_det(xi)

        y, ld = jax.vmap(one, in_axes=(0, 1))(x, params)
        return y, jnp.sum(ld)


__all__ = ["TransformerSpec"]

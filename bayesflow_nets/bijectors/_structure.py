"""Structural bijectors: Permute, Reverse, Chain, Invert, Concatenate, Stack, Scan."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._custom_types import Shape
from ._base import AbstractBijector, _as_shape


class Permute(AbstractBijector):
    """y = x[perm] over the flattened event (any event shape)."""

    perm: Array
    inverse_perm: Array
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, perm: ArrayLike, shape: Shape | None = None):
        if isinstance(perm, jax.core.Tracer):  # built under eqx.filter_vmap (stacked layers)
            if not jnp.issubdtype(perm.dtype, jnp.integer):
                raise TypeError(f"argument 'perm' must be integer, got dtype {perm.dtype}.")
            flat = perm.ravel()
            shape = perm.shape if shape is None else _as_shape(shape, "shape")
            inverse = jnp.argsort(flat)
        else:
            perm_np = np.asarray(perm)
            if perm_np.dtype.kind not in "iu":
                raise TypeError(
                    f"argument 'perm' must be an integer array, got dtype {perm_np.dtype}."
                )
            flat = perm_np.ravel()
            if sorted(flat.tolist()) != list(range(flat.size)):
                raise ValueError("argument 'perm' must be a permutation of 0..n-1.")
            shape = perm_np.shape if shape is None else _as_shape(shape, "shape")
            inverse = np.argsort(flat)
        if int(np.prod(shape)) != flat.size:
            raise ValueError(f"argument 'shape' {shape} does not match perm of size {flat.size}.")
        self.perm = jnp.asarray(flat, dtype=jnp.int32)
        self.inverse_perm = jnp.asarray(inverse, dtype=jnp.int32)
        self.shape = tuple(shape)

    def _transform_and_log_det(self, x, condition):
        return x.ravel()[self.perm].reshape(self.shape), jnp.zeros((), x.dtype)

    def _inverse_and_log_det(self, y, condition):
        return y.ravel()[self.inverse_perm].reshape(self.shape), jnp.zeros((), y.dtype)


class Reverse(AbstractBijector):
    """Reverse the last axis."""

    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, shape: Shape):
        self.shape = _as_shape(shape, "shape")
        if len(self.shape) == 0:
            raise ValueError("argument 'shape' must have at least one axis for Reverse.")

    def _transform_and_log_det(self, x, condition):
        return jnp.flip(x, -1), jnp.zeros((), x.dtype)

    def _inverse_and_log_det(self, y, condition):
        return jnp.flip(y, -1), jnp.zeros((), y.dtype)


def _common_cond_shape(bijectors: Sequence[AbstractBijector], arg: str) -> Shape | None:
    shapes = {b.cond_shape for b in bijectors if b.cond_shape is not None}
    if len(shapes) > 1:
        raise ValueError(f"argument {arg!r}: bijectors have different cond_shape values {shapes}.")
    return shapes.pop() if shapes else None


def _cond(b: AbstractBijector, condition):
    return None if b.cond_shape is None else condition


class Chain(AbstractBijector):
    """Composition: ``Chain([f1, f2]).transform(x) = f2(f1(x))``."""

    bijectors: tuple[AbstractBijector, ...]
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(self, bijectors: Sequence[AbstractBijector]):
        bijectors = tuple(bijectors)
        if not bijectors:
            raise ValueError("argument 'bijectors' must be a non-empty sequence.")
        for i, b in enumerate(bijectors):
            if not isinstance(b, AbstractBijector):
                raise TypeError(f"argument 'bijectors'[{i}] is not an AbstractBijector: {type(b)}.")
            if b.shape != bijectors[0].shape:
                raise ValueError(
                    f"argument 'bijectors': all shapes must match, [0] has {bijectors[0].shape} "
                    f"but [{i}] has {b.shape}."
                )
        self.bijectors = bijectors
        self.shape = bijectors[0].shape
        self.cond_shape = _common_cond_shape(bijectors, "bijectors")

    def _transform_and_log_det(self, x, condition):
        total = jnp.zeros((), x.dtype)
        for b in self.bijectors:
            x, ld = b.transform_and_log_det(x, _cond(b, condition))
            total = total + ld
        return x, total

    def _inverse_and_log_det(self, y, condition):
        total = jnp.zeros((), y.dtype)
        for b in reversed(self.bijectors):
            y, ld = b.inverse_and_log_det(y, _cond(b, condition))
            total = total + ld
        return y, total


class Invert(AbstractBijector):
    """Swap the forward and inverse directions of a bijector."""

    bijector: AbstractBijector
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(self, bijector: AbstractBijector):
        if not isinstance(bijector, AbstractBijector):
            raise TypeError(
                f"argument 'bijector' must be an AbstractBijector, got {type(bijector)}."
            )
        self.bijector = bijector
        self.shape = bijector.shape
        self.cond_shape = bijector.cond_shape

    def _transform_and_log_det(self, x, condition):
        return self.bijector.inverse_and_log_det(x, condition)

    def _inverse_and_log_det(self, y, condition):
        return self.bijector.transform_and_log_det(y, condition)


class Concatenate(AbstractBijector):
    """Block-wise: each bijector acts on its own slice of ``axis``; slices follow their shapes."""

    bijectors: tuple[AbstractBijector, ...]
    axis: int = eqx.field(static=True)
    split_points: tuple[int, ...] = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(self, bijectors: Sequence[AbstractBijector], axis: int = 0):
        bijectors = tuple(bijectors)
        if not bijectors:
            raise ValueError("argument 'bijectors' must be a non-empty sequence.")
        ndim = len(bijectors[0].shape)
        if ndim == 0:
            raise ValueError("argument 'bijectors': Concatenate needs bijectors with >= 1 axis.")
        axis = axis % ndim
        for i, b in enumerate(bijectors):
            other = b.shape[:axis] + b.shape[axis + 1 :]
            ref = bijectors[0].shape[:axis] + bijectors[0].shape[axis + 1 :]
            if len(b.shape) != ndim or other != ref:
                raise ValueError(
                    f"argument 'bijectors'[{i}] has shape {b.shape}, incompatible with "
                    f"{bijectors[0].shape} for concatenation along axis {axis}."
                )
        sizes = [b.shape[axis] for b in bijectors]
        self.bijectors = bijectors
        self.axis = axis
        self.split_points = tuple(int(s) for s in np.cumsum(sizes)[:-1])
        shape = list(bijectors[0].shape)
        shape[axis] = int(sum(sizes))
        self.shape = tuple(shape)
        self.cond_shape = _common_cond_shape(bijectors, "bijectors")

    def _apply(self, x, condition, inverse):
        parts = jnp.split(x, self.split_points, axis=self.axis)
        outs, total = [], jnp.zeros((), x.dtype)
        for b, p in zip(self.bijectors, parts):
            fn = b.inverse_and_log_det if inverse else b.transform_and_log_det
            y, ld = fn(p, _cond(b, condition))
            outs.append(y)
            total = total + ld
        return jnp.concatenate(outs, axis=self.axis), total

    def _transform_and_log_det(self, x, condition):
        return self._apply(x, condition, False)

    def _inverse_and_log_det(self, y, condition):
        return self._apply(y, condition, True)


class Stack(AbstractBijector):
    """Block-wise over a new ``axis``: bijector i acts on ``x.take(i, axis)``."""

    bijectors: tuple[AbstractBijector, ...]
    axis: int = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(self, bijectors: Sequence[AbstractBijector], axis: int = 0):
        bijectors = tuple(bijectors)
        if not bijectors:
            raise ValueError("argument 'bijectors' must be a non-empty sequence.")
        for i, b in enumerate(bijectors):
            if b.shape != bijectors[0].shape:
                raise ValueError(
                    f"argument 'bijectors'[{i}] has shape {b.shape}, expected {bijectors[0].shape}."
                )
        inner = bijectors[0].shape
        axis = axis % (len(inner) + 1)
        self.bijectors = bijectors
        self.axis = axis
        self.shape = inner[:axis] + (len(bijectors),) + inner[axis:]
        self.cond_shape = _common_cond_shape(bijectors, "bijectors")

    def _apply(self, x, condition, inverse):
        outs, total = [], jnp.zeros((), x.dtype)
        for i, b in enumerate(self.bijectors):
            fn = b.inverse_and_log_det if inverse else b.transform_and_log_det
            y, ld = fn(jnp.take(x, i, axis=self.axis), _cond(b, condition))
            outs.append(y)
            total = total + ld
        return jnp.stack(outs, axis=self.axis), total

    def _transform_and_log_det(self, x, condition):
        return self._apply(x, condition, False)

    def _inverse_and_log_det(self, y, condition):
        return self._apply(y, condition, True)


class Scan(AbstractBijector):
    """Identical layers stacked on a leading axis (built with ``eqx.filter_vmap``).

    ``unroll=True`` applies them in a Python loop over static slices (no loop in the compiled
    program; measured on CPU: a batched 5-layer MAF pass 1.75× faster, on one core or two); an
    int ``k`` uses ``jax.lax.scan(..., unroll=k)``, whose compile time does not grow with depth.
    ``None`` (default): the Python loop up to ``MAX_UNROLLED`` layers, scan beyond.
    """

    MAX_UNROLLED = 16

    stacked: AbstractBijector
    num_layers: int = eqx.field(static=True)
    unroll: int | bool = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(self, stacked: AbstractBijector, *, unroll: int | bool | None = None):
        if not isinstance(stacked, AbstractBijector):
            raise TypeError(f"argument 'stacked' must be an AbstractBijector, got {type(stacked)}.")
        leaves = jax.tree_util.tree_leaves(eqx.filter(stacked, eqx.is_array))
        if not leaves:
            raise ValueError("argument 'stacked' has no array leaves to scan over.")
        n = leaves[0].shape[0] if leaves[0].ndim else 0
        if n < 1 or any(leaf.ndim == 0 or leaf.shape[0] != n for leaf in leaves):
            raise ValueError(
                "argument 'stacked' must have every array leaf stacked on a common leading "
                "layer axis (build it with eqx.filter_vmap over keys)."
            )
        if not (
            unroll is None or isinstance(unroll, bool) or (isinstance(unroll, int) and unroll >= 1)
        ):
            raise ValueError(
                f"argument 'unroll' must be None, a bool or an int >= 1, got {unroll!r}."
            )
        self.stacked = stacked
        self.num_layers = int(n)
        self.unroll = (n <= self.MAX_UNROLLED) if unroll is None else unroll
        self.shape = stacked.shape
        self.cond_shape = stacked.cond_shape

    def _run(self, x, condition, inverse):
        params, static = eqx.partition(self.stacked, eqx.is_array)

        def step(carry, p):
            b = eqx.combine(p, static)
            fn = b.inverse_and_log_det if inverse else b.transform_and_log_det
            y, ld = fn(carry, condition)
            return y, ld

        if self.unroll is True:
            # A Python loop over static slices: no while loop in the compiled program (XLA's CPU
            # backend runs the batched MAF pass 1.75x faster this way, single-threaded too).
            order = range(self.num_layers - 1, -1, -1) if inverse else range(self.num_layers)
            total = jnp.zeros((), x.dtype)
            for i in order:
                x, ld = step(x, jax.tree_util.tree_map(lambda a, i=i: a[i], params))
                total = total + ld
            return x, total
        y, lds = jax.lax.scan(step, x, params, reverse=inverse, unroll=self.unroll)
        return y, jnp.sum(lds)

    def _transform_and_log_det(self, x, condition):
        return self._run(x, condition, False)

    def _inverse_and_log_det(self, y, condition):
        return self._run(y, condition, True)


__all__ = ["Permute", "Reverse", "Chain", "Invert", "Concatenate", "Stack", "Scan"]

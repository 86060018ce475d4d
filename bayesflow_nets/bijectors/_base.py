"""The bijector contract (DESIGN.md): single-sample maps with exact log-determinants."""

from __future__ import annotations

import math
import numbers
import operator
from abc import abstractmethod

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from .._custom_types import Shape


def _as_shape(value, name: str, *, min_size: int = 1) -> Shape:
    """``value`` as a tuple of ints, each >= ``min_size`` (1 for event shapes, 0 for sample
    shapes); ``TypeError`` / ``ValueError`` naming ``name`` otherwise."""
    try:
        entries = tuple(value)
    except TypeError:
        raise TypeError(f"argument {name!r} must be a tuple of ints, got {value!r}.") from None
    shape = []
    for s in entries:
        try:
            shape.append(operator.index(s))
            continue
        except TypeError:
            pass
        if not (isinstance(s, numbers.Real) and math.isfinite(s) and float(s).is_integer()):
            raise TypeError(f"argument {name!r} must be a tuple of ints, got {value!r}.")
        shape.append(int(s))
    if any(s < min_size for s in shape):
        raise ValueError(f"argument {name!r} must have entries >= {min_size}, got {tuple(shape)}.")
    return tuple(shape)


def check_shapes(bijector: AbstractBijector, x: ArrayLike, condition, arg: str):
    """Validate one unbatched sample (and its condition) against a bijector's shapes."""
    x = jnp.asarray(x)
    if x.shape != bijector.shape:
        raise ValueError(
            f"{type(bijector).__name__}: argument {arg!r} has shape {x.shape}, expected the "
            f"event shape {bijector.shape} (one unbatched sample; batch with eqx.filter_vmap)."
        )
    if bijector.cond_shape is None:
        if condition is not None:
            raise ValueError(
                f"{type(bijector).__name__}: got a 'condition' but this bijector is "
                "unconditional (cond_shape=None); pass condition=None."
            )
    else:
        if condition is None:
            raise ValueError(
                f"{type(bijector).__name__}: 'condition' of shape {bijector.cond_shape} is "
                "required (cond_shape is set)."
            )
        condition = jnp.asarray(condition)
        if condition.shape != bijector.cond_shape:
            raise ValueError(
                f"{type(bijector).__name__}: argument 'condition' has shape {condition.shape}, "
                f"expected {bijector.cond_shape}."
            )
    return x, condition


class AbstractBijector(eqx.Module):
    """A bijection on one unbatched sample of event shape ``shape``.

    Subclasses implement ``_transform_and_log_det`` and ``_inverse_and_log_det``; the public
    methods check shapes (at trace time, free under jit) and return ``(value, log|det J|)``.
    """

    shape: eqx.AbstractVar[Shape]
    cond_shape: eqx.AbstractVar[Shape | None]

    @abstractmethod
    def _transform_and_log_det(self, x: Array, condition: Array | None) -> tuple[Array, Array]: ...

    @abstractmethod
    def _inverse_and_log_det(self, y: Array, condition: Array | None) -> tuple[Array, Array]: ...

    def transform_and_log_det(self, x: ArrayLike, condition: ArrayLike | None = None):
        """Return ``(y, log|det dy/dx|)``."""
        x, condition = check_shapes(self, x, condition, "x")
        return self._transform_and_log_det(x, condition)

    def inverse_and_log_det(self, y: ArrayLike, condition: ArrayLike | None = None):
        """Return ``(x, log|det dx/dy|)``."""
        y, condition = check_shapes(self, y, condition, "y")
        return self._inverse_and_log_det(y, condition)

    def transform(self, x: ArrayLike, condition: ArrayLike | None = None) -> Array:
        """Forward map ``y = f(x)``."""
        return self.transform_and_log_det(x, condition)[0]

    def inverse(self, y: ArrayLike, condition: ArrayLike | None = None) -> Array:
        """Inverse map ``x = f⁻¹(y)``."""
        return self.inverse_and_log_det(y, condition)[0]


def check_finite(name: str, value) -> None:
    """Raise a ValueError naming ``name`` if a concrete parameter is non-finite (skipped for tracers)."""
    import jax

    if isinstance(value, jax.core.Tracer):
        return
    arr = jnp.asarray(value)
    if jnp.issubdtype(arr.dtype, jnp.inexact) and not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"argument {name!r} must be finite, got non-finite values.")


__all__ = ["AbstractBijector", "check_shapes", "check_finite", "_as_shape"]

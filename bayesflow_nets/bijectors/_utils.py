"""Small numerical helpers shared by the bijectors."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ._base import check_finite


def softplus_inverse(x: ArrayLike) -> Array:
    """Inverse of softplus, stable for large inputs."""
    x = jnp.asarray(x)
    return x + jnp.log(-jnp.expm1(-x))


def positive_param(name: str, value: ArrayLike) -> Array:
    """Validate a strictly positive, finite parameter and return its softplus pre-image."""
    check_finite(name, value)
    arr = jnp.asarray(value)
    if not isinstance(value, jax.core.Tracer) and bool(jnp.any(arr <= 0)):
        raise ValueError(
            f"argument {name!r} must be strictly positive, got min {float(arr.min())}."
        )
    return softplus_inverse(arr)


def as_float_array(name: str, value: ArrayLike) -> Array:
    """Convert to a floating array and check finiteness."""
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.inexact):
        arr = arr.astype(jnp.result_type(float))
    check_finite(name, arr)
    return arr


def sum_log_det(log_det: Array) -> Array:
    """Reduce an elementwise log-det to a scalar."""
    return jnp.sum(log_det)


def is_static_perm(perm) -> bool:
    return isinstance(perm, np.ndarray | jnp.ndarray)

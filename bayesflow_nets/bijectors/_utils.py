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


def broadcast_shape(**arrays) -> tuple[int, ...]:
    """The broadcast shape of the named arrays; ``ValueError`` naming them if there is none."""
    try:
        return jnp.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError as err:
        shown = " and ".join(f"'{k}' {a.shape}" for k, a in arrays.items())
        raise ValueError(f"arguments {shown} do not broadcast.") from err


def check_key(key, name: str = "key") -> None:
    """Raise ``TypeError`` naming ``name`` unless ``key`` is one PRNG key: a typed key array of
    shape () (``jax.random.key``) or raw ``uint32`` key data of shape (2,) or (4,)
    (``jax.random.PRNGKey``); tracers of those types pass."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        ok = shape == ()
    else:
        ok = dtype == np.uint32 and shape in ((2,), (4,))
    if not ok:
        got = f"{type(key).__name__} of dtype {dtype} and shape {shape}" if dtype else repr(key)
        raise TypeError(
            f"argument {name!r} must be one PRNG key (jax.random.key(seed)), got {got}."
        )


def check_int(name: str, value, low: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"argument {name!r} must be an int >= {low}, got {value!r}.")


def check_conditioner(nn_width, nn_depth, nn_activation, *, min_depth: int) -> None:
    """Validate the conditioner network options of a coupling or autoregressive layer."""
    check_int("nn_width", nn_width, 1)
    check_int("nn_depth", nn_depth, min_depth)
    if not callable(nn_activation):
        raise TypeError(f"argument 'nn_activation' must be callable, got {nn_activation!r}.")


def sum_log_det(log_det: Array) -> Array:
    """Reduce an elementwise log-det to a scalar."""
    return jnp.sum(log_det)


def is_static_perm(perm) -> bool:
    return isinstance(perm, np.ndarray | jnp.ndarray)

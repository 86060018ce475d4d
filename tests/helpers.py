"""Test helpers shared by every test module."""

import jax
import jax.numpy as jnp
import numpy as np


def default_tols(dtype) -> dict:
    """Round-trip tolerances by dtype: atol 1e-5 (float32) / 1e-10 (float64)."""
    if jnp.dtype(dtype) == jnp.float64:
        return {"rtol": 1e-10, "atol": 1e-10}
    return {"rtol": 1e-5, "atol": 1e-5}


def tree_allclose(a, b, *, rtol=None, atol=None) -> None:
    """Assert two pytrees have equal structure and allclose leaves (dtype-aware tolerances)."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb, f"tree structures differ: {ta} vs {tb}"
    for x, y in zip(la, lb):
        x = np.asarray(x)
        y = np.asarray(y)
        tol = default_tols(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
        np.testing.assert_allclose(
            x,
            y,
            rtol=tol["rtol"] if rtol is None else rtol,
            atol=tol["atol"] if atol is None else atol,
        )

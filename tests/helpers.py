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


def copy_checkpoint_at(monkeypatch, module, write: int, dest) -> list:
    """Spy on ``module.save_progress``: copy the checkpoint to ``dest`` after its ``write``-th
    write (0: never); returns the list of writes so far."""
    import shutil

    original, calls = module.save_progress, []

    def spy(path, *args):
        original(path, *args)
        calls.append(path)
        if len(calls) == write:
            shutil.copy(path, dest)

    monkeypatch.setattr(module, "save_progress", spy)
    return calls


def assert_same_arrays(a, b) -> None:
    """Assert the array leaves of two pytrees (e.g. Equinox modules) are equal bit for bit."""
    import equinox as eqx

    leaves = (jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array)) for m in (a, b))
    for x, y in zip(*leaves, strict=True):
        np.testing.assert_array_equal(x, y)

"""Checkpoints with Equinox serialisation, written atomically (temp file + rename). No pickle."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PyTree


def save(path: str | os.PathLike, module: PyTree) -> Path:
    """Serialise the array leaves of ``module`` (an Equinox module or any pytree) to ``path``
    atomically; returns the path."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"argument 'path' is a directory: {path}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            eqx.tree_serialise_leaves(f, module)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load(path: str | os.PathLike, like: PyTree) -> PyTree:
    """Load leaves saved by :func:`save` into a module with the structure of ``like``.

    Raises ``ValueError`` if the file does not match the template (shapes, dtypes or number of
    leaves); ``like`` is never modified.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"argument 'path': no checkpoint file at {path}.")
    with open(path, "rb") as f:
        try:
            out = eqx.tree_deserialise_leaves(f, like)
        except Exception as err:  # equinox/numpy raise several types on mismatch
            raise ValueError(
                f"checkpoint {path} does not match the template module 'like' "
                f"({type(like).__name__}): {err}"
            ) from err
        if f.read(1):
            raise ValueError(
                f"checkpoint {path} does not match the template module 'like' "
                f"({type(like).__name__}): the file holds more leaves than the template."
            )
    return out


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def plain_keys(tree: PyTree) -> PyTree:
    """``tree`` with typed PRNG keys as their raw data (NumPy cannot store key arrays)."""
    return jax.tree_util.tree_map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def typed_keys_like(tree: PyTree, template: PyTree) -> PyTree:
    """Undo :func:`plain_keys`: raw key data back to typed keys where ``template`` has them."""
    return jax.tree_util.tree_map(
        lambda x, t: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t)) if _is_key(t) else x,
        tree,
        template,
    )


def save_progress(path, scalars: dict[str, float | int | bool], tree: PyTree) -> Path:
    """Save a training loop's progress: named scalars and a pytree (typed keys allowed)."""
    values = np.asarray([float(v) for v in scalars.values()], dtype=np.float64)
    return save(path, (values, plain_keys(tree)))


def load_progress(
    path, names: tuple[str, ...], like: PyTree, expect: dict[str, float | int] | None = None
) -> tuple[dict, PyTree] | None:
    """The scalars (by ``names``) and pytree saved by :func:`save_progress`, or None when
    ``path`` does not exist. ``ValueError`` when a scalar named in ``expect`` (an option the
    run must share, e.g. the number of steps) differs, or the file does not match ``like``."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        raise IsADirectoryError(f"argument 'checkpoint' is a directory: {path}.")
    try:  # the scalars lead the file: read them alone to name a change of options
        with open(path, "rb") as f:
            head = np.asarray(eqx.tree_deserialise_leaves(f, np.zeros(len(names))))
    except Exception:  # not a progress checkpoint: the full load below names the mismatch
        head = None
    if head is not None and expect:
        saved = dict(zip(names, head.tolist(), strict=True))
        diff = {k: (saved[k], v) for k, v in expect.items() if saved[k] != v}
        if diff:
            raise ValueError(
                f"checkpoint {path} was written with other options (saved, now): {diff}; "
                "pass the same options or delete the file to start afresh."
            )
    values, tree = load(path, (np.zeros(len(names)), plain_keys(like)))
    return dict(zip(names, np.asarray(values).tolist(), strict=True)), typed_keys_like(tree, like)


__all__ = ["save", "load", "save_progress", "load_progress", "plain_keys", "typed_keys_like"]

"""Checkpoints with Equinox serialisation, written atomically (temp file + rename). No pickle."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import equinox as eqx
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


__all__ = ["save", "load"]

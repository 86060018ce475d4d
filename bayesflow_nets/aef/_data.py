"""Image data for the AEF models: loaders, dequantisation and bits/dim (MATH.md §2). No downloads."""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray


class ImageData(NamedTuple):
    """Integer-level images ``(n, C, H, W)`` (float32 values in {0, …, levels − 1}) split in two."""

    train: np.ndarray
    test: np.ndarray
    levels: int


def _check_levels(levels) -> int:
    if not (isinstance(levels, int | np.integer) and int(levels) >= 2):
        raise ValueError(f"argument 'levels' must be an int >= 2, got {levels!r}.")
    return int(levels)


def check_levels_data(name: str, x: ArrayLike, levels: int) -> None:
    """Raise a ValueError unless concrete ``x`` holds integers in {0, …, levels − 1}."""
    if isinstance(x, jax.core.Tracer):
        return
    arr = np.asarray(x)
    if arr.size == 0:
        raise ValueError(f"argument {name!r} is empty.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > levels - 1 or not np.all(arr == np.round(arr)):
        raise ValueError(
            f"argument {name!r} must hold integer levels in {{0, …, {levels - 1}}} "
            f"(levels={levels}); got values in [{lo:g}, {hi:g}]"
            + ("" if np.all(arr == np.round(arr)) else " with non-integers")
            + ". Pass raw quantised images (e.g. 0–16 for digits, 0–255 for MNIST)."
        )


def check_unit_interval(name: str, x: ArrayLike) -> None:
    """Raise a ValueError unless concrete ``x`` lies in [0, 1] (dequantised images)."""
    if isinstance(x, jax.core.Tracer):
        return
    arr = np.asarray(x)
    if arr.size and (float(arr.min()) < 0.0 or float(arr.max()) > 1.0):
        raise ValueError(
            f"argument {name!r} must lie in the declared data range [0, 1], got values in "
            f"[{float(arr.min()):g}, {float(arr.max()):g}]; dequantise integer images first "
            "with aef.dequantise(key, x, levels)."
        )


def _split(x: np.ndarray, test_prop: float, seed: int, levels: int) -> ImageData:
    if not 0.0 < test_prop < 1.0:
        raise ValueError(f"argument 'test_prop' must be in (0, 1), got {test_prop!r}.")
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(test_prop * len(x))))
    return ImageData(x[perm[n_test:]], x[perm[:n_test]], levels)


def load_digits(test_prop: float = 0.2, seed: int = 0) -> ImageData:
    """scikit-learn's bundled 8×8 digits (17 grey levels), shape ``(n, 1, 8, 8)``, split train/test."""
    from sklearn.datasets import load_digits as _sk_digits

    x = _sk_digits().images.astype(np.float32)[:, None]  # values 0..16
    return _split(x, test_prop, seed, 17)


def load_npz_images(
    path: str | os.PathLike,
    key: str | None = None,
    *,
    levels: int = 256,
    channels_last: bool = False,
    test_prop: float = 0.2,
    seed: int = 0,
) -> ImageData:
    """Images from a local ``.npz`` (e.g. MNIST ``x_train``); never downloads.

    The array (``key``, default the first) may be ``(n, H, W)``, ``(n, C, H, W)`` or, with
    ``channels_last=True``, ``(n, H, W, C)``; values must be integer levels in {0, …, levels − 1}.
    """
    levels = _check_levels(levels)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"argument 'path': no .npz file at {path}.")
    with np.load(path) as f:
        names = list(f.keys())
        if key is None:
            key = names[0]
        if key not in names:
            raise ValueError(f"argument 'key' {key!r} is not in {path}; it holds {names}.")
        x = np.asarray(f[key])
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and channels_last:
        x = np.moveaxis(x, -1, 1)
    elif x.ndim != 4:
        raise ValueError(
            f"array {key!r} in {path} must be (n, H, W), (n, C, H, W) or (n, H, W, C), "
            f"got shape {x.shape}."
        )
    check_levels_data(key, x, levels)
    return _split(x.astype(np.float32), test_prop, seed, levels)


def dequantise(key: PRNGKeyArray, x: ArrayLike, levels: int) -> Array:
    """Uniform dequantisation x = (x_int + u) / L, u ~ U[0, 1)^D: integer levels → [0, 1]."""
    levels = _check_levels(levels)
    check_levels_data("x", x, levels)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    u = jax.random.uniform(key, x.shape, x.dtype)
    return (x + u) / levels


def bits_per_dim(log_prob: ArrayLike, num_dims: int, levels: int) -> Array:
    """bits/dim = (−log p_[0,1](x) + D log L) / (D log 2) for densities of dequantised x ∈ [0, 1]^D.

    ``log_prob`` is the log density of the data scaled to [0, 1] (all preprocessing log-dets
    included); adding D log L converts it to the density of x_int + u on the integer scale.
    """
    levels = _check_levels(levels)
    if not (isinstance(num_dims, int | np.integer) and num_dims >= 1):
        raise ValueError(f"argument 'num_dims' must be an int >= 1, got {num_dims!r}.")
    lp = jnp.asarray(log_prob)
    return (-lp + num_dims * np.log(levels)) / (num_dims * np.log(2.0))


__all__ = [
    "ImageData",
    "load_digits",
    "load_npz_images",
    "dequantise",
    "bits_per_dim",
    "check_unit_interval",
    "check_levels_data",
]

"""Core/shell masks of the partition AEF (MATH.md §2): "center" spiral, "corner", or a user mask."""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike

from .._custom_types import Shape

MASK_KINDS = ("center", "corner")


def _pixel_order(h: int, w: int, kind: str) -> list[tuple[int, int]]:
    pixels = [(i, j) for i in range(h) for j in range(w)]
    if kind == "center":
        ci, cj = (h - 1) / 2.0, (w - 1) / 2.0

        def key(p):  # square rings outward from the centre, each walked by angle: a spiral
            di, dj = p[0] - ci, p[1] - cj
            return (max(abs(di), abs(dj)), float(np.arctan2(di, dj)) % (2 * np.pi), p)

    else:  # "corner": growing squares from the top-left pixel

        def key(p):
            return (max(p), p[0], p[1])

    return sorted(pixels, key=key)


def core_indices(shape: Shape, latent_dim: int, mask: str | ArrayLike = "center") -> tuple[int, ...]:
    """Flat (C·H·W, row-major) indices of the d core entries, in the order x_c is read.

    ``mask`` is "center" (spiral from the image centre), "corner" (squares from the top-left
    corner; both take all channels of a pixel together) or a boolean array of ``shape`` with
    exactly ``latent_dim`` True entries.
    """
    shape = tuple(int(s) for s in shape)
    size = int(np.prod(shape)) if shape else 1
    if not (isinstance(latent_dim, int) and 1 <= latent_dim < size):
        raise ValueError(
            f"argument 'latent_dim' must be an int in [1, {size - 1}] for images of shape "
            f"{shape}, got {latent_dim!r}."
        )
    if isinstance(mask, str):
        if mask not in MASK_KINDS:
            raise ValueError(f"argument 'mask' must be one of {MASK_KINDS} or a boolean array, "
                             f"got {mask!r}.")
        if len(shape) != 3:
            raise ValueError(
                f"argument 'mask'={mask!r} needs image shape (C, H, W), got {shape}; pass a "
                "boolean mask array for other shapes."
            )
        c, h, w = shape
        order = [ch * h * w + i * w + j for (i, j) in _pixel_order(h, w, mask) for ch in range(c)]
        return tuple(int(k) for k in order[:latent_dim])
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise TypeError(f"argument 'mask' must be a string or a boolean array, got {arr.dtype}.")
    if arr.shape != shape:
        raise ValueError(f"argument 'mask' has shape {arr.shape}, expected the image shape {shape}.")
    n_core = int(arr.sum())
    if n_core != latent_dim:
        raise ValueError(
            f"argument 'mask' has {n_core} core (True) entries but latent_dim={latent_dim}; "
            "the core size must equal the latent size."
        )
    return tuple(int(k) for k in np.flatnonzero(arr.ravel()))


def core_mask(shape: Shape, latent_dim: int, mask: str | ArrayLike = "center") -> np.ndarray:
    """Boolean array of ``shape``: True on the core entries (see :func:`core_indices`)."""
    shape = tuple(int(s) for s in shape)
    out = np.zeros(int(np.prod(shape)), bool)
    out[list(core_indices(shape, latent_dim, mask))] = True
    return out.reshape(shape)


__all__ = ["core_indices", "core_mask", "MASK_KINDS"]

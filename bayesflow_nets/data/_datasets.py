"""Small built-in data sets for demos and tests; nothing is downloaded."""

from __future__ import annotations

import numpy as np


def two_moons(n: int, seed: int = 0, noise: float = 0.1) -> np.ndarray:
    """``n`` points from the classic two-moons density (standardised), float32, shape (n, 2)."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"argument 'n' must be a positive int, got {n!r}.")
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], -1) + noise * rng.standard_normal((n, 2))
    pts = (pts - np.array([0.5, 0.25])) / np.array([0.87, 0.5])
    return pts.astype(np.float32)

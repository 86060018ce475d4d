"""Importance-sampling diagnostics shared by the fitters."""

from __future__ import annotations

import arviz as az
import numpy as np


def psis_khat(log_weights) -> float:
    """PSIS k̂ (ArviZ ``psislw``) of the finite log importance weights ``log p − log q``; NaN
    with at most 10 finite weights, ∞ where a weight is NaN or +∞ (undefined or infinite)."""
    try:
        log_w = np.asarray(log_weights, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise TypeError(
            f"argument 'log_weights' must be an array of real numbers, got {log_weights!r}."
        ) from None
    if np.any(np.isnan(log_w) | (log_w == np.inf)):
        return float("inf")
    finite = np.isfinite(log_w)
    if finite.sum() <= 10:
        return float("nan")
    return float(az.psislw(log_w[finite].copy())[1])

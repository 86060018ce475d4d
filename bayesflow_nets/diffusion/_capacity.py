"""Capacity experiment: score-based recall vs modern Hopfield recall (MATH.md §5).

Random ±1 patterns (equal norm √d); probes are stored patterns with a fraction of bits flipped.
Hopfield recall iterates :func:`hopfield_update`; score recall treats a probe as a VE state at
``t_start`` and runs DDIM (η = 0) to ``t = 0`` with a score trained on the N patterns (supplied by
``train_fn``: this primitive layer does not train). A probe is recalled when the sign of the
output equals the target pattern in every coordinate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._empirical import hopfield_update
from ._samplers import ddim_sample, time_grid
from ._schedules import VESchedule

__all__ = [
    "random_patterns",
    "corrupt",
    "hopfield_recall",
    "score_recall",
    "CapacityCurve",
    "capacity_curve",
]


def random_patterns(key: PRNGKeyArray, num: int, dim: int) -> Float[Array, "num dim"]:
    """``num`` random ±1 patterns in ``R^dim``."""
    return jnp.where(jax.random.bernoulli(key, 0.5, (num, dim)), 1.0, -1.0)


def corrupt(
    key: PRNGKeyArray, patterns: Float[ArrayLike, "n d"], flip_fraction: float
) -> Float[Array, "n d"]:
    """Flip exactly ``round(flip_fraction·d)`` random coordinates of each row."""
    patterns = jnp.asarray(patterns)
    if not 0.0 <= flip_fraction < 0.5:
        raise ValueError(f"corrupt: flip_fraction must be in [0, 0.5), got {flip_fraction}.")
    n, d = patterns.shape
    n_flip = int(round(flip_fraction * d))
    ranks = jnp.argsort(jnp.argsort(jax.random.uniform(key, (n, d)), axis=1), axis=1)
    return jnp.where(ranks < n_flip, -patterns, patterns)


def hopfield_recall(
    patterns: Float[ArrayLike, "N d"],
    probes: Float[ArrayLike, "n d"],
    beta: float,
    *,
    num_iter: int = 1,
) -> Float[Array, "n d"]:
    """Iterate the modern Hopfield update ``num_iter`` times from every probe."""
    patterns = jnp.asarray(patterns)

    def one(x):
        for _ in range(num_iter):
            x = hopfield_update(patterns, x, beta)
        return x

    return jax.vmap(one)(jnp.asarray(probes))


def score_recall(
    score_fn: Callable[[Array, Array], Array],
    probes: Float[ArrayLike, "n d"],
    t_start: float,
    *,
    num_steps: int = 10,
    schedule: VESchedule | None = None,
) -> Float[Array, "n d"]:
    """DDIM (η = 0, VE) from each probe taken as a state at ``t_start`` down to ``t = 0``."""
    schedule = VESchedule() if schedule is None else schedule
    times = time_grid(t_start, num_steps, spacing="sqrt")
    return jax.vmap(lambda x: ddim_sample(score_fn, schedule, x, times))(jnp.asarray(probes))


class CapacityCurve(NamedTuple):
    num_patterns: np.ndarray
    hopfield_accuracy: np.ndarray
    score_accuracy: np.ndarray


def _recalled(out, target):
    return np.asarray(jnp.all(jnp.sign(out) == target, axis=1))


def capacity_curve(
    key: PRNGKeyArray,
    train_fn: Callable[[PRNGKeyArray, Array], Callable[[Array, Array], Array]],
    *,
    dim: int,
    pattern_counts: Sequence[int],
    flip_fraction: float = 0.1,
    num_probes: int = 100,
    t_start: float | None = None,
    num_steps: int = 10,
    hopfield_iters: int = 1,
) -> CapacityCurve:
    """Recall accuracy vs number of stored patterns: Hopfield (β = 1/t_start) vs a trained score.

    ``train_fn(key, patterns) -> score_fn`` trains (e.g. by DSM) or builds a VE score on the
    ``N`` patterns. ``t_start`` defaults to the mean squared corruption per coordinate ``4f``.
    """
    t_start = 4.0 * flip_fraction if t_start is None else float(t_start)
    if t_start <= 0:
        raise ValueError(f"capacity_curve: t_start must be > 0, got {t_start}.")
    hop, sco = [], []
    for i, n in enumerate(pattern_counts):
        kp, kt, kc, kf = jax.random.split(jax.random.fold_in(key, i), 4)
        patterns = random_patterns(kp, int(n), dim)
        targets = patterns[jax.random.randint(kt, (num_probes,), 0, int(n))]
        probes = corrupt(kc, targets, flip_fraction)
        out_h = hopfield_recall(patterns, probes, 1.0 / t_start, num_iter=hopfield_iters)
        score_fn = train_fn(kf, patterns)
        out_s = score_recall(score_fn, probes, t_start, num_steps=num_steps)
        hop.append(_recalled(out_h, targets).mean())
        sco.append(_recalled(out_s, targets).mean())
    return CapacityCurve(np.asarray(pattern_counts), np.asarray(hop), np.asarray(sco))

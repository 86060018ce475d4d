"""Checkpoints of ``fit_vi``'s training loop: written atomically after every ``checkpoint_every``
chunks (:func:`bayesflow_nets.train.save_progress`, Equinox serialisation), read back to continue
an interrupted fit to the same parameters as an uninterrupted one."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ..train import load_progress, save_progress

STATUSES = ("running", "converged", "unstable", "max_steps", "nonfinite")
STARTS = ("default", "laplace")
ROLLBACK_KINDS = ("nonfinite", "spike")
MAX_STORED_ROLLBACKS = 16  # more than fit_vi ever makes (MAX_ROLLBACKS + 1)
OPTIONS = (
    "num_steps",
    "chunk",
    "num_particles",
    "learning_rate",
    "gate_learning_rate",
    "min_steps",
    "tol",
    "estimator",
    "refine_steps",
    "refine_alpha",
)
PROGRESS = (
    *OPTIONS,
    "steps",
    "prev",
    "clean",
    "annealing",
    "status",
    "start",
    "score_default",
    "score_laplace",
    "num_rollbacks",
    "num_losses",
)


def _buffers(state, num_steps: int, chunk: int) -> tuple:
    """The pytree saved beside the scalars: rollbacks, losses (fixed sizes) and the SVI state."""
    capacity = math.ceil(num_steps / chunk) * chunk
    return (np.zeros((MAX_STORED_ROLLBACKS, 2)), np.zeros(capacity), state)


def save_loop(path, loop, start: str, scores: dict, options: dict, num_steps, chunk):
    """Write ``loop`` (a ``_fit.Loop``), the start kept and the pilot scores to ``path``;
    ``options`` maps :data:`OPTIONS` to the values of this fit."""
    rollbacks, losses, _ = _buffers(loop.state, num_steps, chunk)
    flat = np.concatenate(loop.losses) if loop.losses else np.zeros(0)
    losses[: flat.size] = flat
    for i, (kind, step) in enumerate(loop.rollbacks):
        rollbacks[i] = (ROLLBACK_KINDS.index(kind), step)
    scalars = {
        **options,
        "steps": loop.steps,
        "prev": np.nan if loop.prev is None else loop.prev,
        "clean": loop.clean,
        "annealing": loop.annealing,
        "status": STATUSES.index(loop.status),
        "start": STARTS.index(start),
        "score_default": scores.get("default", np.nan),
        "score_laplace": scores.get("laplace", np.nan),
        "num_rollbacks": len(loop.rollbacks),
        "num_losses": flat.size,
    }
    save_progress(path, scalars, (rollbacks, losses, loop.state))


def load_loop(path, template_state, options: dict, num_steps, chunk, loop_type):
    """The loop saved at ``path`` as ``loop_type`` (``_fit.Loop``) with the start kept and the
    pilot scores, or None when there is no file. Raises ``ValueError`` when the checkpoint
    belongs to another model or guide (structure) or to other options."""
    like = _buffers(template_state, num_steps, chunk)
    got = load_progress(path, PROGRESS, like, expect=options)
    if got is None:
        return None
    s, (rollbacks, stored_losses, state) = got
    dtype = jnp.zeros(()).dtype  # the losses' dtype (float64 under jax_enable_x64)
    flat = np.asarray(stored_losses[: int(s["num_losses"])], dtype=dtype)
    loop = loop_type(
        state=state,
        losses=tuple(flat[i : i + chunk] for i in range(0, flat.size, chunk)),
        rollbacks=tuple(
            (ROLLBACK_KINDS[int(k)], int(step)) for k, step in rollbacks[: int(s["num_rollbacks"])]
        ),
        steps=int(s["steps"]),
        prev=None if np.isnan(s["prev"]) else float(s["prev"]),
        clean=int(s["clean"]),
        annealing=bool(s["annealing"]),
        status=STATUSES[int(s["status"])],
    )
    scores = {k: float(s[f"score_{k}"]) for k in STARTS if not np.isnan(s[f"score_{k}"])}
    return loop, STARTS[int(s["start"])], scores

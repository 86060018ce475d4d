"""Checkpoints of ``fit_vi``'s training loop: written atomically after every ``checkpoint_every``
chunks (Equinox serialisation, :func:`bayesflow_nets.train.save`), read back to continue an
interrupted fit to the same parameters as an uninterrupted one."""

from __future__ import annotations

import math
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..train import load, save

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
)


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _plain(state):
    """``state`` with typed PRNG keys as their raw data (NumPy cannot store key arrays)."""
    return jax.tree_util.tree_map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)


def _typed_like(state, template):
    return jax.tree_util.tree_map(
        lambda x, t: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t)) if _is_key(t) else x,
        state,
        template,
    )


def _capacity(num_steps: int, chunk: int) -> int:
    return math.ceil(num_steps / chunk) * chunk


def _payload(state, losses, rollbacks, scalars, options) -> tuple:
    # options first: :func:`_stored_options` reads them alone
    return (options, scalars, rollbacks, losses, _plain(state))


def _stored_options(path, like: np.ndarray) -> np.ndarray | None:
    """The options leaf at the head of the checkpoint, or None if it is not one."""
    try:
        with open(path, "rb") as f:
            return np.asarray(eqx.tree_deserialise_leaves(f, like))
    except Exception:  # not a fit_vi checkpoint: the full load names the mismatch
        return None


def option_values(**options) -> np.ndarray:
    """The options a checkpoint must have been written with, in :data:`OPTIONS` order."""
    return np.asarray([float(options[k]) for k in OPTIONS], dtype=np.float64)


def save_loop(path, loop, start: str, scores: dict, options: np.ndarray, num_steps, chunk):
    """Write ``loop`` (a ``_fit.Loop``), the start kept and the pilot scores to ``path``."""
    losses = np.zeros(_capacity(num_steps, chunk), dtype=np.float64)
    flat = np.concatenate(loop.losses) if loop.losses else np.zeros(0)
    losses[: flat.size] = flat
    rollbacks = np.zeros((MAX_STORED_ROLLBACKS, 2), dtype=np.float64)
    for i, (kind, step) in enumerate(loop.rollbacks):
        rollbacks[i] = (ROLLBACK_KINDS.index(kind), step)
    scalars = np.asarray(
        [
            loop.steps,
            np.nan if loop.prev is None else loop.prev,
            loop.clean,
            loop.annealing,
            STATUSES.index(loop.status),
            STARTS.index(start),
            scores.get("default", np.nan),
            scores.get("laplace", np.nan),
            len(loop.rollbacks),
            flat.size,
        ],
        dtype=np.float64,
    )
    save(path, _payload(loop.state, losses, rollbacks, scalars, options))


def load_loop(path, template_state, options: np.ndarray, num_steps, chunk, loop_type):
    """The loop saved at ``path`` as ``loop_type`` (``_fit.Loop``) with the start kept and the
    pilot scores, or None when there is no file. Raises ``ValueError`` when the checkpoint
    belongs to another model or guide (structure) or to other options."""
    if not os.path.exists(path):
        return None
    if os.path.isdir(path):
        raise ValueError(f"argument 'checkpoint' must be a file path, got the directory {path}.")
    stored_options = _stored_options(path, np.zeros_like(options))
    if stored_options is not None and not np.array_equal(stored_options, options):
        got = dict(zip(OPTIONS, stored_options.tolist(), strict=True))
        want = dict(zip(OPTIONS, options.tolist(), strict=True))
        diff = {k: (got[k], want[k]) for k in OPTIONS if got[k] != want[k]}
        raise ValueError(
            f"checkpoint {path} was written by fit_vi with other options (saved, now): {diff}; "
            "pass the same options or delete the file to start afresh."
        )
    like = _payload(
        template_state,
        np.zeros(_capacity(num_steps, chunk)),
        np.zeros((MAX_STORED_ROLLBACKS, 2)),
        np.zeros(10),
        np.zeros_like(options),
    )
    _, s, stored_rollbacks, stored_losses, stored_state = load(path, like)
    dtype = jnp.zeros(()).dtype  # the losses' dtype (float64 under jax_enable_x64)
    flat = np.asarray(stored_losses[: int(s[9])], dtype=dtype)
    losses = tuple(flat[i : i + chunk] for i in range(0, flat.size, chunk))
    rollbacks = tuple(
        (ROLLBACK_KINDS[int(k)], int(step)) for k, step in stored_rollbacks[: int(s[8])]
    )
    state = _typed_like(stored_state, template_state)
    loop = loop_type(
        state=state,
        losses=losses,
        rollbacks=rollbacks,
        steps=int(s[0]),
        prev=None if np.isnan(s[1]) else float(s[1]),
        clean=int(s[2]),
        annealing=bool(s[3]),
        status=STATUSES[int(s[4])],
    )
    scores = {k: float(v) for k, v in zip(STARTS, s[6:8], strict=True) if not np.isnan(v)}
    return loop, STARTS[int(s[5])], scores

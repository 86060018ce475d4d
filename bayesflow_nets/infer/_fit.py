"""Training loops: maximum likelihood on data and generic (VI-style) losses.

Pure ``init``/``step`` functions over a NamedTuple state; steps are chunked inside ``lax.scan``;
a non-finite loss stops training, keeps the last finite parameters and reports the step.
``fit_to_data`` runs data-parallel over a device mesh (``mesh=``) and checkpoints the best
module (``checkpoint_path=``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike, PRNGKeyArray
from tqdm.auto import tqdm

from ..bijectors import AbstractDistribution
from ..train import load_progress, save, save_progress
from ._sharding import as_mesh, batch_sharding, replicated


class TrainState(NamedTuple):
    """Trainable params, optimiser state, step counter and non-finite bookkeeping."""

    params: Any
    prev_params: Any  # parameters before the last update (their loss was finite)
    opt_state: Any
    step: Array
    last_loss: Array
    nonfinite_step: Array  # −1 while every loss has been finite


class FitResult(NamedTuple):
    """Result of a fit: the trained module, loss history and how training ended.

    ``status`` is one of "converged" (early stopping), "max_steps", "nonfinite"; for "nonfinite"
    ``stopped_at`` is the step whose loss was not finite and ``model`` holds the last finite
    parameters.
    """

    model: Any
    losses: dict[str, np.ndarray]
    status: str
    stopped_at: int | None
    message: str


def init_state(params, optimizer: optax.GradientTransformation) -> TrainState:
    """Initial training state for the trainable part ``params`` of a module."""
    return TrainState(
        params=params,
        prev_params=params,
        opt_state=optimizer.init(params),
        step=jnp.zeros((), jnp.int32),
        last_loss=jnp.asarray(jnp.inf, jnp.float32),
        nonfinite_step=jnp.asarray(-1, jnp.int32),
    )


def make_step(
    loss_fn: Callable[..., Array], static, optimizer: optax.GradientTransformation
) -> Callable:
    """Return ``step(state, *batch) -> (state, loss)``; updates are skipped once a loss is non-finite."""

    def step(state: TrainState, *batch):
        def loss_of(params):
            return loss_fn(eqx.combine(params, static), *batch)

        loss, grads = eqx.filter_value_and_grad(loss_of)(state.params)
        grads_finite = jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)])
        )
        ok = jnp.isfinite(loss) & grads_finite & (state.nonfinite_step < 0)
        updates, new_opt = optimizer.update(grads, state.opt_state, state.params)
        new_params = eqx.apply_updates(state.params, updates)
        # On the first bad step, roll back to the parameters whose loss was last finite.
        bad = (state.nonfinite_step < 0) & ~ok
        params = jax.tree_util.tree_map(
            lambda new, cur, prev: jnp.where(ok, new, jnp.where(bad, prev, cur)),
            new_params,
            state.params,
            state.prev_params,
        )
        prev_params = jax.tree_util.tree_map(
            lambda cur, prev: jnp.where(ok, cur, prev), state.params, state.prev_params
        )
        opt_state = jax.tree_util.tree_map(
            lambda n, o: jnp.where(ok, n, o) if eqx.is_array(n) else n, new_opt, state.opt_state
        )
        nonfinite_step = jnp.where(bad, state.step, state.nonfinite_step)
        new_state = TrainState(
            params,
            prev_params,
            opt_state,
            state.step + 1,
            jnp.where(ok, loss, state.last_loss).astype(jnp.float32),
            nonfinite_step,
        )
        return new_state, loss

    return step


def _optimizer(optimizer, learning_rate):
    if optimizer is not None:
        if not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(
                f"argument 'optimizer' must be an optax.GradientTransformation, got {type(optimizer)}."
            )
        return optimizer
    if not (
        isinstance(learning_rate, int | float)
        and math.isfinite(learning_rate)
        and learning_rate > 0
    ):
        raise ValueError(
            f"argument 'learning_rate' must be a finite positive float, got {learning_rate!r}."
        )
    return optax.adam(learning_rate)


def fit_to_loss(
    key: PRNGKeyArray,
    module: eqx.Module,
    loss_fn: Callable[[Any, PRNGKeyArray], Array],
    steps: int,
    *,
    learning_rate: float = 1e-3,
    optimizer: optax.GradientTransformation | None = None,
    chunk_size: int = 100,
    filter_spec: Any = eqx.is_inexact_array,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    checkpoint_options: dict[str, int | float] | None = None,
) -> FitResult:
    """Minimise ``loss_fn(module, key)`` for ``steps`` steps (e.g. a negative ELBO).

    Steps run in jitted chunks of ``chunk_size`` inside ``lax.scan``. ``checkpoint``: a file
    path; the loop (training state, key, step, losses, status) is written there atomically
    after every ``checkpoint_every`` chunks and at the end, and a call that finds the file
    continues from it to the same result as an uninterrupted run (same ``module``,
    ``loss_fn``, ``steps`` and ``chunk_size``; others raise ``ValueError``).
    ``checkpoint_options``: further numbers the run depends on (e.g. a batch size inside
    ``loss_fn``), stored in the file and checked on resume like ``steps``.
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"argument 'steps' must be an int >= 1, got {steps!r}.")
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"argument 'chunk_size' must be an int >= 1, got {chunk_size!r}.")
    if not (isinstance(checkpoint_every, int) and checkpoint_every >= 1):
        raise ValueError(
            f"argument 'checkpoint_every' must be an int >= 1, got {checkpoint_every!r}."
        )
    if not callable(loss_fn):
        raise TypeError(
            f"argument 'loss_fn' must be callable (module, key) -> loss, got {loss_fn!r}."
        )
    options = _checkpoint_options(checkpoint_options)
    optimizer = _optimizer(optimizer, learning_rate)
    params, static = eqx.partition(module, filter_spec)
    state = init_state(params, optimizer)
    step = make_step(loss_fn, static, optimizer)

    @eqx.filter_jit
    def run_chunk(state, keys):
        return jax.lax.scan(step, state, keys)

    losses: list[np.ndarray] = []
    done = 0
    status, stopped_at = "running", None
    progress_names = ("done", "status", "stopped_at", "steps", "chunk_size", *options)
    if checkpoint is not None:
        expect = {"steps": steps, "chunk_size": chunk_size, **options}
        got = load_progress(checkpoint, progress_names, (state, key, np.zeros(steps)), expect)
        if got is not None:
            scalars, (state, key, history) = got
            done, status = int(scalars["done"]), _STATUSES[int(scalars["status"])]
            stopped_at = None if scalars["stopped_at"] < 0 else int(scalars["stopped_at"])
            kept = done if stopped_at is None else stopped_at
            losses.append(np.asarray(history[:kept], dtype=jnp.zeros(()).dtype))
    last_finite = state.params

    chunks_run = [0]

    def write(final: bool):
        chunks_run[0] += 0 if final else 1
        if checkpoint is None or not (final or chunks_run[0] % checkpoint_every == 0):
            return
        history = np.zeros(steps)
        flat = np.concatenate(losses) if losses else np.zeros(0)
        history[: flat.size] = flat
        scalars = {
            "done": done,
            "status": _STATUSES.index(status),
            "stopped_at": -1 if stopped_at is None else stopped_at,
            "steps": steps,
            "chunk_size": chunk_size,
            **options,
        }
        save_progress(checkpoint, scalars, (state, key, history))

    bar = tqdm(total=steps, initial=done, disable=not progress, desc="fit_to_loss")
    while status == "running" and done < steps:
        n = min(chunk_size, steps - done)
        key, sub = jax.random.split(key)
        state, chunk_losses = run_chunk(state, jax.random.split(sub, n))
        chunk_losses = np.asarray(chunk_losses)
        bad = int(state.nonfinite_step)
        if bad >= 0:
            losses.append(chunk_losses[: bad - done])
            status, stopped_at = "nonfinite", bad
            bar.update(bad - done)
            break
        losses.append(chunk_losses)
        last_finite = state.params
        done += n
        bar.update(n)
        bar.set_postfix(loss=f"{chunk_losses[-1]:.4g}")
        write(final=False)
    bar.close()
    if status == "running":
        status = "max_steps"
    write(final=True)
    if status == "nonfinite":
        last_finite = state.params  # updates were skipped from the bad step on
        message = (
            f"non-finite loss or gradient at step {stopped_at}; stopped and kept the last finite "
            "parameters."
        )
    else:
        message = f"ran {steps} steps."
    history = np.concatenate(losses) if losses else np.zeros((0,))
    return FitResult(
        eqx.combine(last_finite, static), {"train": history}, status, stopped_at, message
    )


_STATUSES = ("running", "converged", "max_steps", "nonfinite")


def _checkpoint_options(options) -> dict[str, int | float]:
    if options is None:
        return {}
    reserved = {"done", "status", "stopped_at", "steps", "chunk_size"}
    if not isinstance(options, dict) or not all(
        isinstance(k, str) and k not in reserved for k in options
    ):
        raise ValueError(
            "argument 'checkpoint_options' must be a dict of names (other than "
            f"{sorted(reserved)}) to numbers, got {options!r}."
        )
    for k, v in options.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(
                f"argument 'checkpoint_options' must map names to finite numbers; {k!r} is {v!r}."
            )
    return dict(options)


def _as_data(name: str, value, n: int | None, event_shape) -> Array:
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.inexact):
        arr = arr.astype(jnp.result_type(float))
    if arr.ndim < 1 or (event_shape is not None and tuple(arr.shape[1:]) != tuple(event_shape)):
        raise ValueError(
            f"argument {name!r} must have shape (n,) + {tuple(event_shape)}, got {arr.shape}."
        )
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"argument {name!r} has {arr.shape[0]} rows but 'data' has {n}.")
    if not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"argument {name!r} contains non-finite values.")
    return arr


def _local_copy(tree):
    """Replicated arrays as this process's copy (multi-host arrays are not fully addressable)."""

    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x.addressable_data(0)
        return x

    return jax.tree_util.tree_map(local, tree)


def _nll(dist, x, condition=None):
    return -jnp.mean(dist.log_prob(x, condition))


def fit_to_data(
    key: PRNGKeyArray,
    dist: AbstractDistribution,
    data: ArrayLike,
    *,
    condition: ArrayLike | None = None,
    loss_fn: Callable | None = None,
    learning_rate: float = 5e-4,
    optimizer: optax.GradientTransformation | None = None,
    max_epochs: int = 100,
    max_patience: int = 5,
    batch_size: int = 100,
    val_prop: float = 0.1,
    filter_spec: Any = eqx.is_inexact_array,
    return_best: bool = True,
    progress: bool = True,
    mesh: Mesh | int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
) -> FitResult:
    """Maximum likelihood with minibatches, a validation split and early stopping.

    ``loss_fn(dist, x_batch[, condition_batch])`` defaults to the mean negative log-likelihood.
    Returns the parameters with the best validation loss (``return_best``) and the history.

    ``mesh`` (a ``jax.sharding.Mesh``, or an int n for a 1-D mesh over the first n devices)
    trains data-parallel: each minibatch is split over all mesh axes, parameters and optimiser
    state are replicated, XLA all-reduces the gradients; ``batch_size`` must be divisible by
    the number of devices. Same keys and minibatch order as ``mesh=None``, so the loss history
    agrees to float round-off. ``checkpoint_path``: the best-so-far module is saved there
    (``infer.save``, atomic) whenever the validation loss improves; resume with
    ``infer.load(checkpoint_path, like=dist)`` and pass the result as ``dist`` (optimiser
    state restarts). ``checkpoint``: a file path for resuming; the whole loop (training and
    optimiser state, key, epoch, best parameters, patience, histories, status) is written
    there atomically after every ``checkpoint_every`` epochs and at the end, and a call that
    finds the file continues from it to the same result as an uninterrupted run (same
    ``dist``, data, ``key`` and ``max_epochs``; another ``max_epochs`` or ``batch_size``
    raises ``ValueError``).
    """
    if not isinstance(dist, eqx.Module):
        raise TypeError(f"argument 'dist' must be an Equinox module, got {type(dist)}.")
    event_shape = getattr(dist, "shape", None)
    x = _as_data("data", data, None, event_shape)
    n = x.shape[0]
    cond_shape = getattr(dist, "cond_shape", None)
    if condition is not None:
        c = _as_data("condition", condition, n, cond_shape)
    elif cond_shape is not None:
        raise ValueError(
            f"argument 'condition' is required: the distribution has cond_shape {cond_shape}."
        )
    else:
        c = None
    if not 0.0 < val_prop < 1.0:
        raise ValueError(f"argument 'val_prop' must be in (0, 1), got {val_prop!r}.")
    n_val = max(1, int(round(val_prop * n)))
    n_train = n - n_val
    if n_train < 1:
        raise ValueError(f"argument 'data' has too few rows ({n}) for val_prop={val_prop}.")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"argument 'batch_size' must be an int >= 1, got {batch_size!r}.")
    if not (isinstance(max_epochs, int) and max_epochs >= 1):
        raise ValueError(f"argument 'max_epochs' must be an int >= 1, got {max_epochs!r}.")
    if not (isinstance(checkpoint_every, int) and checkpoint_every >= 1):
        raise ValueError(
            f"argument 'checkpoint_every' must be an int >= 1, got {checkpoint_every!r}."
        )
    if isinstance(max_patience, bool) or not isinstance(max_patience, int) or max_patience < 0:
        raise ValueError(f"argument 'max_patience' must be an int >= 0, got {max_patience!r}.")
    if checkpoint_path is not None and os.path.isdir(checkpoint_path):
        raise ValueError(
            f"argument 'checkpoint_path' must be a file path, got the directory {checkpoint_path}."
        )
    batch_size = min(batch_size, n_train)
    mesh = as_mesh(mesh)
    if mesh is not None and batch_size % mesh.size:
        raise ValueError(
            f"argument 'batch_size' ({batch_size}, after capping at the {n_train} training rows) "
            f"must be divisible by the number of devices in 'mesh' ({mesh.size}) for "
            "data-parallel training; choose a multiple of the device count."
        )
    loss_fn = _nll if loss_fn is None else loss_fn
    optimizer = _optimizer(optimizer, learning_rate)

    key, perm_key = jax.random.split(key)
    perm = jax.random.permutation(perm_key, n)
    train_idx, val_idx = perm[:n_train], perm[n_train:]
    arrays = (x,) if c is None else (x, c)
    train = tuple(a[train_idx] for a in arrays)
    val = tuple(a[val_idx] for a in arrays)

    params, static = eqx.partition(dist, filter_spec)
    state = init_state(params, optimizer)
    step = make_step(loss_fn, static, optimizer)
    n_batches = n_train // batch_size
    # the loop's progress, restored from ``checkpoint`` when the file exists
    loop = {"epoch": 0, "best_val": np.inf, "patience": 0, "status": 0, "stopped_at": -1}
    hist = np.full((2, max_epochs), np.nan)  # train, val per epoch
    best_params = state.params
    progress_names = (*loop, "max_epochs", "batch_size")
    resumed = None
    if checkpoint is not None:
        expect = {"max_epochs": max_epochs, "batch_size": batch_size}
        like = (state, key, best_params, hist)
        resumed = load_progress(checkpoint, progress_names, like, expect)
    if resumed is not None:
        scalars, (state, key, best_params, hist) = resumed
        loop = {k: scalars[k] for k in loop}

    if mesh is None:
        shard_batches = shard_batch = replicate = lambda tree: tree  # noqa: E731
    else:
        # Data parallel (GSPMD): the training set and the state are replicated; each minibatch is
        # split over the devices and XLA inserts the gradient all-reduce.
        state, train, val = jax.tree_util.tree_map(
            lambda a: jax.device_put(a, replicated(mesh)) if eqx.is_array(a) else a,
            (state, train, val),
        )

        def shard_batches(tree):  # (n_batches, batch_size, ...): split axis 1
            return jax.lax.with_sharding_constraint(tree, batch_sharding(mesh, axis=1))

        def shard_batch(tree):  # one minibatch (batch_size, ...): split axis 0
            return jax.lax.with_sharding_constraint(tree, batch_sharding(mesh))

        def replicate(tree):
            return jax.lax.with_sharding_constraint(tree, replicated(mesh))

    @eqx.filter_jit
    def run_epoch(state, key):
        idx = jax.random.permutation(key, n_train)[: n_batches * batch_size]
        batches = tuple(a[idx].reshape((n_batches, batch_size) + a.shape[1:]) for a in train)
        state, losses = jax.lax.scan(
            lambda s, b: step(s, *shard_batch(b)), state, shard_batches(batches)
        )
        return replicate(state), losses

    @eqx.filter_jit
    def val_loss(params):
        model = eqx.combine(params, static)
        # Weighted mean over fixed-size chunks covers every validation row exactly once.
        vb = min(batch_size, n_val)
        n_full = n_val // vb
        total = jnp.zeros(())
        if n_full:
            chunks = tuple(a[: n_full * vb].reshape((n_full, vb) + a.shape[1:]) for a in val)
            per = jax.lax.map(lambda b: loss_fn(model, *b), chunks)
            total = total + jnp.sum(per) * vb
        rest = n_val - n_full * vb
        if rest:
            total = total + loss_fn(model, *(a[n_full * vb :] for a in val)) * rest
        return total / n_val

    best_val, patience = float(loop["best_val"]), int(loop["patience"])
    start = int(loop["epoch"])
    status = _STATUSES[int(loop["status"])]
    stopped_at = None if loop["stopped_at"] < 0 else int(loop["stopped_at"])
    message = f"ran {max_epochs} epochs."
    train_hist, val_hist = list(hist[0, :start]), list(hist[1, :start])
    write = checkpoint_path is not None and jax.process_index() == 0

    def save_loop(epoch: int, final: bool) -> None:
        if checkpoint is None or jax.process_index() != 0:
            return
        if not (final or (epoch + 1) % checkpoint_every == 0):
            return
        done = np.full((2, max_epochs), np.nan)
        done[0, : len(train_hist)], done[1, : len(val_hist)] = train_hist, val_hist
        scalars = {
            "epoch": len(val_hist),
            "best_val": best_val,
            "patience": patience,
            "status": _STATUSES.index(status),
            "stopped_at": -1 if stopped_at is None else stopped_at,
            "max_epochs": max_epochs,
            "batch_size": batch_size,
        }
        tree = (state, key, best_params, done)
        save_progress(checkpoint, scalars, _local_copy(tree))

    bar = tqdm(
        range(start, max_epochs) if status == "running" else (),
        disable=not progress or jax.process_index() != 0,
        desc="fit_to_data",
    )
    for epoch in bar:
        key, sub = jax.random.split(key)
        state, losses = run_epoch(state, sub)
        bad = int(state.nonfinite_step)
        if bad >= 0:
            status, stopped_at = "nonfinite", bad
            if not np.isfinite(best_val):
                best_params = state.params  # updates stop at the bad step: last finite params
            break
        v = float(val_loss(state.params))
        train_hist.append(float(np.mean(np.asarray(losses))))
        val_hist.append(v)
        bar.set_postfix(train=f"{train_hist[-1]:.4g}", val=f"{v:.4g}")
        if v < best_val:
            best_val, best_params, patience = v, state.params, 0
            if write:
                save(checkpoint_path, eqx.combine(_local_copy(best_params), static))
        else:
            patience += 1
            if patience > max_patience:
                status, stopped_at = "converged", int(state.step)
                break
        save_loop(epoch, final=False)
    if status == "running":
        status = "max_steps"
    save_loop(len(val_hist), final=True)
    if status == "nonfinite":
        message = (
            f"non-finite loss or gradient at step {stopped_at} (epoch {len(val_hist)}); stopped "
            "and kept the last finite parameters."
        )
    elif status == "converged":
        message = (
            f"early stopping after epoch {len(val_hist) - 1} (best validation loss {best_val:.5g})."
        )
    bar.close()
    final = best_params if return_best else state.params
    losses = {"train": np.asarray(train_hist), "val": np.asarray(val_hist)}
    return FitResult(eqx.combine(final, static), losses, status, stopped_at, message)


__all__ = ["FitResult", "TrainState", "init_state", "make_step", "fit_to_loss", "fit_to_data"]

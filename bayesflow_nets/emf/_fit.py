"""``fit_vi``: reverse-KL VI with defaults meant to converge without tuning (MATH.md §1).

Defaults: a pilot chunk from the guide's own start and, for :class:`AutoEMF`, from the Laplace
start (MAP by L-BFGS in unconstrained space, Hessian covariance pulled back through the
structured layer), keeping the better; Adam with a warm-up + cosine learning-rate schedule and
gradient clipping, a 10× learning rate for gates (optax ``multi_transform``), several ELBO
particles, convergence monitoring on chunk means with a final annealed chunk, rollback of
non-finite or spiking chunks, and a PSIS k̂ diagnostic (ArviZ ``psislw`` on log p − log q) that
warns above 0.7. Plates that subsample train on minibatches and are evaluated on the full data
(:mod:`._subsample`).
"""

from __future__ import annotations

import concurrent.futures
import os
import time
import warnings
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import SVI
from numpyro.infer.autoguide import AutoGuide
from numpyro.optim import optax_to_numpyro

from .._compile import run_once_jit, split_keys, training_options
from ..bijectors._utils import check_key
from ..train import to_inference_data
from ._checks import as_jax_data, check_learning_rate, check_model_inputs, is_data
from ._evaluation import (
    EVAL_BATCH,
    all_log_weights,
    draws_and_log_weights,
    elbo_and_khat,
    lower_evaluation,
)
from ._resume import load_loop, save_loop
from ._start import format_scores, initial_candidates, pilot, replaying
from ._stl import OrderedTraceELBO, RenyiELBO, StickingTheLandingELBO
from ._subsample import eval_batch, full_data, minibatches_with_replacement, subsampled_plates

ESTIMATORS = ("elbo", "stl")

INITS = ("auto", "laplace", "default")

KHAT_THRESHOLD = 0.7
DEFAULT_MIN_STEPS = 1500
DEFAULT_REFINE_STEPS = 1500
REFINE_MIN_ESS = 0.5  # effective sample size (share of the particles) a refinement step keeps


class _AnnealState(NamedTuple):
    factor: jax.Array
    decay: jax.Array


def _anneal() -> optax.GradientTransformation:
    """Scale updates by ``factor``, then multiply ``factor`` by ``decay`` (1 until annealing).

    Both live in the optimiser state, so ``fit_vi`` switches to annealing by editing the state
    (:func:`_start_anneal`) without compiling a new training chunk.
    """

    def init(params):
        del params
        return _AnnealState(jnp.ones(()), jnp.ones(()))

    def update(updates, state, params=None):
        del params
        updates = jax.tree_util.tree_map(lambda u: u * state.factor.astype(u.dtype), updates)
        return updates, _AnnealState(state.factor * state.decay, state.decay)

    return optax.GradientTransformation(init, update)


def _start_anneal(svi_state, decay: float):
    """The SVI state with its :func:`_anneal` factor reset to 1 and decaying by ``decay``."""

    def edit(node):
        if isinstance(node, _AnnealState):
            return _AnnealState(jnp.ones_like(node.factor), jnp.full_like(node.decay, decay))
        return node

    return jax.tree_util.tree_map(edit, svi_state, is_leaf=lambda n: isinstance(n, _AnnealState))


class VIResult:
    """Result of :func:`fit_vi`: ``params`` (for ``Predictive(model, guide=guide, params=...)``),
    ``losses`` (accepted steps), ``elbo`` ± ``elbo_se`` (from ``num_eval`` fresh draws), PSIS
    ``khat``, ``status`` ("converged", "max_steps", "nonfinite" or "unstable"), ``init`` (the
    starting point kept) with ``init_scores`` (each candidate's ELBO after one pilot chunk),
    ``rollbacks``: (kind, step) of each rejected chunk ("nonfinite" or "spike"), and
    ``train_time`` (seconds in training chunks, pilots and rejected chunks included) over
    ``steps_run`` optimiser steps, of which ``refine_steps`` refined the guide."""

    def __init__(
        self,
        model,
        guide,
        params,
        losses,
        elbo,
        elbo_se,
        khat,
        status,
        steps,
        wall,
        a,
        k,
        *,
        init: str | None = None,
        init_scores: dict | None = None,
        rollbacks: tuple = (),
        train_time: float = float("nan"),
        steps_run: int | None = None,
        eval_model=None,
        eval_guide=None,
        eval_batch: int = EVAL_BATCH,
        refine_steps: int = 0,
    ):
        self.model = model
        self.guide = guide
        self.params = params
        self.losses = losses
        self.elbo = elbo
        self.elbo_se = elbo_se
        self.khat = khat
        self.status = status
        self.num_steps = steps
        self.wall_time = wall
        self._args = a
        self._kwargs = k
        self.init = init
        self.init_scores = dict(init_scores or {})
        self.rollbacks = tuple(rollbacks)
        self.train_time = train_time
        self.steps_run = steps if steps_run is None else steps_run
        # subsampling plates run over their full data here (``evaluation.full_data``)
        self._eval_model = model if eval_model is None else eval_model
        self._eval_guide = guide if eval_guide is None else eval_guide
        self._eval_batch = eval_batch
        self.refine_steps = refine_steps

    def _draws(self, key, n, weights=True):
        return draws_and_log_weights(
            self._eval_model,
            self._eval_guide,
            self.params,
            key,
            n,
            self._args,
            self._kwargs,
            batch=self._eval_batch,
            weights=weights,
        )

    def samples(self, key, n: int) -> dict[str, Any]:
        """``n`` posterior draws of every latent and deterministic site (observed sites dropped)."""
        # with full-data plates, a program without the likelihood (which the draws do not need);
        # otherwise the evaluation program that ``fit_vi`` compiled
        return self._draws(key, n, weights=self._eval_model is self.model)[0]

    def to_arviz(self, key=None, n: int = 1000, *, num_chains: int = 1, coords=None, dims=None):
        """An ``arviz.InferenceData`` of ``num_chains`` × ``n`` independent guide draws.

        Dims and coords come from the model's plates (``bayesflow_nets.infer.to_inference_data``);
        ``sample_stats`` holds each draw's ``log_weight`` = log p(x, y) − log q(x) and ``lp``;
        the attributes hold ``elbo``, ``elbo_se``, ``khat`` (PSIS k̂ of the fit) and ``status``.
        Draws are i.i.d., so splitting them into chains only groups them (like VI restarts).
        """
        if n < 1 or num_chains < 1:
            raise ValueError(f"arguments 'n' and 'num_chains' must be >= 1, got {n}, {num_chains}.")
        key = jax.random.PRNGKey(0) if key is None else key
        draws, lp, lq = self._draws(key, n * num_chains)

        def split(v):
            v = np.asarray(v)
            return v.reshape((num_chains, n) + v.shape[1:])

        return to_inference_data(
            {k: split(v) for k, v in draws.items()},
            self.model,
            self._args,
            self._kwargs,
            sample_stats={"log_weight": split(np.asarray(lp) - np.asarray(lq)), "lp": split(lp)},
            coords=coords,
            dims=dims,
            attrs={
                "inference_library": "bayesflow_nets.fit_vi",
                "guide": type(self.guide).__name__,
                "elbo": float(self.elbo),
                "elbo_se": float(self.elbo_se),
                "khat": float(self.khat),
                "status": str(self.status),
                "num_steps": int(self.num_steps),
                "init": str(self.init),
                "num_rollbacks": len(self.rollbacks),
                "sampling_time": float(self.wall_time),
            },
        )

    def __repr__(self):
        return (
            f"VIResult(elbo={self.elbo:.3f} ± {self.elbo_se:.3f}, khat={self.khat:.2f}, "
            f"steps={self.num_steps}, status={self.status!r}, init={self.init!r}, "
            f"rollbacks={len(self.rollbacks)})"
        )


def _init_state(svi: SVI, guide, rng_key, args, kwargs):
    """``svi.init`` as one program compiled for a single run (op by op it compiles dozens of
    small programs). An AutoGuide's prototype is set up first, outside the trace, with the guide
    seed ``svi.init`` would give it."""
    if isinstance(guide, AutoGuide) and guide.prototype_trace is None:
        guide_seed = split_keys(rng_key, 3)[2]
        handlers.seed(guide._setup_prototype, guide_seed)(*args, **kwargs)
    return run_once_jit(lambda key, a, k: svi.init(key, *a, **k))(rng_key, args, kwargs)


MAX_ROLLBACKS = 5


def _rolled_back(svi_state, index: int, lr_factor: float = 0.5):
    """``svi_state`` with its :func:`_anneal` factor scaled by ``lr_factor`` and a fresh key
    (``index`` folded in): the restart point after a rejected chunk."""

    def edit(node):
        if isinstance(node, _AnnealState):
            return _AnnealState(node.factor * lr_factor, node.decay)
        return node

    state = jax.tree_util.tree_map(edit, svi_state, is_leaf=lambda n: isinstance(n, _AnnealState))
    return state._replace(rng_key=jax.random.fold_in(state.rng_key, index))


def _chunk_problem(losses: np.ndarray, prev: np.ndarray | None) -> tuple[str, int] | None:
    """Why a chunk's losses must be rejected, with the index of the first bad step: a
    non-finite loss, or a spike against the previous accepted chunk ``prev`` (its last quarter
    far above ``prev``'s, or one step ~1000 spreads above it: Adam's moments are then spoilt)."""
    bad = ~np.isfinite(losses)
    if bad.any():
        return "nonfinite", int(np.argmax(bad))
    if prev is None:
        return None
    median = float(np.median(prev))
    spread = float(np.median(np.abs(prev - median))) + 1.0
    tail = losses[-max(len(losses) // 4, 1) :]
    wild = losses > median + 1000.0 * spread
    if wild.any():
        return "spike", int(np.argmax(wild))
    if float(np.median(tail)) > median + 10.0 * spread:
        return "spike", len(losses) - len(tail)
    return None


class Loop(NamedTuple):
    """The training loop's state between chunks (what a checkpoint holds, :mod:`._resume`):
    the SVI state, the accepted chunks' losses, the rejected chunks as (kind, step), steps
    accepted, the previous chunk's mean loss, accepted chunks since the last rejected one,
    whether the final annealing chunk runs, and the status ("running" until training ends)."""

    state: Any
    losses: tuple = ()
    rollbacks: tuple = ()
    steps: int = 0
    prev: float | None = None
    clean: int = 0
    annealing: bool = False
    status: str = "running"


def _train_chunks(
    run_chunk, loop: Loop, num_steps, chunk, min_steps, tol, progress, t0, saved=None
):
    """Run ``run_chunk`` from ``loop`` until ``num_steps`` or convergence (see :func:`fit_vi`);
    ``saved(loop)`` is called after every chunk, accepted or rejected, and at the end.

    A chunk with a non-finite loss or a spike (:func:`_chunk_problem`) is discarded: training
    restarts from the last accepted state with half the learning rate, and the step is kept in
    ``rollbacks``; after :data:`MAX_ROLLBACKS` a non-finite chunk stops training ("nonfinite")
    and spikes are accepted. "converged" needs a plateau with no rejected chunk since the one
    before it.
    """
    saved = saved or (lambda loop: None)
    while loop.status == "running" and loop.steps < num_steps:
        new_state, chunk_losses = run_chunk(loop.state)
        chunk_losses = np.asarray(chunk_losses)
        prev_losses = loop.losses[-1] if loop.losses else None
        problem = _chunk_problem(chunk_losses, None if loop.prev is None else prev_losses)
        n_back = len(loop.rollbacks)
        if problem is not None and (n_back < MAX_ROLLBACKS or problem[0] == "nonfinite"):
            kind, at = problem
            rollbacks = (*loop.rollbacks, (kind, loop.steps + at))
            if progress:
                print(f"fit_vi: {kind} loss at step {loop.steps + at}: chunk rolled back")
            if len(rollbacks) > MAX_ROLLBACKS:
                loop = loop._replace(rollbacks=rollbacks, status="nonfinite")
                break
            # an annealing start stays in the state, so a rolled-back final chunk anneals again
            loop = loop._replace(
                state=_rolled_back(loop.state, len(rollbacks)), rollbacks=rollbacks, clean=0
            )
            saved(loop)
            continue
        steps = loop.steps + chunk
        clean = loop.clean + 1 if problem is None else 0
        mean = float(np.mean(chunk_losses))
        se = float(np.std(chunk_losses) / np.sqrt(len(chunk_losses)))
        loop = loop._replace(
            state=new_state, losses=(*loop.losses, chunk_losses), steps=steps, clean=clean
        )
        if progress:
            print(
                f"fit_vi: step {steps:6d}  loss {mean:.4f} ± {se:.4f}  "
                f"({time.perf_counter() - t0:.1f} s)"
            )
        if loop.annealing:
            loop = loop._replace(status="converged" if clean >= 1 else "unstable")
            break
        plateau = loop.prev is not None and loop.prev - mean < max(se, tol)
        if plateau and steps >= min_steps and clean >= 2:
            # Plateau at the current learning rate: the iterates now wander at the noise floor
            # of that rate. One more chunk with the step decaying geometrically to 1 % settles
            # them (same compiled chunk: the decay lives in the optimiser state).
            loop = loop._replace(state=_start_anneal(loop.state, 0.01 ** (1.0 / chunk)))
            loop = loop._replace(annealing=True)
        loop = loop._replace(prev=mean)
        saved(loop)
    if loop.status == "running":
        loop = loop._replace(status="max_steps")
    saved(loop)
    return loop


def _checkpoint_writer(path, every, chosen, scores, options, num_steps, chunk):
    """``saved`` for :func:`_train_chunks`: writes every ``every``-th call and the final one."""
    if path is None:
        return None
    calls = [0]

    def saved(loop):
        calls[0] += 1
        if calls[0] % every == 0 or loop.status != "running":
            save_loop(path, loop, chosen, scores, options, num_steps, chunk)

    return saved


class _Refinement:
    """The mass-covering refinement of :func:`fit_vi`: ``steps`` (rounded up to whole chunks)
    of the Rényi bound of order ``alpha`` from the trained guide, with a fresh Adam whose step
    decays by a cosine from ``learning_rate`` / 5 to 1 % of it."""

    def __init__(self, svi: SVI, steps, alpha, learning_rate, particles: int, *, dreg: bool):
        self.train_svi = svi
        self.steps = steps
        self.steps_run = 0
        peak = learning_rate / 5
        tx = optax.chain(
            optax.clip_by_global_norm(10.0),
            optax.adam(optax.cosine_decay_schedule(peak, max(steps, 1), 0.01)),
        )
        self.svi = SVI(
            svi.model,
            svi.guide,
            optax_to_numpyro(tx),
            RenyiELBO(particles, alpha, dreg=dreg, min_ess=REFINE_MIN_ESS),
        )
        self.svi.static_kwargs = svi.static_kwargs
        self.svi.constrain_fn = svi.constrain_fn  # set by ``svi.init``: the same parameters

    def start(self, state):
        """The refinement's SVI state at the parameters of the training state ``state``."""
        unconstrained = self.train_svi.optim.get_params(state.optim_state)
        return state._replace(optim_state=self.svi.optim.init(unconstrained))

    def run(self, run_chunk, loop: Loop, chunk: int, progress: bool, t0: float):
        """Refine from ``loop``'s state; returns the loop with the refinement's losses (and a
        "nonfinite" rollback if a chunk failed) and the constrained parameters kept."""
        state = self.start(loop.state)
        for _ in range(-(-self.steps // chunk)):
            new, losses = run_chunk(state)
            losses = np.asarray(losses)
            if not np.all(np.isfinite(losses)):
                at = loop.steps + int(np.argmax(~np.isfinite(losses)))
                loop = loop._replace(rollbacks=(*loop.rollbacks, ("nonfinite", at)))
                if progress:
                    print(f"fit_vi: nonfinite loss at step {at}: refinement stopped")
                break
            state = new
            self.steps_run += chunk
            loop = loop._replace(losses=(*loop.losses, losses), steps=loop.steps + chunk)
            if progress:
                print(
                    f"fit_vi: step {loop.steps:6d}  loss {float(np.mean(losses)):.4f} "
                    f"(refinement, {time.perf_counter() - t0:.1f} s)"
                )
        return loop, self.svi.get_params(state)


def fit_vi(
    model,
    guide,
    *args,
    rng_key=None,
    progress: bool = True,
    num_steps: int = 6000,
    num_particles: int = 16,
    learning_rate: float = 5e-3,
    gate_learning_rate: float | None = None,
    init: str = "auto",
    chunk: int = 500,
    min_steps: int | None = None,
    tol: float = 0.02,
    num_eval: int = 1000,
    estimator: str = "elbo",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    refine_steps: int | None = None,
    refine_alpha: float = 0.5,
    **kwargs,
) -> VIResult:
    """Fit ``guide`` to ``model`` by maximising the ELBO (MATH.md §1).

    ``*args, **kwargs`` go to the model, as in NumPyro's ``SVI.run``. Options (keyword-only):
    ``num_steps`` (maximum), ``num_particles``, ``learning_rate`` (peak of a warm-up + cosine
    schedule), ``gate_learning_rate`` (default 10 × ``learning_rate``), ``init`` ("auto": one
    pilot chunk from the guide's own start and, for AutoEMF with at most ``LAPLACE_MAX_DIM``
    latents, from the Laplace-whitened start; training goes on from the one that ends lower;
    "laplace"; "default"), ``chunk``/``min_steps``/``tol`` (after ``min_steps``, once a chunk's
    mean loss improves on the previous chunk's by less than its standard error or ``tol`` nats,
    whichever is larger, one last chunk anneals the step geometrically to 1 % and training
    stops: "converged"; ``tol=0`` waits for the noise floor; ``min_steps`` defaults to 1500,
    and to ``num_steps`` where a plate subsamples, as minibatch noise hides a plateau),
    ``num_eval`` (draws for the final ELBO and PSIS k̂),
    ``estimator`` ("elbo": NumPyro's ``Trace_ELBO`` summed in trace order,
    :class:`OrderedTraceELBO`; "stl": the sticking-the-landing gradient,
    :class:`StickingTheLandingELBO`). A chunk with a non-finite loss or a loss spike is rolled
    back to the last accepted state and retried at half the learning rate (``rollbacks``);
    after ``MAX_ROLLBACKS`` a non-finite loss stops training with the last finite parameters
    (``status="nonfinite"``). ``checkpoint``: a file path; the training loop (optimiser state,
    PRNG key, step, losses, rollbacks, status) is written there atomically after every
    ``checkpoint_every`` chunks and at the end, and a call that finds the file continues from
    it (skipping the start selection) to the same parameters as an uninterrupted fit; a file
    written for another model, guide or options raises ``ValueError``. ``refine_steps``: the
    last steps of the budget (default min(1500, ``num_steps`` / 4) in whole chunks; 0: none)
    are kept for a mass-covering refinement when training has not converged by then: the
    Rényi bound of order ``refine_alpha`` (:class:`RenyiELBO`; doubly reparametrised with
    ``estimator="stl"``) from the trained guide, with its own cosine-decayed learning rate
    (``learning_rate`` / 5), which widens a guide that under-covers the posterior, such as the
    scales of a hierarchy (``VIResult.refine_steps``). A chunk with a non-finite loss ends it
    with the last finite parameters. The checkpoint holds the training before it; a resumed
    fit runs it again.
    """
    if init not in INITS:
        raise ValueError(f"argument 'init' must be one of {INITS}, got {init!r}.")
    check_learning_rate(learning_rate, "learning_rate")
    if gate_learning_rate is not None:
        check_learning_rate(gate_learning_rate, "gate_learning_rate")
    if estimator not in ESTIMATORS:
        raise ValueError(f"argument 'estimator' must be one of {ESTIMATORS}, got {estimator!r}.")
    counts = {"num_steps": num_steps, "num_particles": num_particles, "num_eval": num_eval}
    counts |= {"chunk": chunk, "checkpoint_every": checkpoint_every}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"argument {name!r} must be an int >= 1, got {value!r}.")
    if isinstance(refine_alpha, bool) or not isinstance(refine_alpha, int | float):
        raise TypeError(
            f"argument 'refine_alpha' must be a number in [0, 1), got {refine_alpha!r}."
        )
    if not 0.0 <= refine_alpha < 1.0:
        raise ValueError(f"argument 'refine_alpha' must lie in [0, 1), got {refine_alpha!r}.")
    if refine_steps is None:
        refine_steps = min(DEFAULT_REFINE_STEPS, num_steps // 4) // chunk * chunk
    if (
        isinstance(refine_steps, bool)
        or not isinstance(refine_steps, int | np.integer)
        or not (0 <= refine_steps < num_steps)
    ):
        raise ValueError(
            f"argument 'refine_steps' must be an int in [0, num_steps), got {refine_steps!r}."
        )
    if min_steps is not None and (
        isinstance(min_steps, bool) or not isinstance(min_steps, int | np.integer) or min_steps < 0
    ):
        raise ValueError(f"argument 'min_steps' must be None or an int >= 0, got {min_steps!r}.")
    if rng_key is not None:
        check_key(rng_key, "rng_key")
    if not tol >= 0.0:
        raise ValueError(f"argument 'tol' must be >= 0 (nats per chunk), got {tol!r}.")
    t0 = time.perf_counter()
    args, kwargs = as_jax_data(args, kwargs)
    key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    k_init, _, k_eval = split_keys(key, 3)
    gate_lr = 10.0 * learning_rate if gate_learning_rate is None else gate_learning_rate

    train_steps = num_steps - refine_steps
    warmup = min(200, train_steps // 10 + 1)

    def sched(peak):
        # decay_steps must exceed the warm-up (num_steps = 1 would give an empty decay)
        return optax.warmup_cosine_decay_schedule(
            peak / 10, peak, warmup, max(train_steps, warmup + 1), peak / 100
        )

    def labels(params):
        return {k: ("gate" if k.endswith("_emf_gates") else "other") for k in params}

    tx = optax.chain(
        optax.clip_by_global_norm(10.0),
        optax.multi_transform(
            {"other": optax.adam(sched(learning_rate)), "gate": optax.adam(sched(gate_lr))},
            labels,
        ),
        _anneal(),
    )
    elbo_cls = StickingTheLandingELBO if estimator == "stl" else OrderedTraceELBO
    check_model_inputs(model, args, kwargs)
    plates = subsampled_plates(model, args, kwargs)
    if min_steps is None:
        min_steps = num_steps if plates else DEFAULT_MIN_STEPS
    svi = SVI(
        minibatches_with_replacement(model, plates),
        minibatches_with_replacement(guide, plates),
        optax_to_numpyro(tx),
        elbo_cls(num_particles=num_particles),
    )
    eval_model, eval_guide = full_data(model, plates), full_data(guide, plates)
    batch = eval_batch(plates, EVAL_BATCH)
    state = _init_state(svi, guide, k_init, args, kwargs)
    # the model's arrays enter the training program as arguments (as in ``SVI.run``), not as
    # constants folded into it; other arguments are static
    data, static = eqx.partition((args, kwargs), is_data)

    def steps_of(svi_):
        def chunk_of_steps(state, data):
            a, k = eqx.combine(data, static)

            def body(s, _):
                s, loss = svi_.stable_update(s, *a, **k)
                return s, loss

            return jax.lax.scan(body, state, None, length=chunk)

        return chunk_of_steps

    # Programs are traced and lowered on this thread (NumPyro's handler stack is global) and
    # compiled by XLA on worker threads while the Laplace fit runs here; nothing runs two
    # compiled programs at once (XLA:CPU's thread pool can deadlock on that).
    lowered = jax.jit(steps_of(svi), compiler_options=training_options())
    lowered = lowered.trace(state, data).lower()
    refinement = None
    if refine_steps:
        refinement = _Refinement(
            svi, refine_steps, refine_alpha, learning_rate, num_particles, dreg=estimator == "stl"
        )

    lowered_eval = lower_evaluation(
        eval_model, eval_guide, svi.get_params(state), k_eval, num_eval, args, kwargs, batch
    )
    options = {
        "num_steps": num_steps,
        "chunk": chunk,
        "num_particles": num_particles,
        "learning_rate": learning_rate,
        "gate_learning_rate": gate_lr,
        "min_steps": min_steps,
        "tol": tol,
        "estimator": ESTIMATORS.index(estimator),
        "refine_steps": refine_steps,
        "refine_alpha": refine_alpha,
    }
    resumed = None
    if checkpoint is not None:
        resumed = load_loop(checkpoint, state, options, num_steps, chunk, Loop)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        compiling = pool.submit(lowered.compile)
        compiling_eval = pool.submit(lowered_eval.compile)
        candidates = initial_candidates(init, guide, svi, state) if resumed is None else {}
        compiled = compiling.result()

        def run_chunk(state):
            return compiled(state, data)

        t_train = time.perf_counter()
        if resumed is None:
            chosen, scores, first = pilot(run_chunk, candidates)
            loop = Loop(candidates[chosen])
            if progress:
                shown = f" of {format_scores(scores)}" if scores else ""
                print(f"fit_vi: start {chosen!r}{shown}")
        else:
            (loop, chosen, scores), first = resumed, None
            if progress:
                print(f"fit_vi: resumed from {checkpoint} at step {loop.steps} ({loop.status})")
        training = _train_chunks(
            replaying(run_chunk, first),
            loop,
            train_steps,
            chunk,
            min_steps,
            tol,
            progress,
            t0,
            saved=_checkpoint_writer(
                checkpoint, checkpoint_every, chosen, scores, options, num_steps, chunk
            ),
        )
        params = svi.get_params(training.state)
        if refinement is not None and training.status == "max_steps":
            # compiled only when needed (on this thread: no other program is running)
            program = jax.jit(steps_of(refinement.svi), compiler_options=training_options())
            compiled_refine = program.lower(refinement.start(training.state), data).compile()
            training, params = refinement.run(
                lambda s: compiled_refine(s, data), training, chunk, progress, t0
            )
        t_train = time.perf_counter() - t_train
        compiling_eval.result()
    # the same compiled batch function later serves ``VIResult.samples`` and ``to_arviz``
    logw = all_log_weights(eval_model, eval_guide, params, k_eval, num_eval, args, kwargs, batch)
    elbo, elbo_se, khat = elbo_and_khat(logw)
    if khat > KHAT_THRESHOLD:
        warnings.warn(
            f"fit_vi: PSIS k̂ = {khat:.2f} > {KHAT_THRESHOLD}: the variational approximation is "
            "unreliable for importance-weighted estimates (try a richer backbone or more steps).",
            stacklevel=2,
        )
    return VIResult(
        model,
        guide,
        params,
        np.concatenate(training.losses) if training.losses else np.zeros(0),
        elbo,
        elbo_se,
        khat,
        training.status,
        training.steps,
        time.perf_counter() - t0,
        args,
        kwargs,
        init=chosen,
        init_scores=scores,
        refine_steps=refinement.steps_run if refinement is not None else 0,
        rollbacks=tuple(training.rollbacks),
        train_time=t_train,
        steps_run=training.steps
        + max(len(scores) - 1, 0) * chunk
        + len(training.rollbacks) * chunk,
        eval_model=eval_model,
        eval_guide=eval_guide,
        eval_batch=batch,
    )


__all__ = ["VIResult", "fit_vi"]

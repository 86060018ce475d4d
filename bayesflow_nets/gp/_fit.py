"""Hyperparameter fitting by maximising the (REML) marginal likelihood (MATH.md §3)."""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ..train import psis_khat, to_inference_data
from ._gp import ImproperGP, _check_y

__all__ = ["REMLFitResult", "fit_reml"]


class REMLFitResult(NamedTuple):
    """``gp`` with the best finite hyperparameters, the loss trace (−REML/n) and a status:
    "converged", "max_steps" (not converged), "runaway" (not converged, and a log
    hyperparameter still drifting one way: see :func:`fit_reml`) or "nonfinite".

    ``y``, ``method`` and ``fit_noise`` record the fit's data and options (for
    :meth:`to_arviz`).
    """

    gp: ImproperGP
    losses: Float[Array, " steps"]
    status: str
    stopped_at: int
    y: Float[Array, " n"] | None = None
    method: str = "contrast"
    fit_noise: bool = True

    def hyperparameters(self) -> dict[str, Array]:
        """The fitted hyperparameters by name (constrained: ``log_x`` leaves as ``x``)."""
        params, _ = eqx.partition(self.gp, _trainable(self.gp, self.fit_noise))
        return {name: (jnp.exp(leaf) if log else leaf) for name, log, leaf in _named_leaves(params)}

    def to_arviz(
        self,
        key: PRNGKeyArray | None = None,
        num_draws: int = 1000,
        *,
        laplace: bool = True,
    ):
        """The hyperparameters as ``arviz.InferenceData`` (a Laplace approximation of the REML).

        With ``laplace=True`` the posterior group holds ``num_draws`` draws (1 chain) of
        N(θ̂, H⁻¹) in the unconstrained (log) space, θ̂ the REML point and H the Hessian of
        −REML there (a flat prior on the log hyperparameters), mapped to the constrained
        values: ``lengthscale``, ``variance``, ``noise``, ... (nested kernels prefix the field
        path, e.g. ``kernel1.variance``). ``sample_stats`` holds each draw's REML ``lp`` and
        ``log_weight`` = REML − log q, and ``attrs`` the PSIS ``khat`` of those weights (how far
        the Gaussian is from the normalised REML surface), the REML point (``reml_<name>``), the
        maximum ``log_marginal_likelihood`` and ``hessian_positive_definite`` (0: the fit
        stopped away from a maximum; eigenvalues are floored). ``laplace=False`` gives the REML
        point as one draw. Needs float64 for reliable Hessians. For full posterior draws sample
        the hyperparameters with NUTS (``docs/workflow.md``).
        """
        if self.y is None:
            raise ValueError(
                "to_arviz needs the data: this REMLFitResult was built without 'y'; use the "
                "result of fit_reml(gp, y) (which records y)."
            )
        if not isinstance(num_draws, int) or isinstance(num_draws, bool) or num_draws < 1:
            raise ValueError(f"argument 'num_draws' must be an int >= 1, got {num_draws!r}.")
        params, static = eqx.partition(self.gp, _trainable(self.gp, self.fit_noise))
        point = self.hyperparameters()
        attrs = {
            "inference_library": "bayesflow_nets.gp.fit_reml",
            "point_estimate": "REML",
            "log_marginal_likelihood": float(_reml_at(params, static, self.y, self.method)),
            "status": str(self.status),
            "method": str(self.method),
            **{f"reml_{k}": np.asarray(v).tolist() for k, v in point.items()},
        }
        if not laplace:
            draws = {k: np.asarray(v)[None, None] for k, v in point.items()}
            return to_inference_data(draws, attrs=attrs)
        key = jax.random.PRNGKey(0) if key is None else key
        dim = jax.flatten_util.ravel_pytree(params)[0].shape[0]
        dtype = self.gp.X.dtype
        eps = jax.random.normal(key, (num_draws, dim), dtype)
        pd, lp, log_q, draws = _laplace_draws(params, static, self.y, self.method, eps)
        attrs["hessian_positive_definite"] = int(bool(pd))  # NetCDF attributes have no bool
        log_w = np.asarray(lp - log_q, dtype=np.float64)
        khat = psis_khat(log_w)
        attrs["khat"] = None if np.isnan(khat) else khat
        return to_inference_data(
            {k: np.asarray(draws[k])[None] for k in point},
            sample_stats={"lp": np.asarray(lp)[None], "log_weight": log_w[None]},
            attrs=attrs,
        )


def _trainable(gp: ImproperGP, fit_noise: bool):
    """The filter spec of the leaves ``fit_reml`` optimises (kernel hyperparameters, noise)."""
    spec = jax.tree.map(eqx.is_inexact_array, gp)
    spec = eqx.tree_at(lambda g: g.X, spec, replace=False)
    if not fit_noise:
        spec = eqx.tree_at(lambda g: g.log_noise, spec, replace=False)
    return spec


def _named_leaves(params) -> list[tuple[str, bool, Array]]:
    """``(name, is_log, leaf)`` per array leaf: field path without the leading ``kernel`` and
    without the ``log_`` prefix (``kernel.kernel1.log_variance`` → ``kernel1.variance``)."""
    out = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        parts = [getattr(k, "name", None) or str(getattr(k, "idx", k)) for k in path]
        if parts and parts[0] == "kernel" and len(parts) > 1:
            parts = parts[1:]
        log = parts[-1].startswith("log_")
        if log:
            parts[-1] = parts[-1][4:]
        out.append((".".join(parts), log, leaf))
    return out


@eqx.filter_jit
def _reml_at(params, static, y, method):
    return eqx.combine(params, static)._log_marginal_likelihood(y, method)[0]


@eqx.filter_jit
def _laplace_draws(params, static, y, method, eps):
    """Draws θ = θ̂ + H^{-1/2} ε of the Laplace approximation in the unconstrained space, with
    the REML and log q at each draw and the draws' constrained values by name."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def reml(v):
        return eqx.combine(unravel(v), static)._log_marginal_likelihood(y, method)[0]

    hess = jax.hessian(lambda v: -reml(v))(flat)
    w, vecs = jnp.linalg.eigh(0.5 * (hess + hess.T))
    positive_definite = jnp.all(w > 0)
    w = jnp.clip(w, 1e-6 * jnp.max(jnp.abs(w)) + 1e-12)  # floor: a usable Gaussian regardless
    thetas = flat + eps @ (vecs / jnp.sqrt(w)).T  # covariance V diag(1/w) Vᵀ = H⁻¹
    log_q = -0.5 * jnp.sum(eps**2 + jnp.log(2 * jnp.pi), axis=1) + 0.5 * jnp.sum(jnp.log(w))

    def constrained(v):
        return {name: (jnp.exp(x) if log else x) for name, log, x in _named_leaves(unravel(v))}

    return positive_definite, jax.vmap(reml)(thetas), log_q, jax.vmap(constrained)(thetas)


RUNAWAY_FACTOR = 2.0


def _log_values(params) -> np.ndarray:
    """The log hyperparameters of ``params`` as one flat vector (NaN for non-log leaves)."""
    parts = [
        np.ravel(np.asarray(leaf, dtype=float)) if log else np.full(np.size(leaf), np.nan)
        for _, log, leaf in _named_leaves(params)
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


FLAT_NATS = 1e-3


def _flat_directions(params, static, y, method, names: list[str]) -> list[str]:
    """Log hyperparameters along which the log marginal likelihood changes by less than
    :data:`FLAT_NATS` nats on one side of ``params`` (a step of ±1 in the log): a flat
    asymptote the fit ran onto, not a maximum."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    logs = _log_values(params)
    loss = eqx.filter_jit(_loss)
    base = float(loss(params, static, y, method)) * y.shape[0]
    out = set()
    for i in np.flatnonzero(np.isfinite(logs)):
        for step in (1.0, -1.0):
            moved = float(loss(unravel(flat.at[i].add(step)), static, y, method)) * y.shape[0]
            if np.isfinite(moved) and abs(moved - base) < FLAT_NATS:
                out.add(names[i])
    return sorted(out)


def _tail(num: int) -> int:
    return max(num // 4, 5)


def _runaway(trail: np.ndarray, names: list[str]) -> list[str]:
    """Names of log hyperparameters that, over the last quarter of the trail (at least five
    iterates), moved monotonically by more than ``log(RUNAWAY_FACTOR)``."""
    if len(trail) < 6:
        return []
    tail = trail[-_tail(len(trail)) :]
    steps = np.diff(tail, axis=0)
    one_way = np.all(steps >= 0, axis=0) | np.all(steps <= 0, axis=0)
    moved = np.abs(tail[-1] - tail[0]) > np.log(RUNAWAY_FACTOR)
    return sorted({names[i] for i in np.flatnonzero(one_way & moved)})


def _loss(params, static, y, method):
    model = eqx.combine(params, static)
    return -model._log_marginal_likelihood(y, method)[0] / y.shape[0]


@functools.cache
def _default_optimizer():
    # One L-BFGS object per process, so that the jitted step is reused across fits (an optax
    # transformation hashes by identity); it holds no mutable state.
    return optax.lbfgs()


@eqx.filter_jit
def _step(params, state, static, y, method, opt):
    def loss_fn(p):
        return _loss(p, static, y, method)

    value, grad = jax.value_and_grad(loss_fn)(params)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss_fn)
    return optax.apply_updates(params, updates), state, value, optax.tree.norm(grad)


def fit_reml(
    gp: ImproperGP,
    y: Float[ArrayLike, " n"],
    *,
    steps: int = 100,
    optimizer: optax.GradientTransformation | None = None,
    method: str = "contrast",
    fit_noise: bool = True,
    gtol: float = 1e-7,
) -> REMLFitResult:
    """Maximise the marginal likelihood over the kernel's (log) hyperparameters and the noise.

    The loss is ``−log_marginal_likelihood(y) / n``. The default optimiser is ``optax.lbfgs()``
    (with its zoom line search); any optax transformation works (e.g. ``optax.adam(0.05)``).
    Stops early when the gradient norm drops below ``gtol`` ("converged") or the loss becomes
    non-finite ("nonfinite", keeping the last finite parameters). Otherwise the status is
    "runaway" where a log hyperparameter moved one way by more than a factor
    :data:`RUNAWAY_FACTOR` over the last quarter of the steps (e.g. a lengthscale growing
    without bound), else "max_steps"; every status but "converged" also warns.
    """
    if not isinstance(gp, ImproperGP):
        raise TypeError(f"fit_reml: gp must be an ImproperGP, got {type(gp).__name__}.")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"fit_reml: argument 'steps' must be an int >= 1, got {steps!r}.")
    if not (isinstance(gtol, int | float) and math.isfinite(gtol) and gtol >= 0):
        raise ValueError(f"fit_reml: argument 'gtol' must be a finite number >= 0, got {gtol!r}.")
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "fit_reml: argument 'optimizer' must be an optax.GradientTransformation (e.g. "
            f"optax.adam(0.05)), got {optimizer!r}."
        )
    gp._check_method(method, ("contrast", "state_space"))
    y = _check_y(y, gp.n)
    params, static = eqx.partition(gp, _trainable(gp, fit_noise))
    opt = _default_optimizer() if optimizer is None else optax.with_extra_args_support(optimizer)
    # Strong-type the initial state (optax initialises some scalars weakly typed, which would
    # retrace the jitted step after the first update).
    state = jax.tree.map(
        lambda a: jnp.asarray(a, dtype=a.dtype) if eqx.is_array(a) else a, opt.init(params)
    )

    losses = []
    best = params
    status = "max_steps"
    stopped_at = steps
    trail = [_log_values(params)]
    gnorm = np.inf
    for i in range(steps):
        new_params, new_state, value, gnorm = _step(params, state, static, y, method, opt)
        value = float(value)
        if not jnp.isfinite(value):
            status, stopped_at = "nonfinite", i
            break
        losses.append(value)
        best = params
        if float(gnorm) < gtol:
            status, stopped_at = "converged", i
            break
        params, state = new_params, new_state
        trail.append(_log_values(params))
    else:
        # The final update has not been evaluated; keep it only if its loss is finite.
        final = float(eqx.filter_jit(_loss)(params, static, y, method))
        if jnp.isfinite(final):
            best = params
            losses.append(final)
        else:
            trail.pop()
    if status == "nonfinite":
        warnings.warn(
            f"fit_reml: the loss is non-finite at step {stopped_at}; the result keeps the last "
            "finite hyperparameters (status 'nonfinite'). Start from other hyperparameters or "
            "enable float64 (jax.config.update('jax_enable_x64', True)).",
            stacklevel=2,
        )
    else:
        names = [name for name, log, leaf in _named_leaves(best) for _ in range(np.size(leaf))]
        drifting = _runaway(np.asarray(trail), names) if status == "max_steps" else []
        flat = _flat_directions(best, static, y, method, names)
        if drifting or flat:
            status = "runaway"
            values = dict(zip(names, np.exp(_log_values(best)), strict=True))
            shown = ", ".join(f"{k} = {values[k]:.3g}" for k in sorted({*drifting, *flat}))
            warnings.warn(
                f"fit_reml: hyperparameter(s) {shown} ran off (status 'runaway'): "
                + (
                    f"{', '.join(flat)} changed the log marginal likelihood by less than "
                    f"{FLAT_NATS:g} nats when multiplied or divided by e, so the data do not "
                    "determine them"
                    if flat
                    else f"{', '.join(drifting)} still moved one way by more than a factor "
                    f"{RUNAWAY_FACTOR:g} over the last {_tail(len(trail))} steps"
                )
                + ". Use a kernel without that term, fix it, or rescale X and y.",
                stacklevel=2,
            )
        elif status == "max_steps":
            warnings.warn(
                f"fit_reml: not converged after {steps} steps (gradient norm "
                f"{float(gnorm):.2g} > gtol = {gtol:g}); pass more steps (status 'max_steps').",
                stacklevel=2,
            )
    return REMLFitResult(
        eqx.combine(best, static), jnp.asarray(losses), status, stopped_at, y, method, fit_noise
    )

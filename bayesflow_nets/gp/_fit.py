"""Hyperparameter fitting by maximising the (REML) marginal likelihood (MATH.md §3)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float

from ._gp import ImproperGP, _check_y

__all__ = ["REMLFitResult", "fit_reml"]


class REMLFitResult(NamedTuple):
    """``gp`` with the best finite hyperparameters, the loss trace (−REML/n) and a status."""

    gp: ImproperGP
    losses: Float[Array, " steps"]
    status: str
    stopped_at: int


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
    Stops early when the gradient norm drops below ``gtol`` or the loss becomes non-finite
    (keeping the last finite parameters; ``status`` says which).
    """
    if not isinstance(gp, ImproperGP):
        raise TypeError(f"fit_reml: gp must be an ImproperGP, got {type(gp).__name__}.")
    if steps < 1:
        raise ValueError(f"fit_reml: steps must be ≥ 1, got {steps}.")
    gp._check_method(method, ("contrast", "state_space"))
    y = _check_y(y, gp.n)
    spec = jax.tree.map(eqx.is_inexact_array, gp)
    spec = eqx.tree_at(lambda g: g.X, spec, replace=False)
    if not fit_noise:
        spec = eqx.tree_at(lambda g: g.log_noise, spec, replace=False)
    params, static = eqx.partition(gp, spec)
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
    for i in range(steps):
        new_params, new_state, value, gnorm = _step(params, state, static, y, method, opt)
        value = float(value)
        if not jnp.isfinite(value):
            status, stopped_at = "non_finite_loss", i
            break
        losses.append(value)
        best = params
        if float(gnorm) < gtol:
            status, stopped_at = "converged", i
            break
        params, state = new_params, new_state
    else:
        # The final update has not been evaluated; keep it only if its loss is finite.
        final = float(eqx.filter_jit(_loss)(params, static, y, method))
        if jnp.isfinite(final):
            best = params
            losses.append(final)
    return REMLFitResult(eqx.combine(best, static), jnp.asarray(losses), status, stopped_at)

"""Starting points for ``fit_vi``: the Laplace approximation (MAP by L-BFGS, inverse-Hessian
covariance) that whitens AutoEMF's backbone, and the pilot chunk that keeps the better of the
guide's own start and the Laplace start (MATH.md §1)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from numpyro import handlers
from numpyro.infer import SVI
from numpyro.infer.svi import SVIState
from numpyro.infer.util import potential_energy

from .._compile import run_once_jit
from ._autoguide import DENSE_MAX_DIM, AutoEMF
from ._checks import is_data

LAPLACE_MAX_DIM = DENSE_MAX_DIM


def initial_candidates(init: str, guide, svi: SVI, state) -> dict:
    """Starting states by name: the guide's own start ("default"), and for :class:`AutoEMF`
    with ``init`` "auto" or "laplace" and at most :data:`LAPLACE_MAX_DIM` latent dimensions the
    Laplace-whitened start where the Laplace approximation is finite ("laplace")."""
    candidates = {"default": state}
    if init == "default" or not isinstance(guide, AutoEMF):
        return candidates
    if guide.latent_dim > LAPLACE_MAX_DIM or guide.placement != "top":
        return candidates
    loc, cov, ok = laplace_approximation(guide)
    if not ok:
        return candidates
    params = guide.laplace_init_params(svi.get_params(state), loc, cov)
    # AutoEMF's params carry no constraint: a fresh optimiser state at the new values is what
    # ``svi.init(..., init_params=params)`` returns, without re-tracing guide/model
    optim_state = run_once_jit(svi.optim.init)(params)
    laplace = SVIState(optim_state, state.mutable_state, state.rng_key)
    return {"laplace": laplace} if init == "laplace" else {**candidates, "laplace": laplace}


def pilot(run_chunk, candidates: dict) -> tuple[str, dict, Any]:
    """One training chunk from each starting state when there are several: the one whose chunk
    ends at the lowest loss (median of its last quarter; a non-finite loss rules a start out)
    is kept, with that chunk's result as training's first chunk. Returns the name, the pilot
    ELBO estimates by name, and the kept chunk's result (None without a pilot)."""
    if len(candidates) == 1:
        return next(iter(candidates)), {}, None
    results, scores = {}, {}
    for name, state in candidates.items():
        results[name] = run_chunk(state)
        losses = np.asarray(results[name][1])
        tail = losses[-max(len(losses) // 4, 1) :]
        scores[name] = -float(np.median(tail)) if np.all(np.isfinite(losses)) else -np.inf
    chosen = max(scores, key=scores.get)
    return chosen, scores, results[chosen]


def replaying(run_chunk, first):
    """``run_chunk`` that returns ``first`` (a pilot chunk's result) on its first call."""
    pending = [] if first is None else [first]

    def run(state):
        return pending.pop() if pending else run_chunk(state)

    return run


def format_scores(scores: dict) -> str:
    return ", ".join(f"{k}: ELBO {v:.2f}" for k, v in scores.items())


def laplace_approximation(guide: AutoEMF, maxiter: int = 5000):
    """MAP and inverse-Hessian covariance of the posterior in the guide's unconstrained packing
    order (L-BFGS from the guide's initial point; eigenvalues floored for a positive definite
    covariance). Where a plate subsamples, the potential is that of one fixed minibatch (seed
    0) scaled to the full data: a start of the posterior's scale, near its mode."""
    data, static = eqx.partition((guide._model_args, guide._model_kwargs), is_data)
    model = handlers.seed(guide.model, 0)

    def pot(flat, data):
        a, k = eqx.combine(data, static)
        return potential_energy(model, a, k, guide._unpack_latent(flat))

    vg = run_once_jit(jax.value_and_grad(pot))
    x0 = np.asarray(guide._init_latent, dtype=np.float64)

    def fun(x):
        v, g = vg(jnp.asarray(x, dtype=guide._init_latent.dtype), data)
        return float(v), np.asarray(g, dtype=np.float64)

    res = scipy.optimize.minimize(
        fun, x0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter}
    )
    loc = np.asarray(res.x, dtype=guide._init_latent.dtype)
    loc, cov, ok = _laplace_covariance(pot, loc, data)
    # an unconverged L-BFGS point is still a far better start than the default: keep it if finite
    return loc, cov, bool(ok)


def _laplace_covariance(pot, loc, data):
    """Inverse Hessian of ``pot(·, data)`` at ``loc`` (eigenvalues floored) and a finiteness
    flag, as one program compiled for a single run."""

    def cov_at(loc, data):
        try:
            hess = jax.hessian(pot)(loc, data)
        except TypeError:  # a custom_vjp inside the model (e.g. odeint): reverse over reverse
            hess = jax.jacrev(jax.grad(pot))(loc, data)
        w, v = jnp.linalg.eigh(0.5 * (hess + hess.T))
        w = jnp.clip(w, 1e-6 * jnp.max(jnp.abs(w)) + 1e-12)
        cov = (v / w) @ v.T
        return loc, cov, jnp.all(jnp.isfinite(loc)) & jnp.all(jnp.isfinite(cov))

    return run_once_jit(cov_at)(loc, data)

"""ELBO estimators of ``fit_vi``: NumPyro's trace ELBO summed in a fixed order, the
sticking-the-landing ELBO (Roeder, Wu & Duvenaud 2017) for any reparametrised NumPyro guide, and
the Rényi α-bound with doubly reparametrised gradients (the mass-covering refinement).

NumPyro's ``Trace_ELBO`` sums its per-site terms over a Python ``set`` of site names, whose
order changes with the process's string-hash seed, so the same fit differs in the last bits
from one process to the next; :class:`OrderedTraceELBO` sums in trace order.

The estimate is the usual ELBO, log p(x, y) − log q_θ(x) with x = T_θ(ε), but log q is scored with
the guide's parameters stopped: only the path x(θ) carries gradient. The dropped score-function
term has zero expectation, so the gradient stays unbiased, and its variance vanishes as q → p.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.infer.elbo import ELBO
from numpyro.infer.util import log_density


class OrderedTraceELBO(ELBO):
    """``Trace_ELBO`` (the same draws for the same key: guide and model seeded by the two halves
    of ``random.split(key)``) with log p and log q summed in trace order, so a fit gives the
    same bits in every process. Mutable state (``numpyro.mutable``) is not carried."""

    def _log_q(self, guide, key, args, kwargs, param_map):
        """log q of one guide draw, and the draw's trace."""
        return log_density(handlers.seed(guide, key), args, kwargs, param_map)

    def _log_weight(self, key, param_map, model, guide, args, kwargs):
        """log p − log q of one particle (guide and model seeded by the halves of ``key``)."""
        model_key, guide_key = jax.random.split(key)
        log_q, guide_trace = self._log_q(guide, guide_key, args, kwargs, param_map)
        replayed = handlers.replay(handlers.seed(model, model_key), guide_trace)
        log_p, _ = log_density(replayed, args, kwargs, param_map)
        return log_p - log_q

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        def single_particle_elbo(key):
            return self._log_weight(key, param_map, model, guide, args, kwargs)

        if self.num_particles == 1:
            elbo = single_particle_elbo(rng_key)
        else:
            keys = jax.random.split(rng_key, self.num_particles)
            elbo = jnp.mean(self.vectorize_particles_fn(single_particle_elbo, keys))
        return {"loss": -elbo, "mutable_state": None}


class StickingTheLandingELBO(OrderedTraceELBO):
    """Trace ELBO with the sticking-the-landing gradient; a drop-in for ``Trace_ELBO`` in ``SVI``.

    Guides must be reparametrised (every latent site's draw a differentiable function of the
    parameters), as for NumPyro's autoguides and :class:`~bayesflow_nets.AutoEMF`. The loss
    values equal ``Trace_ELBO``'s for the same key; only the gradients differ.
    """

    def _log_q(self, guide, key, args, kwargs, param_map):
        seeded = handlers.seed(handlers.substitute(guide, data=param_map), key)
        guide_trace = handlers.trace(seeded).get_trace(*args, **kwargs)
        # q scored at the (differentiable) draws with the parameters held fixed
        frozen = jax.lax.stop_gradient(param_map)
        log_q, _ = log_density(handlers.replay(guide, guide_trace), args, kwargs, frozen)
        return log_q, guide_trace


def _tempering(w, beta_max, min_ess, iters: int = 20):
    """The largest β in [0, ``beta_max``] with ESS(softmax(β w)) ≥ ``min_ess`` (bisection; the
    ESS falls as β grows)."""

    def ess(beta):
        p = jax.nn.softmax(beta * (w - jnp.max(w)))
        return 1.0 / jnp.sum(p**2)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = ess(mid) >= min_ess
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, iters, body, (jnp.zeros_like(beta_max), beta_max))
    return jnp.where(ess(beta_max) >= min_ess, beta_max, lo)


class RenyiELBO(OrderedTraceELBO):
    """Rényi's α-bound (Li & Turner 2016) over the particles, (1 / (1 − α)) log mean exp((1 − α)
    w_i) with w_i = log p − log q of particle i. With ŵ = softmax((1 − α) w), the reparametrised
    gradient is Σ_i ŵ_i ∇w_i; with ``dreg=True`` the doubly reparametrised one (Tucker et al.
    2019), Σ_i (α ŵ_i + (1 − α) ŵ_i²) ∂w_i/∂x_i ∂x_i/∂θ, which scores q with the parameters
    stopped as :class:`StickingTheLandingELBO` does (an inverse pass of the guide's flow).
    α < 1 weighs the particles where q is too light, which widens q where it under-covers p
    (α = 0: the importance-weighted bound). ``min_ess``: a fraction ρ; at each step the order
    moves toward 1 (the ELBO) as far as needed for the effective sample size of ŵ to reach
    ρ·K, so that in many dimensions, where one particle would take all the weight, the step
    stays an ELBO step. The loss value is the usual −ELBO, so chunk means compare with the
    other estimators'."""

    def __init__(
        self,
        num_particles: int = 16,
        alpha: float = 0.5,
        *,
        dreg: bool = False,
        min_ess: float | None = None,
    ):
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha < 1:
            raise ValueError(f"argument 'alpha' must be a number in [0, 1), got {alpha!r}.")
        if num_particles < 2:
            raise ValueError(f"argument 'num_particles' must be >= 2, got {num_particles!r}.")
        super().__init__(num_particles=num_particles)
        self.alpha = float(alpha)
        self.dreg = bool(dreg)
        if min_ess is not None and not 0 < min_ess <= 1:
            raise ValueError(f"argument 'min_ess' must be None or in (0, 1], got {min_ess!r}.")
        self.min_ess = min_ess

    def _log_q(self, guide, key, args, kwargs, param_map):
        if self.dreg:
            return StickingTheLandingELBO._log_q(self, guide, key, args, kwargs, param_map)
        return super()._log_q(guide, key, args, kwargs, param_map)

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        def log_weight(key):
            return self._log_weight(key, param_map, model, guide, args, kwargs)

        w = self.vectorize_particles_fn(log_weight, jax.random.split(rng_key, self.num_particles))
        beta = (1.0 - self.alpha) * jnp.ones_like(w[0])
        if self.min_ess is not None:
            beta = _tempering(jax.lax.stop_gradient(w), beta, self.min_ess * self.num_particles)
        w_hat = jax.nn.softmax(beta * jax.lax.stop_gradient(w))
        if self.dreg:
            coef = (1.0 - beta) * w_hat + beta * w_hat**2
        else:
            coef = w_hat
        surrogate = jnp.sum(coef * w)
        # value −mean(w); gradient that of −surrogate
        loss = -jax.lax.stop_gradient(jnp.mean(w)) - (surrogate - jax.lax.stop_gradient(surrogate))
        return {"loss": loss, "mutable_state": None}


__all__ = ["OrderedTraceELBO", "RenyiELBO", "StickingTheLandingELBO"]

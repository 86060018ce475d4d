"""ELBO estimators of ``fit_vi``: NumPyro's trace ELBO summed in a fixed order, and the
sticking-the-landing ELBO (Roeder, Wu & Duvenaud 2017) for any reparametrised NumPyro guide.

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

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        def single_particle_elbo(key):
            model_key, guide_key = jax.random.split(key)
            log_q, guide_trace = self._log_q(guide, guide_key, args, kwargs, param_map)
            replayed = handlers.replay(handlers.seed(model, model_key), guide_trace)
            log_p, _ = log_density(replayed, args, kwargs, param_map)
            return log_p - log_q

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


__all__ = ["OrderedTraceELBO", "StickingTheLandingELBO"]

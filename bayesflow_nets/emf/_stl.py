"""Sticking-the-landing ELBO (Roeder, Wu & Duvenaud 2017) for any reparametrised NumPyro guide.

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


class StickingTheLandingELBO(ELBO):
    """Trace ELBO with the sticking-the-landing gradient; a drop-in for ``Trace_ELBO`` in ``SVI``.

    Guides must be reparametrised (every latent site's draw a differentiable function of the
    parameters), as for NumPyro's autoguides and :class:`~bayesflow_nets.AutoEMF`. The loss
    values equal ``Trace_ELBO``'s for the same key; only the gradients differ.
    """

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        frozen = jax.lax.stop_gradient(param_map)

        def single_particle_elbo(key):
            seeded = handlers.seed(handlers.substitute(guide, data=param_map), key)
            guide_trace = handlers.trace(seeded).get_trace(*args, **kwargs)
            # q scored at the (differentiable) draws with the parameters held fixed
            log_q, _ = log_density(handlers.replay(guide, guide_trace), args, kwargs, frozen)
            log_p, _ = log_density(handlers.replay(model, guide_trace), args, kwargs, param_map)
            return log_p - log_q

        if self.num_particles == 1:
            elbo = single_particle_elbo(rng_key)
        else:
            keys = jax.random.split(rng_key, self.num_particles)
            elbo = jnp.mean(self.vectorize_particles_fn(single_particle_elbo, keys))
        return {"loss": -elbo, "mutable_state": None}


__all__ = ["StickingTheLandingELBO"]

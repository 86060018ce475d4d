"""NumPyro likelihood over the contrasts of an improper GP (MATH.md §3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints

from . import _dense

__all__ = ["ContrastNormal"]


class ContrastNormal(dist.Distribution):
    """``y`` with REML density ``log N(Qᵀy; 0, QᵀKQ)`` (flat level; invariant to the level).

    ``sample`` draws the level-free part ``Q L ε`` (sum-zero draws: the level is arbitrary).
    Built by :meth:`ImproperGP.numpyro_dist`.
    """

    arg_constraints = {}
    support = constraints.real_vector
    pytree_aux_fields = ("gp", "method")

    def __init__(self, gp, method: str = "contrast"):
        self.gp = gp
        self.method = method
        super().__init__(batch_shape=(), event_shape=(gp.n,))

    def log_prob(self, value):
        return self.gp._log_marginal_likelihood(jnp.asarray(value), self.method)[0]

    def sample(self, key, sample_shape=()):
        factor = _dense.contrast_factor(self.gp.gram(), basis="householder")
        n = self.gp.n
        eps = jax.random.normal(key, tuple(sample_shape) + (n - 1,), dtype=factor.chol.dtype)
        flat = eps.reshape(-1, n - 1)
        z = factor.chol @ flat.T  # (n-1, s)
        y = _dense.contrast_lift(z).T
        return y.reshape(tuple(sample_shape) + (n,))

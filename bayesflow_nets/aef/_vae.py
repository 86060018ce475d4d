"""VAE baseline with the AEF's encoder/decoder and preprocessing: ELBO training, IWAE testing."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._custom_types import Shape
from ..bijectors import AbstractBijector
from ._common import (
    apply_preprocess,
    as_flow,
    as_preprocess,
    batch_of,
    check_draws,
    check_heldout,
    check_net,
    check_shape,
    density_arviz,
    flow_forward,
    flow_inverse,
    invert_preprocess,
    normal_logpdf,
    std_normal_logpdf,
)


class VAE(eqx.Module):
    """Gaussian VAE on the preprocessed image y: q(z|y) = N(μ_φ(y), σ_φ(y)²), p(y|z) = N(μ_θ(z), σ_θ(z)²).

    log p(x) = log p(y) + preprocessing log-det; trained by the ELBO (:meth:`objective`), tested by
    the importance-weighted bound :meth:`log_prob_iwae` (MATH.md §2, baseline). The prior is
    N(0, I), or its push-forward z = h(z₀) through an optional ``prior_flow`` h (as in the AEFs).
    """

    encoder: eqx.Module
    decoder: eqx.Module
    preprocess: AbstractBijector | None
    prior_flow: AbstractBijector | None
    shape: Shape = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(
        self,
        encoder: eqx.Module,
        decoder: eqx.Module,
        shape: Shape,
        latent_dim: int,
        *,
        preprocess: str | AbstractBijector | None = "logit",
        prior_flow=None,
    ):
        shape = check_shape(shape)
        if not (isinstance(latent_dim, int) and latent_dim >= 1):
            raise ValueError(f"argument 'latent_dim' must be an int >= 1, got {latent_dim!r}.")
        check_net("encoder", encoder, shape, (latent_dim,))
        check_net("decoder", decoder, (latent_dim,), shape)
        self.encoder = encoder
        self.decoder = decoder
        self.preprocess = as_preprocess(preprocess, shape)
        self.prior_flow = as_flow("prior_flow", prior_flow, latent_dim)
        self.shape = shape
        self.latent_dim = latent_dim

    def _log_weights(self, x: Array, key: PRNGKeyArray, num_samples: int) -> Array:
        """log p(y, z_k) − log q(z_k | y) + preprocessing log-det for z_k ~ q."""
        y, ld_pre = apply_preprocess(self.preprocess, x)
        mu, sigma = self.encoder(y)
        z = mu + sigma * jax.random.normal(key, (num_samples, self.latent_dim), mu.dtype)

        def one(zk):
            mu_d, sigma_d = self.decoder(zk)
            z0, ld_h = flow_inverse(self.prior_flow, zk)
            return (
                normal_logpdf(y, mu_d, sigma_d)
                + std_normal_logpdf(z0)
                + ld_h
                - normal_logpdf(zk, mu, sigma)
            )

        return jax.vmap(one)(z) + ld_pre

    def _per_image(self, x, key, fn):
        flat, batch = batch_of("x", x, self.shape, unit_range=self.preprocess is not None)
        keys = jax.random.split(key, flat.shape[0])
        return jax.vmap(fn)(flat, keys).reshape(batch)

    def elbo(self, key: PRNGKeyArray, x: ArrayLike) -> Array:
        """One-sample reparametrised ELBO per image (images in [0, 1])."""
        return self._per_image(x, key, lambda xi, ki: self._log_weights(xi, ki, 1)[0])

    def objective(self, key: PRNGKeyArray, x: ArrayLike) -> Array:
        """Per-image training objective: the ELBO."""
        return self.elbo(key, x)

    def log_prob_iwae(self, x: ArrayLike, key: PRNGKeyArray, num_samples: int = 128) -> Array:
        """IWAE estimate logsumexp_k log w_k − log K of log p(x) (a lower bound in expectation)."""
        if not (isinstance(num_samples, int) and num_samples >= 1):
            raise ValueError(f"argument 'num_samples' must be an int >= 1, got {num_samples!r}.")

        def one(xi, ki):
            return jax.nn.logsumexp(self._log_weights(xi, ki, num_samples)) - jnp.log(num_samples)

        return self._per_image(x, key, one)

    def reconstruct(self, x: ArrayLike) -> Array:
        """Decoder mean at the encoder mean, mapped back to [0, 1]."""
        flat, batch = batch_of("x", x, self.shape, unit_range=self.preprocess is not None)

        def one(xi):
            y, _ = apply_preprocess(self.preprocess, xi)
            return invert_preprocess(self.preprocess, self.decoder(self.encoder(y)[0])[0])

        return jax.vmap(one)(flat).reshape(batch + self.shape)

    def sample(
        self, key: PRNGKeyArray, n: int, temperature: float = 1.0, *, deviations: bool = False
    ) -> Array:
        """``n`` images from z = h(z₀), z₀ ~ N(0, T²I): the decoder mean, plus σ_θ ε if ``deviations``."""
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"argument 'n' must be an int >= 1, got {n!r}.")
        k1, k2 = jax.random.split(key)
        z = temperature * jax.random.normal(k1, (n, self.latent_dim))
        eps = temperature * jax.random.normal(k2, (n,) + self.shape)

        def one(zk, ek):
            mu_d, sigma_d = self.decoder(flow_forward(self.prior_flow, zk))
            y = mu_d + sigma_d * ek if deviations else mu_d
            return invert_preprocess(self.preprocess, y)

        return jax.vmap(one)(z, eps)

    def to_arviz(
        self,
        x: ArrayLike,
        key: PRNGKeyArray | None = None,
        n: int = 64,
        *,
        num_samples: int = 128,
        temperature: float = 1.0,
        deviations: bool = False,
    ):
        """The fitted model as ``arviz.InferenceData``, scored on held-out images ``x``.

        As ``PartitionAEF.to_arviz``, with ``log_likelihood["x"]`` the IWAE estimate
        :meth:`log_prob_iwae` (``num_samples``; a lower bound in expectation). No posterior
        group: a trained VAE is a point estimate; ``az.waic`` gives the held-out elpd.
        """
        n = check_draws(n)
        x = check_heldout(self, x)
        if not (isinstance(num_samples, int) and num_samples >= 1):
            raise ValueError(f"argument 'num_samples' must be an int >= 1, got {num_samples!r}.")
        key = jax.random.PRNGKey(0) if key is None else key
        k_ll, k_draw = jax.random.split(key)
        log_lik = eqx.filter_jit(lambda m, v, k: m.log_prob_iwae(v, k, num_samples))(
            self, x, k_ll
        )
        draws = eqx.filter_jit(
            lambda m, k: m.sample(k, n, temperature, deviations=deviations)
        )(self, k_draw)
        return density_arviz(self, x, draws, log_lik, f"IWAE (K={num_samples})")


__all__ = ["VAE"]

"""Expansion-family AEF: auxiliary w, training on log p(x, Wx), importance-sampled test log p(x)."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
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
from ._data import check_unit_interval


def _check_k(num_samples) -> int:
    if not (isinstance(num_samples, int) and num_samples >= 1):
        raise ValueError(f"argument 'num_samples' must be an int >= 1, got {num_samples!r}.")
    return num_samples


def _check_scale(scale) -> float:
    if not (isinstance(scale, int | float) and scale > 0):
        raise ValueError(f"argument 'scale' must be a positive float, got {scale!r}.")
    return float(scale)


class ExpansionAEF(eqx.Module):
    """Expansion AEF (MATH.md §2): (x, w) ↦ (z₀, e) is a bijection R^{D+d} → R^{d+D}.

    u = g⁻¹(w), z = μ_φ(x) + σ_φ(x) ⊙ u, e = (x − μ_θ(z)) / σ_θ(z) over all D entries, z₀ = h⁻¹(z);
    the encoder sees the whole (preprocessed) image. Trained on log p(x, w = W y) with a learnable
    linear ``W`` (y the preprocessed image, flattened); tested with :meth:`log_prob_is`.
    """

    encoder: eqx.Module
    decoder: eqx.Module
    W: Array
    preprocess: AbstractBijector | None
    core_flow: AbstractBijector | None
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
        key: PRNGKeyArray,
        preprocess: str | AbstractBijector | None = "logit",
        core_flow=None,
        prior_flow=None,
    ):
        shape = check_shape(shape)
        if not (isinstance(latent_dim, int) and latent_dim >= 1):
            raise ValueError(f"argument 'latent_dim' must be an int >= 1, got {latent_dim!r}.")
        check_net("encoder", encoder, shape, (latent_dim,))
        check_net("decoder", decoder, (latent_dim,), shape)
        size = int(np.prod(shape))
        self.encoder = encoder
        self.decoder = decoder
        self.W = jax.random.normal(key, (latent_dim, size)) / np.sqrt(size)
        self.preprocess = as_preprocess(preprocess, shape)
        self.core_flow = as_flow("core_flow", core_flow, latent_dim)
        self.prior_flow = as_flow("prior_flow", prior_flow, latent_dim)
        self.shape = shape
        self.latent_dim = latent_dim

    # ----------------------------------------------------------- single-sample maps
    def _forward_y(self, y: Array, w: Array) -> tuple[Array, Array, Array]:
        """(y, w) ↦ (z₀, e, log|det|) on the preprocessed image y."""
        u, ld_g = flow_inverse(self.core_flow, w)
        mu_e, sigma_e = self.encoder(y)
        z = mu_e + sigma_e * u
        mu_d, sigma_d = self.decoder(z)
        e = ((y - mu_d) / sigma_d).ravel()
        z0, ld_h = flow_inverse(self.prior_flow, z)
        log_det = ld_g + jnp.sum(jnp.log(sigma_e)) - jnp.sum(jnp.log(sigma_d)) + ld_h
        return z0, e, log_det

    def _forward(self, x: Array, w: Array) -> tuple[Array, Array, Array]:
        y, ld_pre = apply_preprocess(self.preprocess, x)
        z0, e, ld = self._forward_y(y, w)
        return z0, e, ld + ld_pre

    def _inverse(self, z0: Array, e: Array) -> tuple[Array, Array]:
        z = flow_forward(self.prior_flow, z0)
        mu_d, sigma_d = self.decoder(z)
        y = mu_d + sigma_d * e.reshape(self.shape)
        mu_e, sigma_e = self.encoder(y)
        w = flow_forward(self.core_flow, (z - mu_e) / sigma_e)
        return invert_preprocess(self.preprocess, y), w

    def _joint_y(self, y: Array, w: Array) -> Array:
        z0, e, ld = self._forward_y(y, w)
        return std_normal_logpdf(z0) + std_normal_logpdf(e) + ld

    def _train_log_prob(self, x: Array) -> Array:
        y, ld_pre = apply_preprocess(self.preprocess, x)
        return self._joint_y(y, self.W @ y.ravel()) + ld_pre

    def _log_prob_is(self, x: Array, key: PRNGKeyArray, num_samples: int, scale: float) -> Array:
        y, ld_pre = apply_preprocess(self.preprocess, x)
        mean = self.W @ y.ravel()
        w = mean + scale * jax.random.normal(key, (num_samples, self.latent_dim), mean.dtype)
        log_q = jax.vmap(lambda wk: normal_logpdf(wk, mean, jnp.full_like(mean, scale)))(w)
        log_p = jax.vmap(lambda wk: self._joint_y(y, wk))(w)
        return jax.nn.logsumexp(log_p - log_q) - jnp.log(num_samples) + ld_pre

    # ----------------------------------------------------------- public, batched
    def _batched_w(self, w, batch):
        w = jnp.asarray(w)
        if w.shape != batch + (self.latent_dim,):
            raise ValueError(f"argument 'w' must have shape {batch + (self.latent_dim,)}, "
                             f"got {w.shape}.")
        return w.reshape(-1, self.latent_dim)

    def log_prob_joint(self, x: ArrayLike, w: ArrayLike) -> Array:
        """Exact joint log p(x, w) of images in [0, 1] and auxiliary w ∈ R^d (batched)."""
        flat, batch = batch_of("x", x, self.shape, unit_range=self.preprocess is not None)
        wf = self._batched_w(w, batch)

        def one(xi, wi):
            z0, e, ld = self._forward(xi, wi)
            return std_normal_logpdf(z0) + std_normal_logpdf(e) + ld

        return jax.vmap(one)(flat, wf).reshape(batch)

    def training_log_prob(self, x: ArrayLike) -> Array:
        """The training objective log p(x, w = W y) per image (not a normalised density of x)."""
        flat, batch = batch_of("x", x, self.shape, unit_range=self.preprocess is not None)
        return jax.vmap(self._train_log_prob)(flat).reshape(batch)

    def objective(self, key: PRNGKeyArray, x: ArrayLike) -> Array:
        """Per-image training objective log p(x, W y) (``key`` unused)."""
        return self.training_log_prob(x)

    def log_prob_is(
        self, x: ArrayLike, key: PRNGKeyArray, num_samples: int = 128, scale: float = 0.1
    ) -> Array:
        """Importance-sampled log p(x) with q(w | x) = N(W y, scale² I) and K = ``num_samples``.

        log p̂(x) = logsumexp_k [log p(x, w_k) − log q(w_k | x)] − log K (MATH.md §2; the −log K
        term is included). A stochastic lower bound in expectation (Jensen), tight as K → ∞.
        """
        num_samples, scale = _check_k(num_samples), _check_scale(scale)
        flat, batch = batch_of("x", x, self.shape, unit_range=self.preprocess is not None)
        keys = jax.random.split(key, flat.shape[0])
        out = jax.vmap(lambda xi, ki: self._log_prob_is(xi, ki, num_samples, scale))(flat, keys)
        return out.reshape(batch)

    def encode_and_log_det(self, x: ArrayLike, w: ArrayLike) -> tuple[Array, Array, Array]:
        """The bijection (x, w) ↦ (z₀, e) and its log|det J| (batched)."""
        flat, batch = batch_of("x", x, self.shape, unit_range=self.preprocess is not None)
        wf = self._batched_w(w, batch)
        z0, e, ld = jax.vmap(self._forward)(flat, wf)
        return z0.reshape(batch + (self.latent_dim,)), e.reshape(batch + e.shape[-1:]), \
            ld.reshape(batch)

    def encode(self, x: ArrayLike, w: ArrayLike | None = None) -> tuple[Array, Array]:
        """(x, w) ↦ (z₀, e); ``w=None`` uses w = W y."""
        flat, batch = batch_of("x", x, self.shape, unit_range=self.preprocess is not None)
        if w is None:
            y = jax.vmap(lambda xi: apply_preprocess(self.preprocess, xi)[0])(flat)
            w = (y.reshape(y.shape[0], -1) @ self.W.T).reshape(batch + (self.latent_dim,))
        z0, e, _ = self.encode_and_log_det(x, w)
        return z0, e

    def decode(self, z0: ArrayLike, e: ArrayLike | None = None) -> tuple[Array, Array]:
        """(z₀, e) ↦ (x, w); ``e=None`` uses zero deviations (the decoder mean)."""
        z0 = jnp.asarray(z0)
        d, size = self.latent_dim, int(np.prod(self.shape))
        if z0.ndim < 1 or z0.shape[-1] != d:
            raise ValueError(f"argument 'z0' must have trailing dimension {d}, got {z0.shape}.")
        batch = z0.shape[:-1]
        e = jnp.zeros(batch + (size,), z0.dtype) if e is None else jnp.asarray(e)
        if e.shape != batch + (size,):
            raise ValueError(f"argument 'e' must have shape {batch + (size,)}, got {e.shape}.")
        x, w = jax.vmap(self._inverse)(z0.reshape(-1, d), e.reshape(-1, size))
        return x.reshape(batch + self.shape), w.reshape(batch + (d,))

    def reconstruct(self, x: ArrayLike) -> Array:
        """Autoencode with w = W y and zero deviations."""
        return self.decode(self.encode(x)[0])[0]

    def sample(
        self, key: PRNGKeyArray, n: int, temperature: float = 1.0, *, deviations: bool = True
    ) -> Array:
        """``n`` images: z₀ ~ N(0, T²I), e ~ N(0, T²I) (or e = 0), decoded; w is discarded."""
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"argument 'n' must be an int >= 1, got {n!r}.")
        if not (isinstance(temperature, int | float) and temperature >= 0):
            raise ValueError(f"argument 'temperature' must be a float >= 0, got {temperature!r}.")
        k1, k2 = jax.random.split(key)
        z0 = temperature * jax.random.normal(k1, (n, self.latent_dim))
        e = temperature * jax.random.normal(k2, (n, int(np.prod(self.shape))))
        return self.decode(z0, e if deviations else None)[0]

    def to_arviz(
        self,
        x: ArrayLike,
        key: PRNGKeyArray | None = None,
        n: int = 64,
        *,
        num_samples: int = 128,
        scale: float = 0.1,
        temperature: float = 1.0,
    ):
        """The fitted model as ``arviz.InferenceData``, scored on held-out images ``x``.

        As :meth:`PartitionAEF.to_arviz`, with ``log_likelihood["x"]`` the importance-sampled
        :meth:`log_prob_is` (``num_samples``, ``scale``; a stochastic lower bound in
        expectation, recorded in ``attrs["log_likelihood_estimator"]``). No posterior group: a
        trained AEF is a point estimate; ``az.waic`` gives the held-out elpd.
        """
        n = check_draws(n)
        x = check_heldout(self, x)
        num_samples, scale = _check_k(num_samples), _check_scale(scale)
        key = jax.random.PRNGKey(0) if key is None else key
        k_ll, k_draw = jax.random.split(key)
        log_lik = eqx.filter_jit(lambda m, v, k: m.log_prob_is(v, k, num_samples, scale))(
            self, x, k_ll
        )
        draws = eqx.filter_jit(lambda m, k: m.sample(k, n, temperature))(self, k_draw)
        return density_arviz(
            self, x, draws, log_lik, f"importance sampling (K={num_samples}, scale={scale})"
        )


def select_is_scale(
    model: ExpansionAEF,
    key: PRNGKeyArray,
    x_val: ArrayLike,
    scales: Sequence[float] = (0.01, 0.03, 0.1, 0.3, 1.0),
    num_samples: int = 128,
) -> tuple[float, dict[float, float]]:
    """Pick the proposal scale of :meth:`ExpansionAEF.log_prob_is` on validation images.

    Returns the scale with the highest mean estimated log-likelihood and the mean per scale.
    Use the same key for every scale (common random numbers) and never the test set.
    """
    if not isinstance(model, ExpansionAEF):
        raise TypeError(f"argument 'model' must be an ExpansionAEF, got {type(model)}.")
    if not scales:
        raise ValueError("argument 'scales' must be a non-empty sequence of positive floats.")
    if model.preprocess is not None:
        check_unit_interval("x_val", x_val)
    num_samples = _check_k(num_samples)
    flat, _ = batch_of("x_val", x_val, model.shape, unit_range=False)
    keys = jax.random.split(key, flat.shape[0])

    @eqx.filter_jit
    def mean_log_prob(m, s):  # the scale is traced: one compilation for every scale
        lp = jax.vmap(lambda xi, ki: m._log_prob_is(xi, ki, num_samples, s))(flat, keys)
        return jnp.mean(lp)

    means = {}
    for s in scales:
        s = _check_scale(s)
        means[s] = float(mean_log_prob(model, jnp.asarray(s, flat.dtype)))
    best = max(means, key=lambda s: means[s] if np.isfinite(means[s]) else -np.inf)
    return best, means


__all__ = ["ExpansionAEF", "select_is_scale"]

"""Partition-family autoencoder within a flow: exact maximum likelihood (MATH.md §2)."""

from __future__ import annotations

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
    std_normal_logpdf,
)
from ._masks import core_indices


class PartitionAEF(eqx.Module):
    """Partition AEF: x ↦ (z₀, e) is a bijection R^D → R^D with an exact log-likelihood.

    A mask splits the (preprocessed) image into a core x_c (d entries) and a shell x_s. With
    u = g⁻¹(x_c), z = μ_φ(x_s) + σ_φ(x_s) ⊙ u, e = (x_s − μ_θ(z)) / σ_θ(z) and z₀ = h⁻¹(z)
    (MATH.md §2), ``log_prob`` is exact. The encoder sees the preprocessed image with its core
    entries set to zero and returns (μ, σ) in R^d; the decoder maps z to image-shaped (μ, σ), of
    which the shell entries are used. ``g`` (``core_flow``) and ``h`` (``prior_flow``) are optional
    bijectors on R^d (or ``Transformed(StandardNormal((d,)), ·)`` flows); ``preprocess`` maps
    [0, 1] images to R^D ("logit": affine squash → logit → ActNorm).
    """

    encoder: eqx.Module
    decoder: eqx.Module
    preprocess: AbstractBijector | None
    core_flow: AbstractBijector | None
    prior_flow: AbstractBijector | None
    shape: Shape = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)
    core: tuple[int, ...] = eqx.field(static=True)
    shell: tuple[int, ...] = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(
        self,
        encoder: eqx.Module,
        decoder: eqx.Module,
        shape: Shape,
        latent_dim: int,
        *,
        mask: str | ArrayLike = "center",
        preprocess: str | AbstractBijector | None = "logit",
        core_flow=None,
        prior_flow=None,
    ):
        shape = check_shape(shape)
        core = core_indices(shape, latent_dim, mask)
        check_net("encoder", encoder, shape, (latent_dim,))
        check_net("decoder", decoder, (latent_dim,), shape)
        self.encoder = encoder
        self.decoder = decoder
        self.preprocess = as_preprocess(preprocess, shape)
        self.core_flow = as_flow("core_flow", core_flow, latent_dim)
        self.prior_flow = as_flow("prior_flow", prior_flow, latent_dim)
        self.shape = shape
        self.latent_dim = latent_dim
        self.core = core
        size = int(np.prod(shape))
        self.shell = tuple(int(i) for i in np.setdiff1d(np.arange(size), np.asarray(core)))

    # ----------------------------------------------------------- single-sample maps
    def _shell_image(self, y_flat: Array) -> Array:
        """The encoder's input: the preprocessed image with its core entries zeroed."""
        return y_flat.at[np.asarray(self.core)].set(0.0).reshape(self.shape)

    def _forward(self, x: Array) -> tuple[Array, Array, Array]:
        """x ↦ (z₀, e, log|det ∂(z₀, e)/∂x|), preprocessing included."""
        y, ld_pre = apply_preprocess(self.preprocess, x)
        flat = y.ravel()
        core, shell = np.asarray(self.core), np.asarray(self.shell)
        u, ld_g = flow_inverse(self.core_flow, flat[core])
        mu_e, sigma_e = self.encoder(self._shell_image(flat))
        z = mu_e + sigma_e * u
        mu_d, sigma_d = self.decoder(z)
        mu_s, sigma_s = mu_d.ravel()[shell], sigma_d.ravel()[shell]
        e = (flat[shell] - mu_s) / sigma_s
        z0, ld_h = flow_inverse(self.prior_flow, z)
        log_det = ld_pre + ld_g + jnp.sum(jnp.log(sigma_e)) - jnp.sum(jnp.log(sigma_s)) + ld_h
        return z0, e, log_det

    def _inverse(self, z0: Array, e: Array) -> Array:
        """(z₀, e) ↦ x (the inverse of ``_forward``)."""
        core, shell = np.asarray(self.core), np.asarray(self.shell)
        z = flow_forward(self.prior_flow, z0)
        mu_d, sigma_d = self.decoder(z)
        x_s = mu_d.ravel()[shell] + sigma_d.ravel()[shell] * e
        flat = jnp.zeros(int(np.prod(self.shape)), x_s.dtype).at[shell].set(x_s)
        mu_e, sigma_e = self.encoder(flat.reshape(self.shape))
        x_c = flow_forward(self.core_flow, (z - mu_e) / sigma_e)
        y = flat.at[core].set(x_c).reshape(self.shape)
        return invert_preprocess(self.preprocess, y)

    def _log_prob(self, x: Array) -> Array:
        z0, e, log_det = self._forward(x)
        return std_normal_logpdf(z0) + std_normal_logpdf(e) + log_det

    # ----------------------------------------------------------- public, batched
    def log_prob(self, x: ArrayLike) -> Array:
        """Exact log p(x) of images in [0, 1]; leading dims of ``x`` are batch dims."""
        flat, batch = batch_of("x", x, self.shape, unit_range=self.preprocess is not None)
        return jax.vmap(self._log_prob)(flat).reshape(batch)

    def objective(self, key: PRNGKeyArray, x: ArrayLike) -> Array:
        """Per-image training objective: the exact log-likelihood (``key`` unused)."""
        return self.log_prob(x)

    def encode_and_log_det(self, x: ArrayLike) -> tuple[Array, Array, Array]:
        """The bijection x ↦ (z₀ ∈ R^d, e ∈ R^{D−d}) and its log|det J| (batched)."""
        flat, batch = batch_of("x", x, self.shape, unit_range=self.preprocess is not None)
        z0, e, ld = jax.vmap(self._forward)(flat)
        return (
            z0.reshape(batch + (self.latent_dim,)),
            e.reshape(batch + e.shape[-1:]),
            ld.reshape(batch),
        )

    def encode(self, x: ArrayLike) -> tuple[Array, Array]:
        """x ↦ (z₀, e): latent code and shell deviations."""
        z0, e, _ = self.encode_and_log_det(x)
        return z0, e

    def decode(self, z0: ArrayLike, e: ArrayLike | None = None) -> Array:
        """(z₀, e) ↦ x; ``e=None`` uses zero shell deviations (the decoder mean)."""
        z0 = jnp.asarray(z0)
        d, n_shell = self.latent_dim, len(self.shell)
        if z0.ndim < 1 or z0.shape[-1] != d:
            raise ValueError(f"argument 'z0' must have trailing dimension {d}, got {z0.shape}.")
        batch = z0.shape[:-1]
        e = jnp.zeros(batch + (n_shell,), z0.dtype) if e is None else jnp.asarray(e)
        if e.shape != batch + (n_shell,):
            raise ValueError(f"argument 'e' must have shape {batch + (n_shell,)}, got {e.shape}.")
        x = jax.vmap(self._inverse)(z0.reshape(-1, d), e.reshape(-1, n_shell))
        return x.reshape(batch + self.shape)

    def reconstruct(self, x: ArrayLike) -> Array:
        """Autoencode: keep z₀ of ``x``, set the shell deviations e to zero, decode."""
        return self.decode(self.encode(x)[0])

    def sample(
        self,
        key: PRNGKeyArray,
        n: int,
        temperature: float = 1.0,
        *,
        deviations: bool = True,
    ) -> Array:
        """``n`` images: z₀ ~ N(0, T²I), e ~ N(0, T²I) (or e = 0 with ``deviations=False``)."""
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"argument 'n' must be an int >= 1, got {n!r}.")
        if not (isinstance(temperature, int | float) and temperature >= 0):
            raise ValueError(f"argument 'temperature' must be a float >= 0, got {temperature!r}.")
        k1, k2 = jax.random.split(key)
        z0 = temperature * jax.random.normal(k1, (n, self.latent_dim))
        e = temperature * jax.random.normal(k2, (n, len(self.shell)))
        return self.decode(z0, e if deviations else None)

    def to_arviz(
        self,
        x: ArrayLike,
        key: PRNGKeyArray | None = None,
        n: int = 64,
        *,
        temperature: float = 1.0,
    ):
        """The fitted model as ``arviz.InferenceData``, scored on held-out images ``x``.

        A trained AEF is a point estimate (no posterior group): ``posterior_predictive["x"]``
        holds ``n`` sampled images, ``log_likelihood["x"]`` the exact log p(x_i) of each held-out
        image (one draw; ``az.waic`` gives the held-out elpd, ``az.compare(..., ic="waic")``
        ranks models), ``observed_data["x"]`` the images; image axes are
        ``(channel, row, col)`` (see ``bayesflow_nets.infer.density_to_inference_data``).
        """
        n = check_draws(n)
        x = check_heldout(self, x)
        key = jax.random.PRNGKey(0) if key is None else key
        log_lik = eqx.filter_jit(lambda m, v: m.log_prob(v))(self, x)
        draws = eqx.filter_jit(lambda m, k: m.sample(k, n, temperature))(self, key)
        return density_arviz(self, x, draws, log_lik, "exact")


__all__ = ["PartitionAEF"]

"""Stage 1 (forward KL): amortised posterior ``q_φ(HP | Y)`` over delays, HRF dilations and noise
scales (MATH.md §4 step 1).

``q_φ(HP | Y) = Π_r q_φ(h_r | c_r(Y), h_<r)`` with ``h_r = (logit(d_r/d_max), log s_r, log σ_r)``
and a conditional flow shared by all nodes, chained over the nodes in a data-defined order so
relative delays can be expressed (see ``MeasurementPosterior``). The context ``c_r`` comes from
a permutation-equivariant summary network (DeepSets): per-node features of ``y_r`` (log scales,
autocorrelations), a
mean-pooled embedding of the cross-correlations of ``y_r`` with every other node, and the mean of
all nodes' embeddings. Permuting the nodes of ``Y`` permutes the contexts, so one trained posterior
serves any node ordering. Trained by maximising ``E log q_φ(HP | Y)`` on simulations from the prior
(``train_measurement_posterior``) with ``infer.fit_to_loss``: ``lax.scan`` chunks, optional
progress bar, resumable checkpoints.
"""

from __future__ import annotations

import math
import os
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ..bijectors import StandardNormal, coupling_flow
from ..infer import fit_to_loss
from ._model import CouplingModel, sample_prior, simulate
from ._reverse_kl import hp_from_unconstrained, hp_to_unconstrained

__all__ = [
    "SummaryNet",
    "MeasurementPosterior",
    "train_measurement_posterior",
    "node_features",
]


def _max_lag(model: CouplingModel) -> int:
    return max(3, int(math.ceil((model.max_delay + 4.0) / model.tr)))


def node_features(model: CouplingModel, Y: Float[Array, "T N"]) -> tuple[Array, Array]:
    """Per-node features ``(N, F)`` and pairwise cross-correlations ``(N, N, 2·lag+1)``."""
    lag = _max_lag(model)
    Y = Y - jnp.mean(Y, axis=0)
    sd = jnp.std(Y, axis=0) + 1e-8
    dsd = jnp.std(jnp.diff(Y, axis=0), axis=0) + 1e-8
    d2sd = jnp.std(jnp.diff(Y, n=2, axis=0), axis=0) + 1e-8
    Z = Y / sd
    T = Y.shape[0]
    # circular-free cross-correlation via zero-padded FFT
    nfft = 1 << (2 * T - 1).bit_length()
    Zf = jnp.fft.rfft(Z, n=nfft, axis=0)
    cc = (
        jnp.fft.irfft(Zf[:, :, None] * jnp.conj(Zf[:, None, :]), n=nfft, axis=0) / T
    )  # (nfft, N, N)
    lags = jnp.concatenate(
        [cc[-lag:], cc[: lag + 1]], axis=0
    )  # lags -lag..lag: corr(z_r(t+l), z_s(t))
    xcorr = jnp.transpose(lags, (1, 2, 0))  # (N, N, 2·lag+1)
    auto = jnp.diagonal(xcorr, axis1=0, axis2=1).T[:, lag + 1 :]  # (N, lag)
    own = jnp.concatenate(
        [
            jnp.stack(
                [jnp.log(sd), jnp.log(dsd) - jnp.log(sd), jnp.log(d2sd) - jnp.log(sd)], axis=-1
            ),
            auto,
        ],
        axis=-1,
    )
    return own, xcorr


class SummaryNet(eqx.Module):
    """Permutation-equivariant summary: contexts ``(N, out_dim)`` from ``Y (T, N)``."""

    own_net: eqx.nn.MLP
    pair_net: eqx.nn.MLP
    out_net: eqx.nn.MLP
    out_dim: int = eqx.field(static=True)

    def __init__(
        self, key: PRNGKeyArray, model: CouplingModel, *, width: int = 64, out_dim: int = 32
    ):
        lag = _max_lag(model)
        n_own = 3 + lag
        k1, k2, k3 = jax.random.split(key, 3)
        self.own_net = eqx.nn.MLP(n_own, width, width, 2, activation=jax.nn.gelu, key=k1)
        self.pair_net = eqx.nn.MLP(
            2 * n_own + 2 * (2 * lag + 1), width, width, 2, activation=jax.nn.gelu, key=k2
        )
        self.out_net = eqx.nn.MLP(3 * width, out_dim, width, 2, activation=jax.nn.gelu, key=k3)
        self.out_dim = out_dim

    def embed(self, model: CouplingModel, Y: Array) -> tuple[Array, Array, Array]:
        """Contexts ``(N, out_dim)``, pair embeddings ``(N, N, width)`` and log scales ``(N,)``."""
        own, xcorr = node_features(model, Y)
        n = own.shape[0]
        e_own = jax.vmap(self.own_net)(own)  # (N, W)

        def pair(r, s):
            feats = jnp.concatenate([own[r], own[s], xcorr[r, s], xcorr[s, r]])
            return self.pair_net(feats)

        idx = jnp.arange(n)
        e_pair = jax.vmap(lambda r: jax.vmap(lambda s: pair(r, s))(idx))(idx)  # (N, N, W)
        off = (1.0 - jnp.eye(n, dtype=e_pair.dtype))[:, :, None]
        pooled = jnp.sum(e_pair * off, axis=1) / max(n - 1, 1)
        glob = jnp.broadcast_to(jnp.mean(e_own, axis=0), e_own.shape)
        ctx = jax.vmap(self.out_net)(jnp.concatenate([e_own, pooled, glob], axis=-1))
        return ctx, e_pair, own[:, 0]

    def __call__(self, model: CouplingModel, Y: Array) -> Array:
        return self.embed(model, Y)[0]


class MeasurementPosterior(eqx.Module):
    """``q_φ(HP | Y)``: summary network + node-autoregressive conditional flow over standardised ``h_r``.

    Absolute delays are not identified (shifting every node's delay leaves a stationary series'
    distribution unchanged); relative delays are. A product of per-node marginals cannot
    express "``d_0 − d_1 ≈ 3.5``", so the nodes are chained in a data-defined order (ascending
    log standard deviation of ``y_r``, which permutes with the nodes): node ``r`` is conditioned
    on its context, a flag, and the mean over the earlier nodes ``s`` of ``g(h_s, e_rs, e_sr)``
    (``e`` the summary's pair embeddings). ``log q = Σ_r log q(h_r | c_r, h_<r)`` is exact and
    the model stays permutation-equivariant.
    """

    summary: SummaryNet
    cond_net: eqx.nn.MLP
    flow: eqx.Module
    model: CouplingModel = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        model: CouplingModel,
        *,
        summary_width: int = 64,
        context_dim: int = 32,
        flow_layers: int = 4,
        nn_width: int = 64,
        chain_dim: int = 16,
    ):
        if not isinstance(model, CouplingModel):
            raise TypeError(
                f"argument 'model' must be a CouplingModel, got {type(model).__name__}."
            )
        k1, k2, k3 = jax.random.split(key, 3)
        self.summary = SummaryNet(k1, model, width=summary_width, out_dim=context_dim)
        self.cond_net = eqx.nn.MLP(
            3 + 2 * summary_width, chain_dim, summary_width, 2, activation=jax.nn.gelu, key=k3
        )
        self.flow = coupling_flow(
            k2,
            base_dist=StandardNormal((3,)),
            cond_dim=context_dim + chain_dim + 1,
            flow_layers=flow_layers,
            nn_width=nn_width,
        )
        self.model = model

    def _standardisation(self, dtype):
        m = self.model
        loc = jnp.asarray([0.0, 0.0, math.log(m.noise_loc)], dtype)
        scale = jnp.asarray([1.8, m.hrf_scale_sd, m.noise_sd], dtype)
        return loc, scale

    def _contexts(self, ctx, e_pair, before, z):
        """Flow conditions ``(N, C')`` given standardised ``z (N, 3)`` of the earlier nodes."""
        pair_in = jnp.concatenate(
            [
                jnp.broadcast_to(z[None, :, :], e_pair.shape[:2] + (3,)),
                e_pair,
                jnp.swapaxes(e_pair, 0, 1),
            ],
            axis=-1,
        )  # [r, s] = (z_s, e_rs, e_sr)
        g = jax.vmap(jax.vmap(self.cond_net))(pair_in)  # (N, N, P)
        w = before.astype(g.dtype)
        cnt = jnp.sum(w, axis=1, keepdims=True)
        pooled = jnp.sum(w[:, :, None] * g, axis=1) / jnp.maximum(cnt, 1.0)
        return jnp.concatenate([ctx, pooled, (cnt > 0).astype(g.dtype)], axis=-1)

    def _chain(self, Y):
        ctx, e_pair, score = self.summary.embed(self.model, Y)
        rank = jnp.argsort(jnp.argsort(score))
        before = rank[None, :] < rank[:, None]  # before[r, s]: s precedes r
        return ctx, e_pair, rank, before

    def log_prob(
        self,
        Y: Float[Array, "T N"],
        delays: Float[Array, " N"],
        hrf_scale: Float[Array, " N"],
        noise: Float[Array, " N"],
    ) -> Float[Array, ""]:
        """``log q_φ(h | Y)`` in the unconstrained coordinates ``h = hp_to_unconstrained(HP)``."""
        ctx, e_pair, _, before = self._chain(Y)
        h = hp_to_unconstrained(self.model, delays, hrf_scale, noise)
        loc, scale = self._standardisation(h.dtype)
        z = (h - loc) / scale
        cond = self._contexts(ctx, e_pair, before, z)
        return jnp.sum(self.flow.log_prob(z, cond)) - h.shape[0] * jnp.sum(jnp.log(scale))

    def sample(
        self, key: PRNGKeyArray, Y: Float[Array, "T N"], n: int
    ) -> tuple[Float[Array, "K N"], Float[Array, "K N"], Float[Array, "K N"]]:
        """``n`` draws of ``(delays, hrf_scale, noise_scale)``, each ``(n, N)``, node by node."""
        ctx, e_pair, rank, before = self._chain(Y)
        n_nodes = ctx.shape[0]
        loc, scale = self._standardisation(ctx.dtype)

        def one(k):
            def body(j, z):
                cond = self._contexts(ctx, e_pair, before, z)
                new = self.flow.sample(jax.random.fold_in(k, j), (), cond)  # (N, 3)
                return jnp.where((rank == j)[:, None], jnp.clip(new, -6.0, 6.0), z)

            return jax.lax.fori_loop(0, n_nodes, body, jnp.zeros((n_nodes, 3), ctx.dtype))

        z = jax.vmap(one)(jax.random.split(key, n))  # (n, N, 3)
        return hp_from_unconstrained(self.model, loc + scale * z)


def _simulate_batch(key, model: CouplingModel, n_time: int, batch: int):
    def one(k):
        k1, k2 = jax.random.split(k)
        p = sample_prior(k1, model)
        _, Y = simulate(k2, p, model, n_time)
        return Y, p.delays, p.hrf_scale, p.noise_scale

    return jax.vmap(one)(jax.random.split(key, batch))


def _loss(post: MeasurementPosterior, key, n_time: int, batch: int) -> Array:
    Y, d, s, sig = _simulate_batch(key, post.model, n_time, batch)
    lp = jax.vmap(post.log_prob)(Y, d, s, sig)
    return -jnp.mean(lp) / post.model.n_nodes


def train_measurement_posterior(
    key: PRNGKeyArray,
    model: CouplingModel,
    n_time: int,
    *,
    steps: int = 2000,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    chunk_size: int = 100,
    posterior: MeasurementPosterior | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    progress: bool = True,
) -> tuple[MeasurementPosterior, Array]:
    """Train ``q_φ(HP | Y)`` by forward KL on fresh simulations (``steps × batch_size`` data sets).

    Returns the trained posterior and the per-step losses (``−E log q / N``); runs on
    ``infer.fit_to_loss`` (AdamW, cosine decay). A non-finite loss or gradient stops training
    with a ``RuntimeWarning`` naming the step; the posterior then has the last finite
    parameters and the losses end before that step. ``checkpoint``: a file path, written
    atomically after every ``checkpoint_every`` chunks; a call that finds it resumes to the
    same result as an uninterrupted run. A file written with other ``steps``, ``batch_size``,
    ``chunk_size``, ``n_time`` or ``learning_rate`` (or by an older version) raises ``ValueError``.
    """
    if not isinstance(model, CouplingModel):
        raise TypeError(f"argument 'model' must be a CouplingModel, got {type(model).__name__}.")
    if int(n_time) < model.min_time_points():
        raise ValueError(
            f"argument 'n_time'={n_time} too short for the delay/HRF range; need >= {model.min_time_points()}."
        )
    for name, v in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("chunk_size", chunk_size),
        ("checkpoint_every", checkpoint_every),
    ):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"argument {name!r} must be an int >= 1, got {v!r}.")
    if not (isinstance(learning_rate, int | float) and 0 < learning_rate < math.inf):
        raise ValueError(
            f"argument 'learning_rate' must be a finite positive float, got {learning_rate!r}."
        )
    n_time = int(n_time)
    k_init, k_train = jax.random.split(key)
    post = MeasurementPosterior(k_init, model) if posterior is None else posterior
    optimizer = optax.adamw(
        optax.cosine_decay_schedule(learning_rate, steps, alpha=0.1), weight_decay=1e-4
    )
    result = fit_to_loss(
        k_train,
        post,
        lambda q, k: _loss(q, k, n_time, batch_size),
        steps,
        optimizer=optimizer,
        chunk_size=chunk_size,
        progress=progress,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        checkpoint_options={
            "batch_size": batch_size,
            "n_time": n_time,
            "learning_rate": float(learning_rate),
        },
    )
    if result.status == "nonfinite":
        warnings.warn(
            f"stage-1 training stopped at step {result.stopped_at} of {steps}: {result.message}",
            RuntimeWarning,
            stacklevel=2,
        )
    return result.model, jnp.asarray(result.losses["train"])

"""Reverse-KL Gaussian VI (MATH.md §4 stage 2) and the plain reverse-KL baseline.

Stage 2: for each of K draws ``HP^(k)``, a full-rank Gaussian ``q(vec A | HP^(k), Y)`` maximises

    ELBO = E_q[log p(Y | A, HP^(k))] + E_q[log p(A)] + H[q]

with ``log p(Y | A, HP)`` the exact Kalman marginal (X integrated out), reparameterised MC
gradients and Adam; the K problems are solved together with ``jax.vmap``. The baseline
``reverse_kl_vi`` fits one full-rank Gaussian over everything, ``(vec A, unconstrained HP)``.
Loops are pure ``init``/``step`` functions over a NamedTuple state run in ``lax.scan`` chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jstats
import numpy as np
import optax
from jaxtyping import Array, Float, Key, PRNGKeyArray

from ._kalman import kalman_log_likelihood, whittle_log_likelihood
from ._model import CouplingModel, check_data, measurement_kernel

__all__ = [
    "GaussianVIState",
    "GaussianVIResult",
    "gaussian_vi_init",
    "gaussian_vi_step",
    "fit_gaussian_vi",
    "fit_conditional_couplings",
    "conditional_log_evidence",
    "reverse_kl_vi",
    "ReverseKLResult",
    "hp_to_unconstrained",
    "hp_from_unconstrained",
]


class GaussianVIState(NamedTuple):
    """``q = N(mean, L Lᵀ)`` with ``L = tril(raw, -1) + diag(softplus(diag raw))``."""

    mean: Array
    raw: Array
    opt_state: optax.OptState
    step: Array


class GaussianVIResult(NamedTuple):
    """Fitted Gaussian (leading batch dims when vmapped) and the loss trace (negative ELBO)."""

    mean: Array
    scale_tril: Array
    losses: Array
    finite: Array


def _tril(raw):
    d = raw.shape[-1]
    eye = jnp.eye(d, dtype=raw.dtype)
    diag = jax.nn.softplus(jnp.diagonal(raw, axis1=-2, axis2=-1))
    return jnp.tril(raw, -1) + eye * diag[..., None, :]


def _neg_elbo(params, key, logp, aux, n_mc):
    mean, raw = params
    L = _tril(raw)
    eps = jax.random.normal(key, (n_mc, mean.shape[0]), mean.dtype)
    z = mean + eps @ L.T
    lp = jnp.mean(jax.vmap(lambda zi: logp(zi, aux))(z))
    entropy = jnp.sum(jnp.log(jnp.diagonal(L))) + 0.5 * mean.shape[0] * (1 + math.log(2 * math.pi))
    return -(lp + entropy)


def gaussian_vi_init(optimizer, mean: Array, init_scale: float | Array) -> GaussianVIState:
    """Initial state: ``q = N(mean, init_scale² I)``."""
    d = mean.shape[0]
    scale = jnp.broadcast_to(jnp.asarray(init_scale, mean.dtype), (d,))
    raw = jnp.diag(scale + jnp.log(-jnp.expm1(-scale)))  # softplus⁻¹
    return GaussianVIState(mean, raw, optimizer.init((mean, raw)), jnp.asarray(0))


def gaussian_vi_step(state: GaussianVIState, key, optimizer, logp, aux, n_mc: int):
    """One Adam step on the negative ELBO; a non-finite loss keeps the previous parameters."""
    params = (state.mean, state.raw)
    loss, grads = jax.value_and_grad(_neg_elbo)(params, key, logp, aux, n_mc)
    finite = jnp.isfinite(loss) & jnp.all(
        jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)])
    )
    grads = jax.tree_util.tree_map(lambda g: jnp.where(finite, g, 0.0), grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, params)
    new = optax.apply_updates(params, updates)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, params)
    return GaussianVIState(new[0], new[1], opt_state, state.step + 1), (loss, finite)


def _optimizer(learning_rate: float, steps: int):
    return optax.adam(optax.cosine_decay_schedule(learning_rate, max(steps, 1), alpha=0.05))


@eqx.filter_jit
def _chunk(state, keys, aux, data, logp, learning_rate, steps, n_mc, batched):
    optimizer = _optimizer(learning_rate, steps)

    def run(state, keys, aux):
        def body(s, k):
            return gaussian_vi_step(s, k, optimizer, lambda z, a: logp(z, a, data), aux, n_mc)

        return jax.lax.scan(body, state, keys)

    return jax.vmap(run)(state, keys, aux) if batched else run(state, keys, aux)


def fit_gaussian_vi(
    key: Key[Array, "*batch"],
    logp: Callable,
    aux,
    init_mean: Array,
    *,
    data=None,
    init_scale: float | Array = 0.05,
    steps: int = 500,
    learning_rate: float = 2e-2,
    n_mc: int = 4,
    chunk_size: int = 100,
    progress: bool = False,
) -> GaussianVIResult:
    """Fit ``q(z) = N(μ, LLᵀ)`` to ``exp logp(z, aux, data)`` by reverse KL (Adam, cosine decay).

    ``aux``/``init_mean``/``key`` may carry a leading batch axis (``key`` of shape ``(K,)``) to fit
    K problems at once with ``jax.vmap``; ``data`` is shared. Pass ``logp`` as a module-level
    function or ``eqx.Partial`` so repeated fits reuse the compiled step.
    """
    batched = jnp.ndim(jax.random.key_data(key)) == 2
    n_chunks = max(1, math.ceil(steps / chunk_size))
    optimizer = _optimizer(learning_rate, steps)
    init_fn = lambda m: gaussian_vi_init(optimizer, m, init_scale)  # noqa: E731
    state = jax.vmap(init_fn)(init_mean) if batched else init_fn(init_mean)
    losses, finites = [], []
    iterator = range(n_chunks)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="reverse-KL VI", unit="chunk")
    for c in iterator:
        n = min(chunk_size, steps - c * chunk_size)
        if batched:
            keys = jax.vmap(lambda k, c=c, n=n: jax.random.split(jax.random.fold_in(k, c), n))(key)
        else:
            keys = jax.random.split(jax.random.fold_in(key, c), n)
        state, (loss, finite) = _chunk(
            state, keys, aux, data, logp, float(learning_rate), int(steps), int(n_mc), batched
        )
        losses.append(loss)
        finites.append(finite)
    losses = jnp.concatenate(losses, axis=-1)
    finites = jnp.concatenate(finites, axis=-1)
    return GaussianVIResult(state.mean, _tril(state.raw), losses, jnp.all(finites, axis=-1))


def _log_prior_A(model: CouplingModel, a: Array) -> Array:
    dtype = a.dtype
    n = model.n_nodes
    return jnp.sum(
        jstats.norm.logpdf(a.reshape(n, n), model.prior_mean_A(dtype), model.prior_sd_A(dtype))
    )


def _likelihood(name: str):
    if name == "kalman":
        return kalman_log_likelihood
    if name == "whittle":
        return whittle_log_likelihood
    raise ValueError(
        f"argument 'likelihood' must be 'kalman' (exact) or 'whittle' (fast approximation), got {name!r}."
    )


@eqx.filter_jit
def _kernels(model, delays, hrf_scale):
    return jax.vmap(lambda d, s: measurement_kernel(model, d, s))(delays, hrf_scale)


def _stage2_logp(a, aux, Y, *, model, likelihood):
    kern, sigma = aux
    n = model.n_nodes
    return _likelihood(likelihood)(model, a.reshape(n, n), kern, sigma, Y) + _log_prior_A(model, a)


def _joint_logp(z, aux, Y, *, model, likelihood):
    n = model.n_nodes
    a = z[: n * n]
    h = z[n * n :].reshape(n, 3)
    d, s, sig = hp_from_unconstrained(model, h)
    kern = measurement_kernel(model, d, s)
    return (
        _likelihood(likelihood)(model, a.reshape(n, n), kern, sig, Y)
        + _log_prior_A(model, a)
        + _log_prior_hp_unconstrained(model, h)
    )


def _stage2_inputs(model, Y, delays, hrf_scale, likelihood):
    """Validate the likelihood name (before any work); data as an array and the K kernels."""
    _likelihood(likelihood)
    Y = jnp.asarray(Y)
    return Y, _kernels(model, delays.astype(Y.dtype), hrf_scale.astype(Y.dtype))


def fit_conditional_couplings(
    key: PRNGKeyArray,
    model: CouplingModel,
    Y: Float[Array, "T N"],
    delays: Float[Array, "K N"],
    hrf_scale: Float[Array, "K N"],
    noise_scale: Float[Array, "K N"],
    *,
    steps: int = 400,
    learning_rate: float = 2e-2,
    n_mc: int = 2,
    init_scale: float = 0.05,
    likelihood: str = "kalman",
    progress: bool = False,
) -> GaussianVIResult:
    """Stage 2: ``q(vec A | HP^(k), Y)`` for each of the K HP draws (vmapped), MATH.md §4 step 2.

    ``likelihood="kalman"`` (exact) or ``"whittle"`` (frequency-domain approximation, much faster).
    """
    n = model.n_nodes
    Y, kernels = _stage2_inputs(model, Y, delays, hrf_scale, likelihood)
    k = kernels.shape[0]

    logp = eqx.Partial(_stage2_logp, model=model, likelihood=likelihood)

    init = jnp.broadcast_to(model.prior_mean_A(Y.dtype).reshape(-1), (k, n * n))
    return fit_gaussian_vi(
        jax.random.split(key, k),
        logp,
        (kernels, noise_scale.astype(Y.dtype)),
        init,
        data=Y,
        init_scale=init_scale,
        steps=steps,
        learning_rate=learning_rate,
        n_mc=n_mc,
        progress=progress,
    )


def conditional_log_evidence(
    key: PRNGKeyArray,
    model: CouplingModel,
    Y: Float[Array, "T N"],
    delays: Float[Array, "K N"],
    hrf_scale: Float[Array, "K N"],
    noise_scale: Float[Array, "K N"],
    fit: GaussianVIResult,
    *,
    n_samples: int = 64,
    likelihood: str = "kalman",
) -> Float[Array, " K"]:
    """Importance-sampling estimate of ``log p(Y | HP^(k))`` with the fitted ``q(A | HP^(k), Y)``.

    ``log (1/S) Σ_s p(Y | A_s, HP^(k)) p(A_s) / q_k(A_s)``, ``A_s ~ q_k`` (the IWAE bound): a
    stochastic lower bound that is tighter than the ELBO and exact as ``S → ∞``; when ``q_k``
    matches the (nearly Gaussian) conditional posterior the weights are nearly equal and the
    estimate has small variance. Used to weight the hybrid's mixture components.
    """
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"argument 'n_samples' must be an int >= 1, got {n_samples!r}.")
    Y, kernels = _stage2_inputs(model, Y, delays, hrf_scale, likelihood)
    return _log_evidence(
        jax.random.split(key, kernels.shape[0]),
        fit.mean.astype(Y.dtype),
        fit.scale_tril.astype(Y.dtype),
        kernels,
        noise_scale.astype(Y.dtype),
        Y,
        model,
        likelihood,
        n_samples,
    )


@eqx.filter_jit
def _log_evidence(keys, mean, tril, kernels, sigma, Y, model, likelihood, n_samples):
    def one(key, m, L, kern, sig):
        d = m.shape[0]
        eps = jax.random.normal(key, (n_samples, d), m.dtype)
        a = m + eps @ L.T
        log_q = (
            -0.5 * jnp.sum(eps**2, axis=-1)
            - jnp.sum(jnp.log(jnp.diagonal(L)))
            - 0.5 * d * math.log(2 * math.pi)
        )
        log_p = jax.vmap(
            lambda ai: _stage2_logp(ai, (kern, sig), Y, model=model, likelihood=likelihood)
        )(a)
        return jax.scipy.special.logsumexp(log_p - log_q) - math.log(n_samples)

    return jax.vmap(one)(keys, mean, tril, kernels, sigma)


def hp_to_unconstrained(model: CouplingModel, delays, hrf_scale, noise_scale) -> Array:
    """``(logit(d/max_delay), log s, log σ)`` stacked as ``(..., N, 3)``."""
    u = jnp.clip(delays / model.max_delay, 1e-6, 1 - 1e-6)
    return jnp.stack(
        [jnp.log(u) - jnp.log1p(-u), jnp.log(hrf_scale), jnp.log(noise_scale)], axis=-1
    )


def hp_from_unconstrained(model: CouplingModel, h: Array) -> tuple[Array, Array, Array]:
    """Inverse of ``hp_to_unconstrained``."""
    return model.max_delay * jax.nn.sigmoid(h[..., 0]), jnp.exp(h[..., 1]), jnp.exp(h[..., 2])


def _log_prior_hp_unconstrained(model: CouplingModel, h: Array) -> Array:
    """Prior density of the unconstrained HP (uniform delay → logistic; log-normals → normals)."""
    lp_d = jnp.sum(jax.nn.log_sigmoid(h[:, 0]) + jax.nn.log_sigmoid(-h[:, 0]))
    lp_s = jnp.sum(jstats.norm.logpdf(h[:, 1], 0.0, model.hrf_scale_sd))
    lp_n = jnp.sum(jstats.norm.logpdf(h[:, 2], math.log(model.noise_loc), model.noise_sd))
    return lp_d + lp_s + lp_n


class ReverseKLResult(NamedTuple):
    """Plain reverse-KL VI: full-rank Gaussian over ``(vec A, unconstrained HP)``."""

    model: CouplingModel
    mean: Array
    scale_tril: Array
    losses: Array

    def draws(self, key: PRNGKeyArray, n: int) -> tuple[Array, Array, Array, Array]:
        """``n`` draws ``(A (n,N,N), delays, hrf_scale, noise_scale)``."""
        z = (
            self.mean
            + jax.random.normal(key, (n, self.mean.shape[0]), self.mean.dtype) @ self.scale_tril.T
        )
        nn = self.model.n_nodes
        A = z[:, : nn * nn].reshape(n, nn, nn)
        d, s, sig = hp_from_unconstrained(self.model, z[:, nn * nn :].reshape(n, nn, 3))
        return A, d, s, sig


def reverse_kl_vi(
    key: PRNGKeyArray,
    model: CouplingModel,
    Y,
    TR: float,
    *,
    steps: int = 600,
    learning_rate: float = 2e-2,
    n_mc: int = 4,
    init_scale: float = 0.05,
    likelihood: str = "kalman",
    progress: bool = False,
) -> ReverseKLResult:
    """Baseline: plain reverse-KL VI over everything (A and HP), X integrated out by the Kalman filter
    (or its Whittle approximation with ``likelihood="whittle"``)."""
    _likelihood(likelihood)  # validate the name before any work
    Y = jnp.asarray(check_data(Y, TR, model))
    n = model.n_nodes
    Y = Y - jnp.mean(Y, axis=0)

    logp = eqx.Partial(_joint_logp, model=model, likelihood=likelihood)

    h0 = jnp.stack(
        [jnp.zeros(n), jnp.zeros(n), jnp.full((n,), math.log(model.noise_loc))], axis=-1
    ).astype(Y.dtype)
    init = jnp.concatenate([model.prior_mean_A(Y.dtype).reshape(-1), h0.reshape(-1)])
    res = fit_gaussian_vi(
        key,
        logp,
        jnp.zeros(()),
        init,
        data=Y,
        init_scale=init_scale,
        steps=steps,
        learning_rate=learning_rate,
        n_mc=n_mc,
        progress=progress,
    )
    return ReverseKLResult(model, res.mean, res.scale_tril, res.losses)


def gaussian_interval(
    mean: np.ndarray, sd: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Central interval of a Gaussian marginal."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    return mean - z * sd, mean + z * sd

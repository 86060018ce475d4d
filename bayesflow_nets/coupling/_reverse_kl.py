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
from scipy.linalg import block_diag
from scipy.optimize import minimize

from ._kalman import kalman_log_likelihood, whittle_log_likelihood
from ._model import CouplingModel, check_data, measurement_kernel

__all__ = [
    "GaussianVIState",
    "GaussianVIResult",
    "gaussian_vi_init",
    "gaussian_vi_step",
    "fit_gaussian_vi",
    "laplace_gaussian",
    "mode_step_size",
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
    """Initial state: ``q = N(mean, init_scale² I)``, or ``N(mean, L Lᵀ)`` when ``init_scale``
    is a lower-triangular ``L`` (``d × d``, positive diagonal)."""
    init_scale = jnp.asarray(init_scale, mean.dtype)
    if init_scale.ndim == 2:
        tril, diag = jnp.tril(init_scale, -1), jnp.diagonal(init_scale)
    else:
        tril, diag = 0.0, jnp.broadcast_to(init_scale, mean.shape)
    raw = tril + jnp.diag(diag + jnp.log(-jnp.expm1(-diag)))  # softplus⁻¹ on the diagonal
    return GaussianVIState(mean, raw, optimizer.init((mean, raw)), jnp.asarray(0))


def mode_step_size(n_nodes: int) -> float:
    """First Adam step of the mode search over ``A`` (``N × N``): 0.02 up to N = 10, then
    ``0.02·√(10/N)``. Adam's early steps move every entry by about the step size with mixed
    signs, which changes ``ρ(I + TR·A)`` by about ``2·TR·step·√N``; at N = 50, T = 200 a step of
    0.02 ran into the stability boundary (ρ ≈ 0.999, 1000 nats short of the mode) where
    ``0.02·√(10/50)`` reached the mode in the same 100 steps."""
    return 0.02 * min(1.0, math.sqrt(10.0 / n_nodes))


@eqx.filter_jit
def _adam_to_mode(logp, z, aux, data, steps, step_size=0.02):
    """``steps`` deterministic Adam steps on ``−logp`` (``step_size``, cosine decay): small steps
    stay in the basin of the start (L-BFGS's long first step can land in a spurious Whittle
    mode). A step into the non-finite region (e.g. an unstable network) is halved back towards
    the last finite point."""
    f = lambda x: -logp(x, aux, data)  # noqa: E731
    opt = optax.adam(optax.cosine_decay_schedule(step_size, steps, alpha=0.01))

    def body(carry, _):
        x, good, state = carry
        v, g = jax.value_and_grad(f)(x)
        ok = jnp.isfinite(v) & jnp.all(jnp.isfinite(g))
        updates, new_state = opt.update(jnp.where(ok, g, 0.0), state, x)
        state = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new_state, state)
        x_next = jnp.where(ok, optax.apply_updates(x, updates), 0.5 * (x + good))
        return (x_next, jnp.where(ok, x, good), state), None

    (_, good, _), _ = jax.lax.scan(body, (z, z, opt.init(z)), None, length=steps)
    return good  # the last iterate with a finite value and gradient


@eqx.filter_jit
def _neg_value_and_grad(logp, z, aux, data):
    return jax.value_and_grad(lambda x: -logp(x, aux, data))(z)


def _host_value_and_grad(logp, aux, data, dtype):
    def fun(x):
        v, g = _neg_value_and_grad(logp, jnp.asarray(x, dtype), aux, data)
        v, g = float(v), np.asarray(g, np.float64)
        if not (np.isfinite(v) and np.all(np.isfinite(g))):
            return np.inf, np.zeros_like(g)
        return v, g

    return fun


def _block_hessian(fun, z: np.ndarray, block_size: int, min_precision: float):
    """Block-diagonal Hessian of ``fun`` at ``z`` (``d / block_size`` contiguous blocks) from
    ``2·block_size`` gradients: direction ``j`` perturbs coordinate ``j`` of every block at once
    (a colouring that is exact when the cross-block curvature vanishes). Returns per-block
    eigen-pairs, eigenvalues floored at ``min_precision``, and whether all were finite."""
    nb = z.shape[0] // block_size
    h = (1e-3 * (1.0 + np.abs(z))).reshape(nb, block_size)
    H = np.empty((nb, block_size, block_size))
    for j in range(block_size):
        e = np.zeros((nb, block_size))
        e[:, j] = h[:, j]
        e = e.reshape(-1)
        diff = (fun(z + e)[1] - fun(z - e)[1]).reshape(nb, block_size)
        H[:, :, j] = diff / (2 * h[:, j : j + 1])
    w, V = np.linalg.eigh(0.5 * (H + np.swapaxes(H, 1, 2)))
    ok = bool(np.all(np.isfinite(w)))
    return np.maximum(np.where(np.isfinite(w), w, min_precision), min_precision), V, ok


def _laplace_one(
    logp, aux, data, m0: np.ndarray, maxiter: int, min_precision: float, step_size: float
):
    """One problem: ``maxiter`` jitted Adam steps towards the mode of ``logp``, then on the host
    up to three guarded Newton steps and the Hessian by central differences of the gradient,
    eigenvalues floored at ``min_precision``. Falls back to ``m0`` and ``min_precision⁻¹ᐟ² I``
    when the search leaves the finite region."""
    dtype = m0.dtype
    fun = _host_value_and_grad(logp, aux, data, dtype)
    z = np.asarray(_adam_to_mode(logp, jnp.asarray(m0), aux, data, maxiter, step_size), np.float64)
    if not np.isfinite(fun(z)[0]):
        z = np.asarray(m0, np.float64)
    d = z.shape[0]

    def floored_hessian(z):  # the full Hessian: a single block
        w, V, ok = _block_hessian(fun, z, d, min_precision)
        return w[0], V[0], ok

    f_z = fun(z)[0]
    for _ in range(3):  # guarded Newton steps: Adam ends near, not at, the mode
        w, V, ok = floored_hessian(z)
        if not ok:
            break
        z_new = z - V @ ((V.T @ fun(z)[1]) / w)
        f_new = fun(z_new)[0]
        if not f_new <= f_z:
            break
        z, f_z = z_new, f_new
    w, V, ok = floored_hessian(z)
    L = np.linalg.cholesky((V / w) @ V.T) if ok else np.eye(d) / np.sqrt(min_precision)
    return z.astype(dtype), L.astype(dtype), ok


def _preconditioned_lbfgs(fun, z0: np.ndarray, w, V, maxiter: int = 10) -> np.ndarray:
    """Minimise ``fun`` from ``z0`` by L-BFGS in whitened coordinates ``u = H^{½}(z − z0)``
    (``H = V diag(w) Vᵀ`` block-diagonal), so that the quasi-Newton updates only have to learn
    what the blocks miss (the cross-block curvature). Keeps ``z0`` if nothing better is found."""
    nb, b = w.shape
    root = V / np.sqrt(w)[:, None, :]  # H^{-½} per block

    def to_z(u):
        return z0 + np.einsum("kij,kj->ki", root, u.reshape(nb, b)).reshape(-1)

    def fu(u):
        v, g = fun(to_z(u))
        return v, np.einsum("kij,ki->kj", root, g.reshape(nb, b)).reshape(-1)

    f0 = fun(z0)[0]
    res = minimize(
        fu, np.zeros(z0.shape[0]), jac=True, method="L-BFGS-B", options={"maxiter": maxiter}
    )
    return to_z(res.x) if np.isfinite(res.fun) and res.fun < f0 else z0


def _laplace_blocks(logp, aux, data, m0: np.ndarray, maxiter, min_precision, block_size, step_size):
    """Batched block-diagonal Laplace with shared curvature: problem 0 is solved by ``maxiter``
    Adam steps from ``m0[0]``; its block Hessian ``H₀`` (``_block_hessian``) preconditions
    10 L-BFGS steps for every problem, problem k > 0 starting at problem 0's mode; all share
    the covariance ``H₀⁻¹``."""
    dtype = m0.dtype
    take = lambda k: jax.tree_util.tree_map(lambda a: a[k], aux)  # noqa: E731
    fun0 = _host_value_and_grad(logp, take(0), data, dtype)
    z0 = np.asarray(
        _adam_to_mode(logp, jnp.asarray(m0[0]), take(0), data, maxiter, step_size), np.float64
    )
    if not np.isfinite(fun0(z0)[0]):
        z0 = np.asarray(m0[0], np.float64)
    w, V, ok = _block_hessian(fun0, z0, block_size, min_precision)
    if not ok:
        w, V = np.full_like(w, min_precision), np.broadcast_to(np.eye(block_size), V.shape)
    means = [_preconditioned_lbfgs(fun0, z0, w, V)]
    for k in range(1, m0.shape[0]):
        fun = _host_value_and_grad(logp, take(k), data, dtype)
        means.append(_preconditioned_lbfgs(fun, means[0], w, V))
    L = block_diag(*np.linalg.cholesky(np.einsum("kij,kj,klj->kil", V, 1.0 / w, V)))
    K, d = m0.shape
    return (
        np.stack(means).astype(dtype),
        np.broadcast_to(L.astype(dtype), (K, d, d)),
        np.full(K, ok),
    )


def laplace_gaussian(
    logp: Callable,
    aux,
    init_mean: Array,
    *,
    data=None,
    maxiter: int = 300,
    min_precision: float = 1.0,
    batched: bool = False,
    block_size: int | None = None,
    step_size: float = 0.02,
) -> tuple[Array, Array, Array]:
    """Laplace approximation ``N(ẑ, H⁻¹)`` of ``exp logp(z, aux, data)``: ``(mean, scale_tril, ok)``.

    ``ẑ`` is found by ``maxiter`` deterministic Adam steps of size ``step_size`` (cosine decay;
    ``mode_step_size(N)`` for couplings) from ``init_mean`` (one jitted scan
    per problem), then up to three Newton steps (each kept only if it lowers ``−logp``); ``H`` is
    the Hessian of ``−logp`` at ``ẑ`` by central differences of the gradient, with eigenvalues floored at ``min_precision`` (a non-concave point gives a wide,
    not an invalid, Gaussian). ``batched=True`` solves a leading batch of problems (``aux`` and
    ``init_mean`` batched, ``data`` shared) one after the other. The start of the reverse-KL
    fits, so that Adam only polishes a Gaussian already near the optimum.

    ``block_size=b`` (structured, for large ``d``): ``H`` is block-diagonal with ``d/b``
    contiguous blocks (rows of ``A``: ``b = N``), estimated from ``2b`` gradients instead of
    ``2d`` (``_block_hessian``); batched problems share the curvature of the first, each
    reaching its own mode by preconditioned L-BFGS from the first's (``_laplace_blocks``). (Host-side by design:
    the same computation as one vmapped XLA program — forward-mode Hessian, or an Adam scan to
    the mode — intermittently never returned on CPU with JAX 0.10.)
    """
    if not isinstance(maxiter, int) or maxiter < 1:
        raise ValueError(f"argument 'maxiter' must be an int >= 1, got {maxiter!r}.")
    if not (min_precision > 0):
        raise ValueError(f"argument 'min_precision' must be > 0, got {min_precision!r}.")
    if not (isinstance(step_size, (int, float)) and 0 < step_size < math.inf):
        raise ValueError(f"argument 'step_size' must be a finite float > 0, got {step_size!r}.")
    min_precision, step_size = float(min_precision), float(step_size)
    m = np.asarray(init_mean)
    if block_size is not None:
        d = m.shape[-1]
        if not isinstance(block_size, int) or block_size < 1 or d % block_size:
            raise ValueError(
                f"argument 'block_size' must be None or an int >= 1 dividing the dimension {d}, got {block_size!r}."
            )
        if not batched:
            aux = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], aux)
        out = _laplace_blocks(
            logp, aux, data, m.reshape(-1, d), maxiter, min_precision, block_size, step_size
        )
        out = tuple(jnp.asarray(x) for x in out)
        return out if batched else tuple(x[0] for x in out)
    if not batched:
        z, L, ok = _laplace_one(logp, aux, data, m, maxiter, min_precision, step_size)
        return jnp.asarray(z), jnp.asarray(L), jnp.asarray(ok)
    out = [
        _laplace_one(
            logp,
            jax.tree_util.tree_map(lambda a, k=k: a[k], aux),
            data,
            m[k],
            maxiter,
            min_precision,
            step_size,
        )
        for k in range(m.shape[0])
    ]
    return tuple(jnp.asarray(np.stack(x)) for x in zip(*out))


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

    ``init_scale``: a scalar/vector (``q`` starts at ``N(init_mean, diag(init_scale²))``) or a
    lower-triangular ``L`` (batched: ``(K, d, d)``), e.g. from ``laplace_gaussian``. ``steps=0``
    returns the start.

    ``aux``/``init_mean``/``key`` may carry a leading batch axis (``key`` of shape ``(K,)``) to fit
    K problems at once with ``jax.vmap``; ``data`` is shared. Pass ``logp`` as a module-level
    function or ``eqx.Partial`` so repeated fits reuse the compiled step.
    """
    batched = jnp.ndim(jax.random.key_data(key)) == 2
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"argument 'steps' must be an int >= 0, got {steps!r}.")
    n_chunks = math.ceil(steps / chunk_size)
    optimizer = _optimizer(learning_rate, steps)
    init_scale = jnp.asarray(init_scale, init_mean.dtype)
    if batched and init_scale.ndim == 3:  # one lower-triangular start per problem
        state = jax.vmap(lambda m, s: gaussian_vi_init(optimizer, m, s))(init_mean, init_scale)
    else:
        init_fn = lambda m: gaussian_vi_init(optimizer, m, init_scale)  # noqa: E731
        state = jax.vmap(init_fn)(init_mean) if batched else init_fn(init_mean)
    if n_chunks == 0:  # the start is the answer (e.g. a Laplace approximation)
        shape = (init_mean.shape[0], 0) if batched else (0,)
        finite = jnp.all(jnp.isfinite(state.mean), axis=-1) & jnp.all(
            jnp.isfinite(state.raw), axis=(-2, -1)
        )
        return GaussianVIResult(
            state.mean, _tril(state.raw), jnp.zeros(shape, init_mean.dtype), finite
        )
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


def _check_init(init: str) -> None:
    """The stage-2 start: ``"laplace"`` or ``"prior"``."""
    if init not in ("laplace", "prior"):
        raise ValueError(f"argument 'init' must be 'laplace' or 'prior', got {init!r}.")


def _check_covariance(covariance: str, init: str) -> None:
    """The stage-2 covariance structure: ``"full"`` or ``"rows"`` (needs the Laplace start)."""
    if covariance not in ("full", "rows"):
        raise ValueError(f"argument 'covariance' must be 'full' or 'rows', got {covariance!r}.")
    if covariance == "rows" and init != "laplace":
        raise ValueError("argument 'covariance'='rows' needs init='laplace'.")


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
    steps: int = 100,
    learning_rate: float = 1e-3,
    n_mc: int = 2,
    init_scale: float = 0.05,
    likelihood: str = "kalman",
    init: str = "laplace",
    laplace_iters: int = 300,
    covariance: str = "full",
    progress: bool = False,
) -> GaussianVIResult:
    """Stage 2: ``q(vec A | HP^(k), Y)`` for each of the K HP draws (vmapped), MATH.md §4 step 2.

    ``likelihood="kalman"`` (exact) or ``"whittle"`` (frequency-domain approximation, much faster).
    ``init="laplace"`` (default) starts each ``q`` at the Laplace approximation of its conditional
    posterior (``laplace_gaussian``, ``laplace_iters`` Adam steps to the mode), so the ``steps`` Adam
    steps on the ELBO only polish it (``steps=0``: the Laplace approximation itself);
    ``init="prior"`` starts at ``N(prior mean, init_scale² I)``.
    ``covariance="rows"`` (structured, for large N): the Laplace start has a row-block-diagonal
    precision (rows of A independent, as in rDCM) shared by the K components, from ``2N``
    gradients instead of ``2N²`` (``laplace_gaussian(block_size=N)``); at N = 10 its marginal
    sds were within 1.5 % of the full Laplace's. Use it with ``steps=0`` when N² is large.
    """
    _check_init(init)
    _check_covariance(covariance, init)
    n = model.n_nodes
    Y, kernels = _stage2_inputs(model, Y, delays, hrf_scale, likelihood)
    k = kernels.shape[0]

    logp = eqx.Partial(_stage2_logp, model=model, likelihood=likelihood)
    aux = (kernels, noise_scale.astype(Y.dtype))
    init_mean = jnp.broadcast_to(model.prior_mean_A(Y.dtype).reshape(-1), (k, n * n))
    if init == "laplace":
        init_mean, init_scale, _ = laplace_gaussian(
            logp,
            aux,
            init_mean,
            data=Y,
            maxiter=laplace_iters,
            min_precision=1.0 / float(jnp.max(model.prior_sd_A())) ** 2,
            batched=True,
            block_size=n if covariance == "rows" else None,
            step_size=mode_step_size(n),
        )
    return fit_gaussian_vi(
        jax.random.split(key, k),
        logp,
        aux,
        init_mean,
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
    steps: int = 100,
    learning_rate: float = 1e-3,
    n_mc: int = 4,
    init_scale: float = 0.05,
    likelihood: str = "kalman",
    init: str = "laplace",
    laplace_iters: int = 300,
    progress: bool = False,
) -> ReverseKLResult:
    """Baseline: plain reverse-KL VI over everything (A and HP), X integrated out by the Kalman filter
    (or its Whittle approximation with ``likelihood="whittle"``). ``init`` as in
    ``fit_conditional_couplings`` (the Laplace start is the joint MAP over A and HP)."""
    _likelihood(likelihood)  # validate the name before any work
    _check_init(init)
    Y = jnp.asarray(check_data(Y, TR, model))
    n = model.n_nodes
    Y = Y - jnp.mean(Y, axis=0)

    logp = eqx.Partial(_joint_logp, model=model, likelihood=likelihood)

    h0 = jnp.stack(
        [jnp.zeros(n), jnp.zeros(n), jnp.full((n,), math.log(model.noise_loc))], axis=-1
    ).astype(Y.dtype)
    init_mean = jnp.concatenate([model.prior_mean_A(Y.dtype).reshape(-1), h0.reshape(-1)])
    if init == "laplace":
        # floor: the flattest prior curvature (the logistic delay prior's, 1/2 at its centre)
        init_mean, init_scale, _ = laplace_gaussian(
            logp,
            jnp.zeros(()),
            init_mean,
            data=Y,
            maxiter=laplace_iters,
            min_precision=0.5,
            step_size=mode_step_size(n),
        )
    res = fit_gaussian_vi(
        key,
        logp,
        jnp.zeros(()),
        init_mean,
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

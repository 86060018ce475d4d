"""Exact marginal likelihood ``log p(Y | A, HP)`` by a Kalman filter (MATH.md §4, stage 2).

The state is augmented with the last ``L`` latent values, ``z_t = (x_t, x_{t−1}, …, x_{t−L+1})``,
so the FIR measurement ``y_r(t) = Σ_j k_r[j] x_r(t−j)`` is a linear observation of ``z_t``. The
prediction exploits the shift-register structure (cost ``O(N²·LN)`` per step) and the update is
a rank-``N`` correction (``O((LN)²·N)``). Run it in float64 when the state is large or
ill-conditioned; tests compare it with the dense Gaussian marginal in float64.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float

from ._model import CouplingModel, measurement_kernel

__all__ = ["kalman_log_likelihood", "kalman_log_likelihood_params", "whittle_log_likelihood"]


def _predict(m, P, F, q2):
    # m: (L, N); P: (L, N, L, N)
    n = F.shape[0]
    m_new = jnp.concatenate([(F @ m[0])[None], m[:-1]], axis=0)
    FP = jnp.einsum("ij,jlm->ilm", F, P[0])  # (N, L, N): F times block row 0
    p00 = FP[:, 0, :] @ F.T + q2 * jnp.eye(n, dtype=P.dtype)
    row0 = jnp.concatenate([p00[:, None, :], FP[:, :-1, :]], axis=1)  # (N, L, N)
    col0 = jnp.transpose(FP[:, :-1, :], (1, 2, 0))[:, :, None, :]  # (L-1, N, 1, N)
    rest = jnp.concatenate([col0, P[:-1, :, :-1, :]], axis=2)  # (L-1, N, L, N)
    P_new = jnp.concatenate([row0[None], rest], axis=0)
    return m_new, P_new


def _update(m, P, y, K, noise_var):
    L, n = m.shape
    y_hat = jnp.sum(K * m, axis=0)
    PHt = jnp.einsum("lnmr,mr->lnr", P, K)  # (L, N, N)
    S = jnp.einsum("lr,lrs->rs", K, PHt) + jnp.diag(noise_var)
    S = 0.5 * (S + S.T)
    chol = jnp.linalg.cholesky(S)
    v = y - y_hat
    U = PHt.reshape(L * n, n)
    W = jsl.cho_solve((chol, True), U.T)  # (N, LN)
    m = m + (U @ jsl.cho_solve((chol, True), v)).reshape(L, n)
    P = P - (U @ W).reshape(L, n, L, n)
    Pf = P.reshape(L * n, L * n)
    P = (0.5 * (Pf + Pf.T)).reshape(L, n, L, n)
    alpha = jsl.solve_triangular(chol, v, lower=True)
    ll = (
        -0.5 * jnp.sum(alpha**2)
        - jnp.sum(jnp.log(jnp.diagonal(chol)))
        - 0.5 * n * jnp.log(2 * jnp.pi)
    )
    return m, P, ll


@eqx.filter_jit
def kalman_log_likelihood(
    model: CouplingModel,
    A: Float[Array, "N N"],
    kernel: Float[Array, "L N"],
    noise_scale: Float[Array, " N"],
    Y: Float[Array, "T N"],
) -> Float[Array, ""]:
    """``log p(Y | A, kernel, σ)`` with the latent states integrated out exactly."""
    L, n = kernel.shape
    dtype = Y.dtype
    A = A.astype(dtype)
    kernel = kernel.astype(dtype)
    F = jnp.eye(n, dtype=dtype) + model.tr * A
    q2 = jnp.asarray(model.state_noise**2, dtype)
    m0 = jnp.zeros((L, n), dtype)
    P0 = jnp.zeros((L, n, L, n), dtype).at[0, :, 0, :].set(q2 * jnp.eye(n, dtype=dtype))

    def burn(carry, _):
        return _predict(*carry, F, q2), None

    (m, P), _ = jax.lax.scan(burn, (m0, P0), None, length=model.n_burn)
    noise_var = (noise_scale**2).astype(dtype)

    def step(carry, y):
        m, P = carry
        m, P, ll = _update(m, P, y, kernel, noise_var)
        return _predict(m, P, F, q2), ll

    _, lls = jax.lax.scan(step, (m, P), Y)
    return jnp.sum(lls)


@eqx.filter_jit
def kalman_log_likelihood_params(
    model: CouplingModel,
    A: Float[Array, "N N"],
    delays: Float[Array, " N"],
    hrf_scale: Float[Array, " N"],
    noise_scale: Float[Array, " N"],
    Y: Float[Array, "T N"],
) -> Float[Array, ""]:
    """As ``kalman_log_likelihood`` with the kernel built from the HRF parameters and delays."""
    return kalman_log_likelihood(
        model, A, measurement_kernel(model, delays, hrf_scale), noise_scale, Y
    )


def _spectral_density(model, A, kernel, noise_scale, omega, cdtype):
    """``S(ω) = D (I − F e^{−iω})⁻¹ q² (·)^H D^H + diag(σ²)`` at each ``omega``, ``(M, N, N)``."""
    n = A.shape[0]
    F = (jnp.eye(n, dtype=A.dtype) + model.tr * A).astype(cdtype)
    z = jnp.exp(-1j * omega.astype(cdtype))
    lags = jnp.arange(kernel.shape[0]).astype(omega.dtype)
    khat = jnp.exp(-1j * omega[:, None].astype(cdtype) * lags[None, :]) @ kernel.astype(cdtype)
    eye = jnp.eye(n, dtype=cdtype)

    def one(zk, kh):
        G = kh[:, None] * jnp.linalg.solve(eye - F * zk, eye)  # D (I − F z)^{-1}
        return model.state_noise**2 * G @ jnp.conj(G.T) + jnp.diag((noise_scale**2).astype(cdtype))

    return jax.vmap(one)(z, khat)


@eqx.filter_jit
def whittle_log_likelihood(
    model: CouplingModel,
    A: Float[Array, "N N"],
    kernel: Float[Array, "L N"],
    noise_scale: Float[Array, " N"],
    Y: Float[Array, "T N"],
) -> Float[Array, ""]:
    """Debiased Whittle approximation of ``log p(ΔY | A, HP)`` for the differenced data.

    The unitary DFT coefficients ``d_k`` (``0 < k < T'/2``) of ``ΔY`` (``T' = T − 1``) are treated
    as independent complex Gaussians with covariance equal to the *expected* periodogram
    ``S̄(ω_k) = Σ_{|τ|<T'} (1 − |τ|/T') C(τ) e^{−iω_kτ}`` (Sykulski et al. 2019), where ``C`` is
    the autocovariance of ``ΔY``, obtained by an inverse FFT of its spectral density
    ``|1 − e^{−iω}|² (D (I − F e^{−iω})⁻¹ q² (·)^H D^H + diag(σ²))``. Differencing
    (pre-whitening) and debiasing remove the spectral leakage that made the plain Whittle
    likelihood badly wrong for smooth, low-noise series (HRF-filtered data, σ ≪ signal): there
    it could favour the wrong coupling direction by ~10 nats against the exact Kalman
    likelihood. Parallel over frequencies, ``O(T·N³)``, no sequential scan; the information in
    ``y_0`` is dropped. Our choice, for speed; tested against ``kalman_log_likelihood``.
    """
    dtype = Y.dtype
    cdtype = jnp.complex128 if dtype == jnp.float64 else jnp.complex64
    dY = jnp.diff(Y, axis=0)
    T, n = dY.shape
    M = 1 << (2 * T - 1).bit_length()  # grid for C(τ), |τ| < T, without wrap-around
    omega = (2 * jnp.pi * jnp.arange(M) / M).astype(dtype)
    diff_gain = jnp.abs(1 - jnp.exp(-1j * omega.astype(cdtype))) ** 2
    S = _spectral_density(model, A.astype(dtype), kernel.astype(dtype), noise_scale, omega, cdtype)
    C = jnp.fft.ifft(S * diff_gain[:, None, None], axis=0)  # C[τ] = E[Δy_{t+τ} Δy_tᵀ]
    tau = (jnp.arange(T) / T).astype(dtype)[:, None, None]
    C_neg = jnp.concatenate([C[:1], C[M - T + 1 :]], axis=0)  # C(τ − T), τ = 1..T−1
    S_bar = jnp.fft.fft((1 - tau) * C[:T] + tau * C_neg, axis=0)[1 : T // 2 + 1]
    d = jnp.fft.rfft(dY, axis=0, norm="ortho")[1:]  # (K, N), k = 1..T//2

    def one(Sk, dk):
        Sk = 0.5 * (Sk + jnp.conj(Sk.T))
        chol = jnp.linalg.cholesky(Sk)
        alpha = jsl.solve_triangular(chol, dk, lower=True)
        logdet = 2 * jnp.sum(jnp.log(jnp.real(jnp.diagonal(chol))))
        return logdet, jnp.sum(jnp.abs(alpha) ** 2)

    logdet, quad = jax.vmap(one)(S_bar, d)
    log2pi = jnp.log(2 * jnp.pi).astype(dtype)
    complex_terms = -(n * log2pi + logdet + quad)
    if T % 2 == 0:  # Nyquist coefficient is real: −½(N log 2π + log det S + dᵀS⁻¹d)
        nyq = -0.5 * (n * log2pi + logdet[-1] + quad[-1])
        return jnp.sum(complex_terms[:-1]) + nyq
    return jnp.sum(complex_terms)

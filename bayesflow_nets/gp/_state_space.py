"""Exact O(n) state-space path for Brownian and Matérn walks (MATH.md §3, "O(n) path").

A Matérn-ν walk (ν = p + 1/2) is ``f' = g`` with ``g`` a stationary Matérn-ν process of variance
``σ²``; the state is ``s = (f, g, g', …, g^{(p)})``. A Brownian walk has the state ``s = (f)``.
The level ``f`` has a flat (infinite-variance) prior; ``g`` starts stationary.

Exact diffuse initialisation (no large-but-finite prior): with a flat level, the first observation
``y₁ = f(x₁) + ε`` carries no information on ``g`` and fixes ``f`` exactly, so the filtered state
after it is ``N((y₁, 0), blockdiag(σ_n², P∞))`` and its log-density term is dropped. The REML of
the dense path equals the remaining prediction-error decomposition plus ``½ log n``:
``log N(Qᵀy; 0, QᵀKQ) = Σ_{t≥2} log N(v_t; 0, F_t) + ½ log n``.

Test points before the first observation are smoothed with the exact diffuse backward
conditional ``p(s_t | s_{t+1})`` (the flat level makes ``f_{t+1}`` uninformative about ``g_t``).

Transition moments come from the kernel itself: ``A_gg = e^{F_g Δ}`` (nilpotent series),
``S = ∫₀^Δ e^{F_g u} du = F_g⁻¹(A_gg − I)``, ``D = f(t+Δ) − f(t) = ∫ g`` with
``Var D = 2σ²γ(Δ)``, ``Cov(D, g_t) = e₁ᵀ S P∞``, ``Cov(D, g_{t+1}) = e₁ᵀ P∞ Sᵀ``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from ._kernels import AbstractKernel, Brownian, MaternWalk, Scaled, matern_walk_variogram

__all__ = ["WalkStateSpace", "walk_state_space", "supports_state_space"]


class WalkStateSpace(NamedTuple):
    """Parameters of a walk's state-space form: ``p = None`` for Brownian."""

    p: int | None
    variance: Array
    lengthscale: Array | None


def supports_state_space(kernel: AbstractKernel) -> bool:
    """True for Brownian and Matérn walks (optionally scaled)."""
    while isinstance(kernel, Scaled):
        kernel = kernel.kernel
    return isinstance(kernel, (Brownian, MaternWalk))


def walk_state_space(kernel: AbstractKernel) -> WalkStateSpace:
    """Extract the state-space parameters of a (scaled) Brownian or Matérn walk."""
    scale = 1.0
    k = kernel
    while isinstance(k, Scaled):
        scale = scale * k.scale
        k = k.kernel
    if isinstance(k, Brownian):
        return WalkStateSpace(None, scale * k.variance, None)
    if isinstance(k, MaternWalk):
        return WalkStateSpace(int(k.nu - 0.5), scale * k.variance, k.lengthscale)
    raise NotImplementedError(
        f"method='state_space' supports Brownian and MaternWalk kernels (optionally scaled), got "
        f"{type(kernel).__name__}; use method='contrast' (dense) for this kernel."
    )


# ----------------------------------------------------------------------------- model pieces


class _Matern:
    """Precomputed pieces of the Matérn-ν walk model (ν = p + 1/2)."""

    def __init__(self, ss: WalkStateSpace, dtype):
        p = ss.p
        self.p = p
        self.d = p + 1
        self.m = p + 2
        self.var = ss.variance
        self.ell = ss.lengthscale
        lam = math.sqrt(2 * p + 1) / ss.lengthscale
        self.lam = lam
        d = self.d
        # Companion matrix with characteristic polynomial (s + λ)^{p+1}.
        F = jnp.zeros((d, d), dtype)
        if d > 1:
            F = F.at[jnp.arange(d - 1), jnp.arange(1, d)].set(1.0)
        last = jnp.stack([-math.comb(d, k) * lam ** (d - k) for k in range(d)])
        F = F.at[d - 1].set(last.astype(dtype))
        self.Finv = jnp.linalg.inv(F)
        N = F + lam * jnp.eye(d, dtype=dtype)
        powers = [jnp.eye(d, dtype=dtype)]
        for _ in range(p):
            powers.append(powers[-1] @ N)
        self.Npow = jnp.stack(powers)  # (p+1, d, d)
        # Stationary covariance of (g, g', …): (−1)^j c^{(i+j)}(0), c^{(k)}(0) = k! t_k.
        from ._kernels import _matern_poly_coeffs

        b = _matern_poly_coeffs(p)
        B = [b[j] * (2 * lam) ** j for j in range(p + 1)]
        taylor = []
        for k in range(2 * p + 1):
            taylor.append(
                sum(B[j] * (-lam) ** (k - j) / math.factorial(k - j) for j in range(min(k, p) + 1))
            )
        rows = []
        for i in range(d):
            row = []
            for j in range(d):
                if (i + j) % 2:
                    row.append(jnp.zeros((), dtype))
                else:
                    val = (-1) ** j * math.factorial(i + j) * taylor[i + j]
                    row.append(val * jnp.ones((), dtype))
            rows.append(jnp.stack(row))
        self.Pinf = ss.variance * jnp.stack(rows)
        self.Pinf_inv = jnp.linalg.inv(self.Pinf)

    def pieces(self, delta):
        d = self.d
        coef = jnp.stack([delta**k / math.factorial(k) for k in range(self.p + 1)])
        Agg = jnp.exp(-self.lam * delta) * jnp.tensordot(coef, self.Npow, axes=1)
        S = self.Finv @ (Agg - jnp.eye(d, dtype=Agg.dtype))
        s1 = S[0]  # e₁ᵀS
        cov_D_gt = s1 @ self.Pinf
        cov_D_gt1 = S @ self.Pinf[:, 0]
        var_D = 2 * self.var * matern_walk_variogram(delta, self.ell, self.p + 0.5)
        return Agg, s1, cov_D_gt, cov_D_gt1, var_D

    def init_cov(self, noise):
        P = jnp.zeros((self.m, self.m), self.Pinf.dtype)
        P = P.at[0, 0].set(noise)
        return P.at[1:, 1:].set(self.Pinf)

    def transition(self, delta):
        Agg, s1, cov_D_gt, cov_D_gt1, var_D = self.pieces(delta)
        dtype = Agg.dtype
        top = jnp.concatenate([jnp.ones((1,), dtype), s1])[None, :]
        bottom = jnp.concatenate([jnp.zeros((self.d, 1), dtype), Agg], axis=1)
        A = jnp.concatenate([top, bottom], axis=0)
        Qff = var_D - jnp.dot(cov_D_gt, s1)
        Qfg = cov_D_gt1 - Agg @ cov_D_gt
        Qgg = self.Pinf - Agg @ self.Pinf @ Agg.T
        Qgg = 0.5 * (Qgg + Qgg.T)
        top = jnp.concatenate([Qff[None], Qfg])[None, :]
        bottom = jnp.concatenate([Qfg[:, None], Qgg], axis=1)
        return A, jnp.concatenate([top, bottom], axis=0)

    def backward_diffuse(self, delta):
        """``s_t | s_{t+1} ~ N(J s_{t+1}, Σ)`` when the level at ``t`` is still diffuse."""
        Agg, s1, cov_D_gt, cov_D_gt1, var_D = self.pieces(delta)
        m, d = self.m, self.d
        Pinf, Pinv = self.Pinf, self.Pinf_inv
        # Joint of r = (D, g_t) and g_{t+1}.
        Crr = jnp.zeros((m, m), Agg.dtype)
        Crr = Crr.at[0, 0].set(var_D).at[0, 1:].set(cov_D_gt).at[1:, 0].set(cov_D_gt)
        Crr = Crr.at[1:, 1:].set(Pinf)
        Cross = jnp.concatenate([cov_D_gt1[None, :], Pinf @ Agg.T], axis=0)  # (m, d)
        G = Cross @ Pinv
        Sigma_r = Crr - G @ Cross.T
        T = jnp.diag(jnp.concatenate([-jnp.ones((1,), Agg.dtype), jnp.ones((d,), Agg.dtype)]))
        Sigma = T @ Sigma_r @ T
        J = jnp.zeros((m, m), Agg.dtype)
        J = J.at[0, 0].set(1.0).at[0, 1:].set(-G[0]).at[1:, 1:].set(G[1:])
        return J, 0.5 * (Sigma + Sigma.T)


class _Brownian:
    def __init__(self, ss: WalkStateSpace, dtype):
        self.m = 1
        self.var = ss.variance
        self.dtype = dtype

    def init_cov(self, noise):
        return jnp.reshape(noise, (1, 1))

    def transition(self, delta):
        return jnp.ones((1, 1), self.dtype), jnp.reshape(self.var * delta, (1, 1))

    def backward_diffuse(self, delta):
        return jnp.ones((1, 1), self.dtype), jnp.reshape(self.var * delta, (1, 1))


def _model(kernel: AbstractKernel, dtype):
    ss = walk_state_space(kernel)
    return _Brownian(ss, dtype) if ss.p is None else _Matern(ss, dtype)


# ------------------------------------------------------------------------------ filter/smoother
# Small-matrix products written as broadcast-multiply-sum: XLA fuses them into loops, which is
# several times faster on CPU inside ``lax.scan`` than calls to a dot kernel for 4×4 matrices.


def _mm(a: Array, b: Array) -> Array:
    return jnp.sum(a[:, :, None] * b[None, :, :], axis=1)


def _mv(a: Array, v: Array) -> Array:
    return jnp.sum(a * v[None, :], axis=1)


def _predict(A, Q, mean, P):
    return _mv(A, mean), _mm(_mm(A, P), A.T) + Q


_UNROLL = 8


def _filter(model, deltas, observed, y, noise, store: bool):
    """Exact diffuse Kalman filter over sorted points; returns log-lik sum (and filtered states)."""
    m = model.m
    dtype = y.dtype
    A_all, Q_all = jax.vmap(model.transition)(deltas)

    def step(carry, inp):
        mean, P, started, ll = carry
        A, Q, obs, yt, rt = inp
        m_pred, P_pred = _predict(A, Q, mean, P)
        v = yt - m_pred[0]
        F = P_pred[0, 0] + rt
        Kg = P_pred[:, 0] / F
        m_upd = m_pred + Kg * v
        P_upd = P_pred - Kg[:, None] * Kg[None, :] * F
        P_upd = 0.5 * (P_upd + P_upd.T)
        ll_t = -0.5 * (jnp.log(2 * math.pi * F) + v**2 / F)
        m_first = jnp.zeros((m,), dtype).at[0].set(yt)
        P_first = model.init_cov(rt)
        new_mean = jnp.where(obs, jnp.where(started, m_upd, m_first), m_pred)
        new_P = jnp.where(obs, jnp.where(started, P_upd, P_first), P_pred)
        new_ll = ll + jnp.where(obs & started, ll_t, 0.0)
        now_started = started | obs
        # While still diffuse keep finite placeholders (the level is flat).
        new_mean = jnp.where(now_started, new_mean, jnp.zeros_like(new_mean))
        new_P = jnp.where(now_started, new_P, model.init_cov(jnp.ones((), dtype)))
        out = (new_mean, new_P, ~now_started) if store else None
        return (new_mean, new_P, now_started, new_ll), out

    init = (
        jnp.zeros((m,), dtype),
        model.init_cov(jnp.ones((), dtype)),
        jnp.zeros((), bool),
        jnp.zeros((), dtype),
    )
    (_, _, _, ll), outs = lax.scan(step, init, (A_all, Q_all, observed, y, noise))
    return ll, outs


def _smooth(model, deltas, filtered):
    """RTS smoother; exact diffuse backward step for points before the first observation."""
    means, covs, diffuse = filtered

    def step(carry, inp):
        ms, Ps = carry
        mean, P, is_diffuse, delta = inp

        def regular(_):
            A, Q = model.transition(delta)
            m_pred, P_pred = _predict(A, Q, mean, P)
            G = jnp.linalg.solve(P_pred, _mm(A, P)).T  # P Aᵀ P_pred⁻¹ (P_pred symmetric)
            m_s = mean + _mv(G, ms - m_pred)
            P_s = P + _mm(_mm(G, Ps - P_pred), G.T)
            return m_s, 0.5 * (P_s + P_s.T)

        def diffuse_step(_):
            J, Sigma = model.backward_diffuse(delta)
            return J @ ms, J @ Ps @ J.T + Sigma

        out = lax.cond(is_diffuse, diffuse_step, regular, None)
        return out, out

    last = (means[-1], covs[-1])
    xs = (means[:-1], covs[:-1], diffuse[:-1], deltas[1:])
    _, (sm, sP) = lax.scan(step, last, xs, reverse=True)
    sm = jnp.concatenate([sm, means[-1:]], axis=0)
    sP = jnp.concatenate([sP, covs[-1:]], axis=0)
    return sm, sP


def _sorted_inputs(x: Array):
    order = jnp.argsort(x, stable=True)
    xs = x[order]
    deltas = jnp.concatenate([jnp.zeros((1,), xs.dtype), jnp.diff(xs)])
    return order, deltas


def state_space_log_likelihood(
    kernel: AbstractKernel,
    x: Float[Array, " n"],
    y: Float[Array, " n"],
    noise: Float[Array, " n"],
) -> Float[Array, ""]:
    """REML ``log N(Qᵀy; 0, QᵀKQ)`` in O(n) (inputs in any order)."""
    model = _model(kernel, y.dtype)
    order, deltas = _sorted_inputs(x)
    ys, rs = y[order], noise[order]
    # Exact diffuse start: the state after the first observation is N((y₁, 0), blockdiag(r₁, P∞)).
    mean0 = jnp.zeros((model.m,), y.dtype).at[0].set(ys[0])
    P0 = model.init_cov(rs[0])
    A_all, Q_all = jax.vmap(model.transition)(deltas[1:])

    def step(carry, inp):
        mean, P, ll = carry
        A, Q, yt, rt = inp
        m_pred, P_pred = _predict(A, Q, mean, P)
        v = yt - m_pred[0]
        F = P_pred[0, 0] + rt
        Kg = P_pred[:, 0] / F
        P_upd = P_pred - Kg[:, None] * Kg[None, :] * F
        ll = ll - 0.5 * (jnp.log(2 * math.pi * F) + v**2 / F)
        return (m_pred + Kg * v, P_upd, ll), None

    init = (mean0, P0, jnp.zeros((), y.dtype))
    (_, _, ll), _ = lax.scan(step, init, (A_all, Q_all, ys[1:], rs[1:]), unroll=_UNROLL)
    return ll + 0.5 * math.log(x.shape[0])


def state_space_posterior(
    kernel: AbstractKernel,
    x: Float[Array, " n"],
    y: Float[Array, " n"],
    noise: Float[Array, " n"],
    x_test: Float[Array, " m"],
) -> tuple[Float[Array, " m"], Float[Array, " m"]]:
    """Corrected posterior mean and variance of ``f`` at ``x_test`` in O(n + m)."""
    n = x.shape[0]
    model = _model(kernel, y.dtype)
    # Test points first so that, at a tie, they are smoothed after the observation.
    x_all = jnp.concatenate([x_test, x])
    observed = jnp.concatenate([jnp.zeros(x_test.shape, bool), jnp.ones(x.shape, bool)])
    y_all = jnp.concatenate([jnp.zeros(x_test.shape, y.dtype), y])
    r_all = jnp.concatenate([jnp.ones(x_test.shape, y.dtype), noise])
    order, deltas = _sorted_inputs(x_all)
    _, filtered = _filter(model, deltas, observed[order], y_all[order], r_all[order], store=True)
    sm, sP = _smooth(model, deltas, filtered)
    inv = jnp.argsort(order)
    mean = sm[inv, 0][: x_test.shape[0]]
    var = sP[inv, 0, 0][: x_test.shape[0]]
    del n
    return mean, var

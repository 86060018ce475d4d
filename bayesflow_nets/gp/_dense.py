"""Dense linear algebra for improper GPs (MATH.md §3).

All functions are pure and jit-friendly. ``K = k(X, X) + diag(noise)`` is indefinite for an improper
kernel and is never Cholesky-factorised; the contrast form factorises ``M = QᵀKQ ≻ 0`` where ``Q``
is an orthonormal basis of ``1^⊥`` (the trailing columns of the Householder reflector that maps
``1/√n`` to ``−e₁``), applied in O(n²) without forming ``Q`` — or, in float64, the pinned basis of
contrasts ``y_i − y_0`` (same REML up to ``½ log n``, see ``ContrastFactor``).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "ContrastFactor",
    "contrast_factor",
    "contrast_project",
    "contrast_lift",
    "contrast_log_likelihood",
    "contrast_posterior",
    "bordered_posterior",
    "shifted_posterior",
    "ordinary_log_likelihood",
    "ordinary_posterior",
]


def _householder(n: int, dtype) -> tuple[Array, Array]:
    """``v`` and ``β`` with ``H = I − β v vᵀ`` mapping ``1/√n`` to ``−e₁``."""
    u = jnp.full((n,), 1.0 / math.sqrt(n), dtype=dtype)
    v = u.at[0].add(1.0)
    beta = 2.0 / jnp.dot(v, v)
    return v, beta


def contrast_project(y: Float[Array, " n *k"]) -> Float[Array, " n-1 *k"]:
    """``Qᵀ y`` (the contrasts of ``y``), O(n)."""
    n = y.shape[0]
    v, beta = _householder(n, y.dtype)
    Hy = y - beta * jnp.outer(v, jnp.tensordot(v, y, axes=1)).reshape(y.shape)
    return Hy[1:]


def contrast_lift(z: Float[Array, " m *k"]) -> Float[Array, " m+1 *k"]:
    """``Q z`` (a sum-zero vector in ``Rⁿ`` from its contrast coordinates), O(n)."""
    n = z.shape[0] + 1
    full = jnp.concatenate([jnp.zeros((1,) + z.shape[1:], z.dtype), z], axis=0)
    v, beta = _householder(n, z.dtype)
    return full - beta * jnp.outer(v, jnp.tensordot(v, full, axes=1)).reshape(full.shape)


class ContrastFactor(eqx.Module):
    """Cholesky factor ``L`` of the contrast covariance and the data the posterior formulas reuse.

    ``pinned=False``: ``M = QᵀKQ`` in the orthonormal Householder basis ``Q``. ``pinned=True``:
    ``M = CKCᵀ`` in the pinned basis ``C = [−1 | I]`` (contrasts ``y_i − y_0``), an exact
    change of basis (``C = RQᵀ`` with ``det(RRᵀ) = n``) whose matrix
    ``M_ij = K_ij − K_i0 − K_0j + K_00`` is elementwise in ``K`` (fused with the Gram matrix: no
    matrix-vector pass), but worse conditioned: used in float64 only.
    """

    chol: Float[Array, "m m"]
    K: Float[Array, "n n"]
    rowmean: Float[Array, " n"]
    pinned: bool = eqx.field(static=True, default=False)

    def project(self, y: Float[Array, " n *k"]) -> Float[Array, " n-1 *k"]:
        """Contrast coordinates of ``y`` in this factor's basis (``Qᵀy`` or ``Cy``)."""
        return y[1:] - y[:1] if self.pinned else contrast_project(y)

    def lift(self, z: Float[Array, " m *k"]) -> Float[Array, " m+1 *k"]:
        """The transpose map (``Qz`` or ``Cᵀz``), so that ``lift(M⁻¹ project(y)) = QM⁻¹Qᵀy``."""
        if self.pinned:
            return jnp.concatenate([-jnp.sum(z, axis=0, keepdims=True), z], axis=0)
        return contrast_lift(z)

    @property
    def log_det_correction(self) -> float:
        """``log N`` in this basis minus the REML ``log N(Qᵀy; 0, QᵀKQ)``: ``−½ log n`` if pinned."""
        return -0.5 * math.log(self.K.shape[0]) if self.pinned else 0.0


def contrast_factor(K: Float[Array, "n n"], *, basis: str = "auto") -> ContrastFactor:
    """Factorise the contrast covariance of ``K`` by Cholesky (reads the lower triangle only).

    ``basis="householder"``: ``M = QᵀKQ = K₁₁ − βc(w₁1ᵀ + 1w₁ᵀ) + β²c²(v·w)`` with ``w = Kv``,
    ``c = 1/√n`` (one matrix-vector product and one elementwise pass); ``"pinned"``: ``CKCᵀ``
    (elementwise); ``"auto"``: pinned in float64, Householder otherwise (better conditioned).
    """
    if basis not in ("auto", "householder", "pinned"):
        raise ValueError(f"basis must be 'auto', 'householder' or 'pinned', got {basis!r}.")
    pinned = basis == "pinned" or (basis == "auto" and K.dtype == jnp.float64)
    n = K.shape[0]
    if pinned:
        M = K[1:, 1:] - K[1:, :1] - K[:1, 1:] + K[0, 0]
        rowmean = jnp.mean(K, axis=1)
    else:
        v, beta = _householder(n, K.dtype)
        # one pass over K for both K v and the row means
        Kv = K @ jnp.stack([v, jnp.full((n,), 1.0 / n, K.dtype)], axis=1)
        w, rowmean = Kv[:, 0], Kv[:, 1]
        c = v[1]
        w1 = beta * c * w[1:]
        M = K[1:, 1:] - w1[:, None] - w1[None, :] + (beta * c) ** 2 * jnp.dot(v, w)
    chol = jax.lax.linalg.cholesky(M, symmetrize_input=False)
    return ContrastFactor(chol, K, rowmean, pinned)


def _chol_solve_lower(L: Array, b: Array) -> Array:
    return jax.scipy.linalg.solve_triangular(L, b, lower=True)


def contrast_log_likelihood(factor: ContrastFactor, y: Float[Array, " n"]) -> Float[Array, ""]:
    """REML ``log N(Qᵀy; 0, QᵀKQ)``."""
    z = _chol_solve_lower(factor.chol, factor.project(y))
    m = z.shape[0]
    return (
        -0.5 * jnp.dot(z, z)
        - jnp.sum(jnp.log(jnp.diagonal(factor.chol)))
        - 0.5 * m * math.log(2 * math.pi)
        - factor.log_det_correction
    )


def contrast_weights(factor: ContrastFactor, y: Float[Array, " n"]) -> tuple[Array, Array]:
    """``α = Q M⁻¹ Qᵀ y`` and ``β̂ = mean(y − Kα)``."""
    L = factor.chol
    z = jax.scipy.linalg.cho_solve((L, True), factor.project(y))
    alpha = factor.lift(z)
    beta_hat = jnp.mean(y) - jnp.dot(factor.rowmean, alpha)  # mean(Kα) = (K1/n)ᵀα, K symmetric
    return alpha, beta_hat


def contrast_posterior(
    factor: ContrastFactor,
    y: Float[Array, " n"],
    Kxs: Float[Array, "n m"],
    kss: Float[Array, "m m"] | Float[Array, " m"],
    full_cov: bool,
) -> tuple[Float[Array, " m"], Float[Array, "m m"] | Float[Array, " m"]]:
    """Corrected posterior mean and covariance (or variance) at test points, contrast form.

    ``Cov(x*, x*') = k(x*, x*') − mean(k*) − mean(k*') + mean(K) − w*ᵀ Q M⁻¹ Qᵀ w*'`` with
    ``w* = k* − K1/n`` (equal to the MATH.md §3 formula; derived from the bordered inverse).
    ``kss`` is ``k(X*, X*)`` when ``full_cov`` else its diagonal.
    """
    alpha, beta_hat = contrast_weights(factor, y)
    mean = beta_hat + Kxs.T @ alpha
    W = Kxs - factor.rowmean[:, None]
    V = _chol_solve_lower(factor.chol, factor.project(W))
    colmean = jnp.mean(Kxs, axis=0)
    kbar = jnp.mean(factor.rowmean)
    if full_cov:
        cov = kss - colmean[:, None] - colmean[None, :] + kbar - V.T @ V
        return mean, 0.5 * (cov + cov.T)
    var = kss - 2 * colmean + kbar - jnp.sum(V**2, axis=0)
    return mean, var


def shifted_posterior(
    K: Float[Array, "n n"],
    y: Float[Array, " n"],
    Kxs: Float[Array, "n m"],
    kss: Float[Array, "m m"] | Float[Array, " m"],
    full_cov: bool,
    shift: Float[ArrayLike, ""],
) -> tuple[Float[Array, " m"], Float[Array, "m m"] | Float[Array, " m"], Float[Array, " n"]]:
    """Corrected posterior by one Cholesky of ``K_c = K + c11ᵀ`` (c = ``shift``).

    Universal kriging with a flat constant mean is invariant to adding a constant to the
    covariance, and ``K_c ≻ 0`` once c exceeds a bound (Schur complement of ``QᵀKQ ≻ 0``): so
    ``β̂ = 1ᵀK_c⁻¹y / 1ᵀK_c⁻¹1``, mean ``β̂ + k*ᵀK_c⁻¹(y − β̂1)``, variance
    ``k** + c − |L⁻¹k*_c|² + (1 − 1ᵀK_c⁻¹k*_c)² / 1ᵀK_c⁻¹1`` with ``k*_c = k* + c``. One
    triangular solve serves y, 1 and k*; no contrast basis. Returns the Cholesky diagonal too
    (NaN where ``K_c`` is not positive definite: the caller then falls back to the contrast form).
    """
    n, m = Kxs.shape
    L = jax.lax.linalg.cholesky(K + shift, symmetrize_input=False)
    rhs = jnp.concatenate([y[:, None], jnp.ones((n, 1), K.dtype), Kxs + shift], axis=1)
    Z = _chol_solve_lower(L, rhs)
    zy, z1, V = Z[:, 0], Z[:, 1], Z[:, 2:]
    s = jnp.dot(z1, z1)
    beta_hat = jnp.dot(z1, zy) / s
    r = 1.0 - z1 @ V  # 1 − 1ᵀK_c⁻¹k*_c
    mean = beta_hat + V.T @ (zy - beta_hat * z1)  # k*_cᵀK_c⁻¹(y − β̂1) = k*ᵀ(...) as 1ᵀ(...) = 0
    if full_cov:
        cov = kss + shift - V.T @ V + jnp.outer(r, r) / s
        return mean, 0.5 * (cov + cov.T), jnp.diagonal(L)
    return mean, kss + shift - jnp.sum(V**2, axis=0) + r**2 / s, jnp.diagonal(L)


def bordered_posterior(
    K: Float[Array, "n n"],
    y: Float[Array, " n"],
    Kxs: Float[Array, "n m"],
    kss: Float[Array, "m m"] | Float[Array, " m"],
    full_cov: bool,
) -> tuple[Float[Array, " m"], Float[Array, "m m"] | Float[Array, " m"]]:
    """Corrected posterior from the bordered system ``[[K, 1], [1ᵀ, 0]]`` (LU solve)."""
    n, m = Kxs.shape
    ones = jnp.ones((n, 1), K.dtype)
    B = jnp.block([[K, ones], [ones.T, jnp.zeros((1, 1), K.dtype)]])
    rhs = jnp.concatenate(
        [
            jnp.concatenate([y[:, None], Kxs], axis=1),
            jnp.concatenate([jnp.zeros((1, 1), K.dtype), jnp.ones((1, m), K.dtype)], axis=1),
        ],
        axis=0,
    )
    lu = jax.scipy.linalg.lu_factor(B)
    sol = jax.scipy.linalg.lu_solve(lu, rhs)
    alpha, beta_hat = sol[:n, 0], sol[n, 0]
    A, b = sol[:n, 1:], sol[n, 1:]
    mean = Kxs.T @ alpha + beta_hat
    if full_cov:
        cov = kss - Kxs.T @ A - b[None, :]
        return mean, 0.5 * (cov + cov.T)
    var = kss - jnp.sum(Kxs * A, axis=0) - b
    return mean, var


def ordinary_log_likelihood(K: Float[Array, "n n"], y: Float[Array, " n"]) -> Float[Array, ""]:
    """``log N(y; 0, K)`` for a proper kernel (Cholesky)."""
    L = jax.lax.linalg.cholesky(K, symmetrize_input=False)
    z = _chol_solve_lower(L, y)
    n = y.shape[0]
    logdet = jnp.sum(jnp.log(jnp.diagonal(L)))
    return -0.5 * jnp.dot(z, z) - logdet - 0.5 * n * math.log(2 * math.pi)


def ordinary_posterior(
    K: Float[Array, "n n"],
    y: Float[Array, " n"],
    Kxs: Float[Array, "n m"],
    kss: Float[Array, "m m"] | Float[Array, " m"],
    full_cov: bool,
) -> tuple[Float[Array, " m"], Float[Array, "m m"] | Float[Array, " m"]]:
    """Zero-mean GP posterior for a proper kernel (Cholesky)."""
    L = jax.lax.linalg.cholesky(K, symmetrize_input=False)
    alpha = jax.scipy.linalg.cho_solve((L, True), y)
    mean = Kxs.T @ alpha
    V = _chol_solve_lower(L, Kxs)
    if full_cov:
        cov = kss - V.T @ V
        return mean, 0.5 * (cov + cov.T)
    return mean, kss - jnp.sum(V**2, axis=0)

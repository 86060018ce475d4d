"""Regression DCM baseline (Frässle et al. 2017), written from the equations in MATH.md §4.

Euler-discretised linear DCM ``x_{t+1} − x_t = TR·A x_t`` measured through one fixed canonical
HRF and no delays. Taking the unitary DFT of ``y = h * x`` turns it into, for every retained
frequency ``ω_k = 2πk/T``,

    (e^{iω_k} − 1)/TR · ŷ(k) = A ŷ(k) + noise,

so row ``r`` of ``A`` is a Bayesian linear regression of ``(e^{iω} − 1)ŷ_r/TR`` on ``ŷ`` with the
real and imaginary parts stacked as separate real observations. Priors: ``A_rs ~ N(0, 8/n)``
(s ≠ r), ``A_rr ~ N(−1/2, 1/(8n))``, noise precision ``τ_r ~ Gamma(2, 1)``. Mean-field VB
``q(θ_r) q(τ_r)`` has closed-form updates, iterated until the free-energy change is < ``tol``.

Frequency filter (our choice): frequencies where the canonical HRF's amplitude is below
``hrf_threshold × max`` are dropped (there the data carry measurement noise only, which would
bias ``A`` towards ``−I/TR``). Computed in NumPy float64 (closed-form, no training).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Float
from scipy.special import digamma, gammaln

from ._model import CouplingModel, check_data, measurement_kernel

__all__ = ["RDCMResult", "rdcm"]


class RDCMResult(NamedTuple):
    """rDCM posterior: ``q(A[r]) = N(mean[r], cov[r])``, ``q(τ_r) = Gamma(tau_shape, tau_rate)``."""

    mean: np.ndarray  # (N, N [+ M]) rows = target, columns = source [then inputs]
    cov: np.ndarray  # (N, N [+ M], N [+ M]): covariance of row r
    tau_shape: np.ndarray  # (N,)
    tau_rate: np.ndarray  # (N,)
    free_energy: np.ndarray  # (N,) per region
    n_iter: np.ndarray  # (N,)
    n_freq: int

    @property
    def sd(self) -> np.ndarray:
        """Posterior standard deviations of ``A`` (N, N)."""
        return np.sqrt(np.stack([np.diagonal(c) for c in self.cov]))

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central credible interval of each ``A_ij`` (Gaussian marginals)."""
        from scipy.stats import norm

        z = norm.ppf(0.5 + level / 2)
        return self.mean - z * self.sd, self.mean + z * self.sd

    def draws(self, seed: int, n: int) -> np.ndarray:
        """``n`` draws of ``A`` from the row-wise Gaussian posterior, shape (n, N, N)."""
        rng = np.random.default_rng(seed)
        rows = [
            rng.multivariate_normal(self.mean[r], self.cov[r], size=n)
            for r in range(self.mean.shape[0])
        ]
        return np.stack(rows, axis=1)


def _free_energy(y, X, mu, Sigma, a, b, mu0, prec0, a0, b0):
    n, d = X.shape
    resid = y - X @ mu
    ssq = resid @ resid + np.trace(X.T @ X @ Sigma)
    e_tau, e_logtau = a / b, digamma(a) - np.log(b)
    loglik = 0.5 * n * (e_logtau - np.log(2 * np.pi)) - 0.5 * e_tau * ssq
    diff = mu - mu0
    logp_theta = (
        -0.5 * d * np.log(2 * np.pi)
        + 0.5 * np.sum(np.log(prec0))
        - 0.5 * (diff @ (prec0 * diff) + np.sum(prec0 * np.diagonal(Sigma)))
    )
    logp_tau = a0 * np.log(b0) - gammaln(a0) + (a0 - 1) * e_logtau - b0 * e_tau
    ent_theta = 0.5 * d * (1 + np.log(2 * np.pi)) + 0.5 * np.linalg.slogdet(Sigma)[1]
    ent_tau = a - np.log(b) + gammaln(a) + (1 - a) * digamma(a)
    return loglik + logp_theta + logp_tau + ent_theta + ent_tau


def _vb_region(y, X, mu0, prec0, a0, b0, tol, max_iter):
    n = y.shape[0]
    XtX, Xty = X.T @ X, X.T @ y
    a = a0 + 0.5 * n
    b = b0
    f_old = -np.inf
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        e_tau = a / b
        Sigma = np.linalg.inv(e_tau * XtX + np.diag(prec0))
        Sigma = 0.5 * (Sigma + Sigma.T)
        mu = Sigma @ (e_tau * Xty + prec0 * mu0)
        resid = y - X @ mu
        b = b0 + 0.5 * (resid @ resid + np.trace(XtX @ Sigma))
        f = _free_energy(y, X, mu, Sigma, a, b, mu0, prec0, a0, b0)
        if abs(f - f_old) < tol:
            break
        f_old = f
    return mu, Sigma, a, b, f, n_iter


def rdcm(
    Y: Float[np.ndarray, "T N"],
    TR: float,
    U: Float[np.ndarray, "T M"] | None = None,
    *,
    hrf_threshold: float = 1e-2,
    tol: float = 1e-5,
    max_iter: int = 500,
    a0: float = 2.0,
    b0: float = 1.0,
) -> RDCMResult:
    """Fit regression DCM to ``T×N`` data sampled every ``TR`` seconds (MATH.md §4 rDCM baseline).

    ``U`` (optional, ``T×M``, aligned with ``Y``) are known exogenous inputs with
    ``x_{t+1} − x_t = TR(A x_t + C u_t)``; their regressors are ``ĥ·û`` and ``C ~ N(0, 1)`` (our
    choice of prior). The result's ``mean``/``cov`` then cover ``[A | C]`` row-wise; ``A`` alone is
    ``result.mean[:, :N]``.
    """
    Y = check_data(Y, TR).astype(np.float64)
    if not (0 <= hrf_threshold < 1):
        raise ValueError(f"argument 'hrf_threshold' must be in [0, 1), got {hrf_threshold!r}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"argument 'max_iter' must be an int >= 1, got {max_iter!r}.")
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"argument 'tol' must be finite and >= 0, got {tol!r}.")
    for name, value in (("a0", a0), ("b0", b0)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"argument {name!r} must be finite and > 0, got {value!r}.")
    T, n = Y.shape
    TR = float(TR)
    if U is not None:
        U = np.asarray(U, dtype=np.float64)
        if U.ndim != 2 or U.shape[0] != T:
            raise ValueError(f"argument 'U' must have shape (T={T}, M), got {U.shape}.")
        if not np.isfinite(U).all():
            raise ValueError("argument 'U' must be finite.")
    Yc = Y - Y.mean(axis=0)
    Yf = np.fft.rfft(Yc, axis=0, norm="ortho")  # (K, N)
    omega = 2 * np.pi * np.arange(Yf.shape[0]) / T
    deriv = (np.exp(1j * omega) - 1.0)[:, None] / TR * Yf
    # canonical HRF amplitude on the same frequency grid (no delay, unit dilation)
    canon = CouplingModel(n_nodes=1, tr=TR, max_delay=0.0, hrf_length=32.0)
    h = np.asarray(measurement_kernel(canon, jnp.zeros(1), jnp.ones(1)))[:, 0].astype(np.float64)
    hc = np.fft.rfft(h, n=max(T, h.shape[0]))[: Yf.shape[0]]
    hf = np.abs(hc)
    if hf.shape[0] < Yf.shape[0]:
        raise ValueError(
            f"internal: HRF grid shorter than data grid ({hf.shape[0]} < {Yf.shape[0]})."
        )
    keep = (hf >= hrf_threshold * hf.max()) & (np.arange(Yf.shape[0]) > 0)
    design = Yf
    if U is not None:
        design = np.concatenate(
            [Yf, hc[:, None] * np.fft.rfft(U - U.mean(axis=0), axis=0, norm="ortho")], axis=1
        )
    m_in = design.shape[1] - n
    Xd = np.concatenate([design[keep].real, design[keep].imag], axis=0)
    yd = np.concatenate([deriv[keep].real, deriv[keep].imag], axis=0)
    nonzero = np.any(Xd != 0, axis=1) | np.any(yd != 0, axis=1)
    Xd, yd = Xd[nonzero], yd[nonzero]
    means, covs, shapes, rates, fes, iters = [], [], [], [], [], []
    for r in range(n):
        mu0 = np.zeros(n + m_in)
        mu0[r] = -0.5
        prec0 = np.concatenate([np.full(n, n / 8.0), np.ones(m_in)])
        prec0[r] = 8.0 * n
        mu, Sigma, a, b, f, it = _vb_region(yd[:, r], Xd, mu0, prec0, a0, b0, tol, max_iter)
        means.append(mu)
        covs.append(Sigma)
        shapes.append(a)
        rates.append(b)
        fes.append(f)
        iters.append(it)
    return RDCMResult(
        np.stack(means),
        np.stack(covs),
        np.asarray(shapes),
        np.asarray(rates),
        np.asarray(fes),
        np.asarray(iters),
        int(Xd.shape[0] // 2),
    )

"""``ImproperGP``: GP regression with a flat prior on the level (MATH.md §3).

Prior ``f ~ GP(0, k + λ²)`` with ``λ → ∞``. For an improper (conditionally positive definite)
kernel this is the only well-defined model; for a proper kernel it is optional
(``flat_mean=True``; "ordinary kriging"), and by default a proper kernel uses the ordinary
zero-mean GP with the same API.

Posterior methods: ``"contrast"`` (Cholesky of ``QᵀKQ``), ``"bordered"`` (LU of the bordered
system) and ``"state_space"`` (exact O(n) diffuse Kalman filter / RTS smoother, Brownian and
Matérn walks on 1-D inputs). Predictions are for the latent ``f`` (no observation noise).

Numerics: improper systems are ill-conditioned; use float64 (``jax.enable_x64``). In float32,
``predict`` (dense methods) solves twice, by the contrast and the bordered form, and warns when
the two differ by more than 0.05 posterior sd in the mean or 5 % in the variance (their gap
tracks the error against float64); ``log_marginal_likelihood`` likewise compares the Householder
and the pinned contrast basis and warns when they differ by more than 0.05 nats.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from . import _dense
from ._kernels import AbstractKernel
from ._state_space import state_space_log_likelihood, state_space_posterior, supports_state_space

__all__ = ["ImproperGP", "GPPosterior"]


FLOAT32_TOLERANCE = 0.05
FLOAT32_LML_TOLERANCE = 0.05  # nats


@eqx.filter_jit
def _lml_pinned(gp, y):
    """The contrast log marginal likelihood in the pinned basis (the float32 cross-check)."""
    factor = _dense.contrast_factor(gp.gram(), basis="pinned")
    return _dense.contrast_log_likelihood(factor, y)


def _warn_float32_discrepancy(mean, var, mean2, var2) -> None:
    """Warn when two float32 solves of the same posterior differ by more than
    :data:`FLOAT32_TOLERANCE` (mean in posterior sd, or relative variance)."""
    m, v, m2, v2 = (np.asarray(a, dtype=np.float64) for a in (mean, var, mean2, var2))
    sd = np.sqrt(np.maximum(np.maximum(v, v2), np.finfo(np.float32).tiny))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_gap = float(np.nanmax(np.abs(m - m2) / sd)) if m.size else 0.0
        var_gap = (
            float(np.nanmax(np.abs(v - v2) / np.maximum(np.abs(v2), sd**2))) if v.size else 0.0
        )
    finite = np.all(np.isfinite(m)) and np.all(np.isfinite(v))
    if finite and max(mean_gap, var_gap) <= FLOAT32_TOLERANCE:
        return
    warnings.warn(
        f"ImproperGP: float32 lost accuracy: two solves of this posterior differ by "
        f"{mean_gap:.2g} posterior sd in the mean and {var_gap:.1%} in the variance"
        + ("" if finite else " (non-finite values)")
        + ". Enable float64 (`jax.config.update('jax_enable_x64', True)` or "
        "`with jax.enable_x64(True):`) or increase the noise.",
        UserWarning,
        stacklevel=3,
    )


class GPPosterior(NamedTuple):
    """Posterior of the latent ``f`` at test points: mean and variance, or full covariance."""

    mean: Float[Array, " m"]
    variance: Float[Array, " m"]
    covariance: Float[Array, "m m"] | None


def _is_traced(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_y(y, n: int) -> Array:
    y = jnp.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X, got shape {y.shape}.")
    if not _is_traced(y) and not bool(jnp.all(jnp.isfinite(y))):
        bad = int(jnp.sum(~jnp.isfinite(y)))
        raise ValueError(
            f"y contains {bad} NaN/inf value(s); drop those observations (and their rows of X) "
            "before building the GP, or impute them."
        )
    return eqx.error_if(y, ~jnp.all(jnp.isfinite(y)), "y contains NaN/inf; drop those points.")


_SOLVE_FAILED = (
    "is not finite: the linear solve failed (ill-conditioned system) — enable float64 "
    "(jax.enable_x64) or increase the noise."
)


@eqx.filter_jit
def _lml_impl(gp: ImproperGP, y: Array, method: str):
    ll, chol = gp._log_marginal_likelihood(y, method)
    ll = eqx.error_if(ll, ~jnp.isfinite(ll), "log marginal likelihood " + _SOLVE_FAILED)
    return ll, (None if chol is None else jnp.diagonal(chol))


@eqx.filter_jit
def _predict_impl(
    gp: ImproperGP, y: Array, X_test: Array, method: str, full_cov: bool, fallback: bool = True
):
    mean, cov, chol_diag = gp._predict(y, X_test, method, full_cov, fallback)
    if fallback:
        mean = eqx.error_if(mean, ~jnp.all(jnp.isfinite(mean)), "posterior mean " + _SOLVE_FAILED)
    return mean, cov, chol_diag


class ImproperGP(eqx.Module):
    """GP regression with kernel ``kernel`` at inputs ``X`` and Gaussian noise variance ``noise``.

    Args:
        kernel: any kernel; improper kernels require the flat level (``flat_mean``).
        X: inputs, ``(n,)`` or ``(n, d)``; any order (the state-space path sorts).
        noise: observation-noise *variance*, a positive scalar or ``(n,)`` vector (stored as
            ``log_noise``, the leaf that optimisers update).
        flat_mean: flat prior on a constant level (REML); default ``kernel.is_improper``.
    """

    kernel: AbstractKernel
    X: Array
    log_noise: Array
    flat_mean: bool = eqx.field(static=True)

    def __init__(
        self,
        kernel: AbstractKernel,
        X: Float[ArrayLike, " n *d"],
        noise: ArrayLike,
        *,
        flat_mean: bool | None = None,
    ):
        if not isinstance(kernel, AbstractKernel):
            raise TypeError(f"ImproperGP: kernel must be a kernel, got {type(kernel).__name__}.")
        X = jnp.asarray(X)
        if X.ndim not in (1, 2) or X.shape[0] < 2:
            raise ValueError(
                f"ImproperGP: X must have shape (n,) or (n, d) with n ≥ 2, got shape {X.shape}."
            )
        if not jnp.issubdtype(X.dtype, jnp.floating):
            X = X.astype(jnp.result_type(float))
        if flat_mean is None:
            flat_mean = kernel.is_improper
        if kernel.is_improper and not flat_mean:
            raise ValueError(
                f"ImproperGP: the kernel {type(kernel).__name__} is improper (only conditionally "
                "positive definite); it needs the flat level, flat_mean=True (the default)."
            )
        n = X.shape[0]
        if not _is_traced(X):
            Xn = np.asarray(X)
            if not np.all(np.isfinite(Xn)):
                raise ValueError("ImproperGP: X contains NaN/inf; drop those points.")
            flat = Xn.reshape(n, -1)
            uniq = np.unique(flat, axis=0).shape[0]
            if uniq < n:
                warnings.warn(
                    f"ImproperGP: X contains {n - uniq} duplicate input(s). The posterior is still "
                    "defined because the noise is positive, but the system becomes ill-conditioned "
                    "as the noise shrinks; consider averaging duplicate observations (with noise "
                    "variance divided by their count).",
                    UserWarning,
                    stacklevel=2,
                )
        if _is_traced(noise):
            log_noise = jnp.log(noise)
        else:
            nz = np.asarray(noise, dtype=float)
            if nz.shape not in ((), (n,)):
                raise ValueError(
                    f"ImproperGP: noise must be a scalar or have shape ({n},), got {nz.shape}."
                )
            if not np.all(np.isfinite(nz)) or np.any(nz <= 0):
                raise ValueError(
                    f"ImproperGP: noise (a variance) must be positive and finite, got "
                    f"{nz if nz.ndim == 0 else 'min ' + str(nz.min())}; use a small positive value "
                    "such as 1e-6 for (near) noise-free data."
                )
            log_noise = jnp.log(jnp.asarray(nz, dtype=X.dtype))
        self.kernel = kernel
        self.X = X
        self.log_noise = log_noise
        self.flat_mean = bool(flat_mean)

    # ------------------------------------------------------------------ basic quantities
    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def noise(self) -> Array:
        """Noise variance per observation, shape ``(n,)``."""
        return jnp.broadcast_to(jnp.exp(self.log_noise), (self.n,))

    def gram(self) -> Float[Array, "n n"]:
        """``K = k(X, X) + diag(noise)`` (indefinite for an improper kernel)."""
        K = self.kernel(self.X)
        return K + jnp.diag(self.noise.astype(K.dtype))

    def contrasts(self, y: Float[ArrayLike, " n"]) -> Float[Array, " n-1"]:
        """``Qᵀy``: orthonormal contrasts of ``y`` (the level-free part the REML models)."""
        return _dense.contrast_project(jnp.asarray(y))

    def _x1d(self, name: str = "X") -> Array:
        X = self.X
        if X.ndim == 2:
            if X.shape[1] != 1:
                raise ValueError(
                    f"method='state_space' needs 1-D inputs, got {name} with shape {X.shape}; use "
                    "method='contrast'."
                )
            X = X[:, 0]
        return X

    def _check_method(self, method: str, allowed: tuple[str, ...]) -> None:
        if method not in allowed:
            raise ValueError(f"method must be one of {allowed}, got {method!r}.")
        if method == "state_space":
            if not self.flat_mean or not supports_state_space(self.kernel):
                raise NotImplementedError(
                    "method='state_space' supports Brownian and MaternWalk kernels (optionally "
                    f"scaled), got {type(self.kernel).__name__}; use method='contrast'."
                )
        elif method == "bordered" and not self.flat_mean:
            raise ValueError(
                "method='bordered' solves the flat-level system; this GP has flat_mean=False "
                "(proper kernel, ordinary path). Use method='contrast' or build it with "
                "flat_mean=True."
            )

    def _warn_conditioning(self, chol_diag: Array) -> None:
        if _is_traced(chol_diag) or chol_diag.dtype != jnp.float32:
            return
        d = np.asarray(chol_diag)
        if not np.all(np.isfinite(d)):
            return
        # (max/min Cholesky diagonal)² underestimates cond(M), often by 10-100×: warn early
        cond = float((d.max() / d.min()) ** 2)
        if cond > 3e4:
            warnings.warn(
                f"ImproperGP: float32 with an ill-conditioned system (condition number ≳ "
                f"{cond:.1e}); results may be inaccurate. Enable float64 "
                "(`jax.config.update('jax_enable_x64', True)` or `with jax.enable_x64(True):`) "
                "or increase the noise.",
                UserWarning,
                stacklevel=3,
            )

    # ---------------------------------------------------------------- likelihood
    def _log_marginal_likelihood(self, y: Array, method: str) -> tuple[Array, Array | None]:
        if method == "state_space":
            ll = state_space_log_likelihood(self.kernel, self._x1d(), y, self.noise.astype(y.dtype))
            return ll, None
        K = self.gram()
        if self.flat_mean:
            factor = _dense.contrast_factor(K)
            return _dense.contrast_log_likelihood(factor, y), factor.chol
        return _dense.ordinary_log_likelihood(K, y), None

    def log_marginal_likelihood(
        self, y: Float[ArrayLike, " n"], *, method: str = "contrast"
    ) -> Float[Array, ""]:
        """REML ``log N(Qᵀy; 0, QᵀKQ)`` (flat level) or ``log N(y; 0, K)`` (ordinary path)."""
        self._check_method(method, ("contrast", "state_space"))
        y = _check_y(y, self.n)
        ll, chol_diag = _lml_impl(self, y, method)
        if chol_diag is None or _is_traced(ll) or ll.dtype != jnp.float32:
            return ll
        # float32: the pinned basis rounds differently from the Householder one, and the gap
        # between the two tracks the error against float64; without a finite second value the
        # Cholesky-diagonal estimate decides
        gap = abs(float(_lml_pinned(self, y)) - float(ll))
        if np.isfinite(gap):
            if gap > FLOAT32_LML_TOLERANCE:
                warnings.warn(
                    f"ImproperGP: float32 lost accuracy: two solves of the log marginal "
                    f"likelihood differ by {gap:.2g} nats. Enable float64 "
                    "(`jax.config.update('jax_enable_x64', True)` or "
                    "`with jax.enable_x64(True):`) or increase the noise.",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            self._warn_conditioning(chol_diag)
        return ll

    # ---------------------------------------------------------------- posterior
    def predict(
        self,
        y: Float[ArrayLike, " n"],
        X_test: Float[ArrayLike, " m *d"],
        *,
        method: str = "contrast",
        full_cov: bool = False,
    ) -> GPPosterior:
        """Posterior of ``f`` at ``X_test``: corrected (flat-level) or ordinary formulas.

        ``full_cov=True`` also returns the covariance (dense methods only).
        """
        self._check_method(method, ("contrast", "bordered", "state_space"))
        y = _check_y(y, self.n)
        X_test = jnp.asarray(X_test, dtype=self.X.dtype)
        if X_test.shape[1:] != self.X.shape[1:]:
            raise ValueError(
                f"X_test must have point shape {self.X.shape[1:]} like X, got shape {X_test.shape}."
            )
        if not _is_traced(X_test) and not bool(jnp.all(jnp.isfinite(X_test))):
            bad = int(jnp.sum(~jnp.isfinite(X_test)))
            raise ValueError(
                f"X_test contains {bad} NaN/inf value(s); predict at finite inputs only."
            )
        if method == "state_space" and full_cov:
            raise ValueError(
                "full_cov=True is not available with method='state_space' (it returns the "
                "marginal variances); use method='contrast' for the full covariance."
            )
        if method == "state_space":
            self._x1d()
        float64 = y.dtype == jnp.float64 and self.X.dtype == jnp.float64
        traced = _is_traced(y, X_test, *jax.tree_util.tree_leaves(self))
        fast = method == "contrast" and self.flat_mean and float64 and not traced
        if fast:
            # float64: one Cholesky of K + c11ᵀ, checked here instead of by lax.cond; the
            # contrast form (Householder basis) only if that was not positive definite
            mean, cov, diag = _predict_impl(self, y, X_test, method, full_cov, False)
            if not np.all(np.isfinite(np.asarray(diag))):
                fast, method = False, "householder"
        if not fast:
            mean, cov, chol_diag = _predict_impl(self, y, X_test, method, full_cov)
            dense = self.flat_mean and method in ("contrast", "bordered", "householder")
            if dense and not float64 and not traced:
                # float32: the contrast and bordered solves round differently, and their
                # difference tracks the error against float64 closely: measure it
                other = "bordered" if method != "bordered" else "contrast"
                mean2, cov2, _ = _predict_impl(self, y, X_test, other, full_cov)
                var, var2 = (jnp.diagonal(c) if full_cov else c for c in (cov, cov2))
                _warn_float32_discrepancy(mean, var, mean2, var2)
            elif chol_diag is not None:
                self._warn_conditioning(chol_diag)
        if full_cov:
            return GPPosterior(mean, jnp.diagonal(cov), cov)
        return GPPosterior(mean, cov, None)

    def _predict(self, y: Array, X_test: Array, method: str, full_cov: bool, fallback: bool = True):
        if method == "state_space":
            xt = X_test[:, 0] if X_test.ndim == 2 else X_test
            mean, var = state_space_posterior(
                self.kernel, self._x1d(), y, self.noise.astype(y.dtype), xt
            )
            return mean, var, None
        chol_diag = None
        K = self.gram()
        Kxs = self.kernel(self.X, X_test)
        kss = self.kernel(X_test) if full_cov else self.kernel.diag(X_test)
        if not self.flat_mean:
            mean, cov = _dense.ordinary_posterior(K, y, Kxs, kss, full_cov)
        elif method == "bordered":
            mean, cov = _dense.bordered_posterior(K, y, Kxs, kss, full_cov)
        elif method == "contrast" and K.dtype == jnp.float64:
            # one Cholesky of K + c11ᵀ; the contrast form only where that is not positive
            # definite (float64 only: c adds cancellation to the variance). c from three entries
            # of K (no pass over it): it only has to be large enough, and the fallback covers
            # the rest. ``fallback=False`` leaves that to the caller (NaN Cholesky diagonal).
            shift = 2.0 * jnp.max(jnp.abs(jnp.stack([K[0, -1], K[0, 0], K[-1, -1]])))
            mean, cov, chol_diag = _dense.shifted_posterior(K, y, Kxs, kss, full_cov, shift)
            if fallback:
                mean, cov = jax.lax.cond(
                    jnp.all(jnp.isfinite(chol_diag)),
                    lambda: (mean, cov),
                    lambda: self._contrast_posterior(K, y, Kxs, kss, full_cov)[:2],
                )
                chol_diag = None
        else:
            mean, cov, chol_diag = self._contrast_posterior(K, y, Kxs, kss, full_cov)
        return mean, cov, chol_diag

    @staticmethod
    def _contrast_posterior(K, y, Kxs, kss, full_cov):
        # Householder basis here: the pinned one (the float64 REML default) measured slower for
        # the posterior (benchmarks/gp_scaling.py), though equal in exact arithmetic
        factor = _dense.contrast_factor(K, basis="householder")
        mean, cov = _dense.contrast_posterior(factor, y, Kxs, kss, full_cov)
        return mean, cov, jnp.diagonal(factor.chol)

    # ---------------------------------------------------------------- prior sampling
    def sample_prior(
        self,
        key: PRNGKeyArray,
        X_new: Float[ArrayLike, " m *d"] | None = None,
        *,
        num_samples: int = 1,
        pin_index: int = 0,
    ) -> Float[Array, "s m"]:
        """Prior draws of ``f`` at ``X_new`` (default ``X``), shape ``(num_samples, m)``.

        Improper kernels (flat level) are sampled by pinning ``f(x_pin) = 0`` at
        ``x_pin = X_new[pin_index]``: ``C = k(x,x') − k(x,x_pin) − k(x_pin,x') + k(x_pin,x_pin)``
        (positive semi-definite because ``k`` is CPD); the level is arbitrary. Proper kernels with
        the ordinary path draw from ``N(0, k(X, X))``.
        """
        Xn = self.X if X_new is None else jnp.asarray(X_new, dtype=self.X.dtype)
        m = Xn.shape[0]
        if not -m <= pin_index < m:
            raise ValueError(f"pin_index must index X_new (length {m}), got {pin_index}.")
        C = self.kernel(Xn)
        if self.flat_mean:
            kp = C[pin_index]
            C = C - kp[:, None] - kp[None, :] + C[pin_index, pin_index]
        evals, evecs = jnp.linalg.eigh(0.5 * (C + C.T))
        root = evecs * jnp.sqrt(jnp.clip(evals, 0.0, None))[None, :]
        eps = jax.random.normal(key, (num_samples, m), dtype=C.dtype)
        return eps @ root.T

    # ---------------------------------------------------------------- NumPyro
    def numpyro_dist(self, *, method: str = "contrast"):
        """A NumPyro distribution over ``y`` whose ``log_prob`` is the (REML) marginal likelihood.

        With a flat level the density is that of the contrasts ``Qᵀy`` (invariant to the level);
        use it as ``numpyro.sample("y", gp.numpyro_dist(), obs=y)`` with hyperparameters sampled
        in the model, e.g. for NUTS. Proper kernels on the ordinary path give a
        ``MultivariateNormal(0, K)``.
        """
        from ._numpyro import ContrastNormal

        self._check_method(method, ("contrast", "state_space"))
        if not self.flat_mean:
            import numpyro.distributions as dist

            return dist.MultivariateNormal(jnp.zeros(self.n, self.X.dtype), self.gram())
        return ContrastNormal(self, method)

"""``HybridVI``: forward-KL measurement posterior + reverse-KL couplings, delays marginalised
(MATH.md §4 steps 1–3), and the common result type ``CouplingPosterior``.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from ..train import to_inference_data
from ._measurement import MeasurementPosterior, train_measurement_posterior
from ._model import CouplingModel, check_data
from ._rdcm import RDCMResult
from ._reverse_kl import (
    ReverseKLResult,
    _check_covariance,
    _check_init,
    _log_prior_hp_unconstrained,
    conditional_log_evidence,
    fit_conditional_couplings,
    hp_to_unconstrained,
)

__all__ = ["CouplingPosterior", "HybridVI", "rdcm_posterior", "reverse_kl_posterior"]


class CouplingPosterior(NamedTuple):
    """Posterior draws of ``A`` (rows = target, columns = source) and summaries."""

    A: np.ndarray  # (S, N, N)
    method: str
    node_names: tuple[str, ...]
    delays: np.ndarray | None = None  # (K, N) measurement draws used (hybrid)
    component_means: np.ndarray | None = None  # (K, N, N)
    weights: np.ndarray | None = None  # (K,) mixture weights of the components (hybrid)

    @property
    def mean(self) -> np.ndarray:
        """Posterior mean of ``A``."""
        return self.A.mean(axis=0)

    @property
    def sd(self) -> np.ndarray:
        """Posterior standard deviation of ``A``."""
        return self.A.std(axis=0)

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central (equal-tailed) credible interval of each ``A_ij`` from the draws."""
        if not 0 < level < 1:
            raise ValueError(f"argument 'level' must be in (0, 1), got {level!r}.")
        lo, hi = np.quantile(self.A, [0.5 - level / 2, 0.5 + level / 2], axis=0)
        return lo, hi

    def edge_probability(self, threshold: float = 0.1) -> np.ndarray:
        """``P(|A_ij| > threshold | Y)``; the diagonal (self-connections) is set to NaN."""
        p = (np.abs(self.A) > threshold).mean(axis=0)
        np.fill_diagonal(p, np.nan)
        return p

    def sign_probability(self) -> np.ndarray:
        """``P(A_ij > 0 | Y)``."""
        return (self.A > 0).mean(axis=0)

    def to_arviz(self, num_chains: int = 1):
        """ArviZ InferenceData: posterior ``A`` over dims ``(target, source)`` (node names).

        Built by the shared converter ``bayesflow_nets.infer.to_inference_data``; ``num_chains``
        splits the draws into chains (they are i.i.d. mixture draws, so this only groups them).
        ``attrs``: ``method``, ``num_components`` (hybrid: stage-2 components kept).
        """
        n_draws = self.A.shape[0]
        if not isinstance(num_chains, int) or num_chains < 1 or n_draws % num_chains:
            raise ValueError(
                f"argument 'num_chains' must be an int >= 1 dividing the {n_draws} draws, got "
                f"{num_chains!r}."
            )
        names = list(self.node_names)
        n = len(names)
        return to_inference_data(
            {"A": np.asarray(self.A).reshape(num_chains, n_draws // num_chains, n, n)},
            coords={"target": names, "source": names},
            dims={"A": ["target", "source"]},
            attrs={
                "inference_library": "bayesflow_nets.coupling",
                "method": self.method,
                "num_components": None if self.delays is None else int(len(self.delays)),
            },
        )


def _names(n: int, node_names) -> tuple[str, ...]:
    if node_names is None:
        return tuple(f"node{i}" for i in range(n))
    names = tuple(str(x) for x in node_names)
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"argument 'node_names' must be {n} distinct names, got {node_names!r}.")
    return names


def rdcm_posterior(
    result: RDCMResult, n_draws: int = 2000, seed: int = 0, node_names=None
) -> CouplingPosterior:
    """Draws of ``A`` from an rDCM fit, in the common result type."""
    n = result.mean.shape[0]
    draws = result.draws(seed, n_draws)[:, :, :n]
    return CouplingPosterior(draws, "rdcm", _names(n, node_names))


def reverse_kl_posterior(
    result: ReverseKLResult, key: PRNGKeyArray, n_draws: int = 2000, node_names=None
) -> CouplingPosterior:
    """Draws of ``A`` from the plain reverse-KL baseline, in the common result type."""
    A, d, _, _ = result.draws(key, n_draws)
    return CouplingPosterior(
        np.asarray(A), "reverse_kl_vi", _names(result.model.n_nodes, node_names), np.asarray(d)
    )


class HybridVI(eqx.Module):
    """Hybrid forward-KL / reverse-KL VI for directed couplings under unknown delays (MATH.md §4).

    ``posterior`` is a trained ``MeasurementPosterior`` (stage 1; trained once and reused); if
    ``None``, ``fit`` trains one for ``train_steps`` steps on simulations of the data's length.
    ``fit`` draws ``n_hp_draws`` measurement parameters, fits ``q(A | HP^(k), Y)`` for each
    (vmapped; ``init="laplace"`` starts each from its Laplace approximation, then ``vi_steps``
    ELBO steps polish it) and returns the equal-weight mixture ``q(A | Y)`` as draws (MATH.md §4
    step 3). ``laplace_iters``: Adam steps towards each mode in the Laplace start.
    ``covariance="rows"`` gives the components a shared row-block-diagonal Laplace
    covariance (``fit_conditional_couplings``): the setting for large N, with ``vi_steps=0``.
    ``weighting="evidence"`` (our extension) instead weights component k by the self-normalised
    importance weight ``p(HP^(k)) p̂(Y | HP^(k)) / q_φ(HP^(k) | Y)``, with ``p̂`` the
    ``n_evidence``-sample importance estimate of the conditional evidence from the fitted
    ``q(A | HP^(k), Y)`` (``conditional_log_evidence``), so the mixture targets the exact
    marginal ``p(A | Y)`` whatever the quality of stage 1 (the proposal).
    """

    model: CouplingModel
    posterior: MeasurementPosterior | None = None
    n_hp_draws: int = 8
    vi_steps: int = 100
    learning_rate: float = 1e-3
    init: str = "laplace"
    covariance: str = "full"
    laplace_iters: int = 300
    n_mc: int = 2
    draws_per_component: int = 250
    train_steps: int = 1000
    likelihood: str = "kalman"
    weighting: str = "uniform"
    n_evidence: int = 64
    progress: bool = False

    def __check_init__(self):
        if not isinstance(self.model, CouplingModel):
            raise TypeError(
                f"argument 'model' must be a CouplingModel, got {type(self.model).__name__}."
            )
        if self.posterior is not None and not isinstance(self.posterior, MeasurementPosterior):
            raise TypeError(
                f"argument 'posterior' must be a MeasurementPosterior or None, got {type(self.posterior).__name__}."
            )
        if self.likelihood not in ("kalman", "whittle"):
            raise ValueError(
                f"argument 'likelihood' must be 'kalman' (exact) or 'whittle' (fast), got {self.likelihood!r}."
            )
        _check_init(self.init)
        _check_covariance(self.covariance, self.init)
        if self.weighting not in ("uniform", "evidence"):
            raise ValueError(
                f"argument 'weighting' must be 'uniform' or 'evidence', got {self.weighting!r}."
            )
        if not isinstance(self.vi_steps, int) or self.vi_steps < 0:
            raise ValueError(f"argument 'vi_steps' must be an int >= 0, got {self.vi_steps!r}.")
        for name in (
            "n_hp_draws",
            "laplace_iters",
            "n_mc",
            "draws_per_component",
            "train_steps",
            "n_evidence",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"argument {name!r} must be an int >= 1, got {v!r}.")

    def fit(self, Y, TR: float, *, key: PRNGKeyArray, node_names=None) -> CouplingPosterior:
        """Fit ``q(A | Y)`` to ``T×N`` data ``Y`` sampled every ``TR`` seconds."""
        arr = check_data(Y, TR, self.model)
        names = _names(self.model.n_nodes, node_names)
        Yj = jnp.asarray(arr - arr.mean(axis=0))
        k_train, k_hp, k_vi, k_draw, k_ev = jax.random.split(key, 5)
        post = self.posterior
        if post is None:
            post, _ = train_measurement_posterior(
                k_train, self.model, arr.shape[0], steps=self.train_steps, progress=self.progress
            )
        delays, hrf_scale, noise = eqx.filter_jit(post.sample)(k_hp, Yj, self.n_hp_draws)
        res = fit_conditional_couplings(
            k_vi,
            self.model,
            Yj,
            delays,
            hrf_scale,
            noise,
            steps=self.vi_steps,
            learning_rate=self.learning_rate,
            n_mc=self.n_mc,
            likelihood=self.likelihood,
            init=self.init,
            covariance=self.covariance,
            laplace_iters=self.laplace_iters,
            progress=self.progress,
        )
        n = self.model.n_nodes
        ok = np.asarray(res.finite)
        n_comp = self.n_hp_draws
        if self.weighting == "evidence":
            # self-normalised importance weights p(HP) p̂(Y | HP) / q_φ(HP | Y) (our extension)
            log_ev = conditional_log_evidence(
                k_ev,
                self.model,
                Yj,
                delays,
                hrf_scale,
                noise,
                res,
                n_samples=self.n_evidence,
                likelihood=self.likelihood,
            )
            h = hp_to_unconstrained(self.model, delays, hrf_scale, noise)
            log_prior = jax.vmap(lambda hh: _log_prior_hp_unconstrained(self.model, hh))(h)
            log_q = jax.vmap(post.log_prob, in_axes=(None, 0, 0, 0))(Yj, delays, hrf_scale, noise)
            logw = np.asarray(log_ev + log_prior - log_q, np.float64)
            logw = np.where(ok & np.isfinite(logw), logw, -np.inf)
        else:
            logw = np.where(ok, 0.0, -np.inf)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        k_idx, k_eps = jax.random.split(k_draw)
        if self.weighting == "uniform":
            comp = np.repeat(np.nonzero(ok)[0], self.draws_per_component)
        else:
            seed = int(jax.random.randint(k_idx, (), 0, 2**31 - 1))
            comp = np.sort(
                np.random.default_rng(seed).choice(n_comp, n_comp * self.draws_per_component, p=w)
            )
        eps = np.asarray(jax.random.normal(k_eps, (comp.size, n * n), res.mean.dtype))
        mean, tril = np.asarray(res.mean), np.asarray(res.scale_tril)
        draws = np.empty_like(eps)
        for c in np.unique(comp):  # one matmul per component (no (draws, d, d) gather)
            rows = comp == c
            draws[rows] = mean[c] + eps[rows] @ tril[c].T
        draws = draws.reshape(-1, n, n)
        return CouplingPosterior(
            draws,
            "hybrid",
            names,
            np.asarray(delays)[ok],
            np.asarray(res.mean).reshape(-1, n, n)[ok],
            w[ok],
        )

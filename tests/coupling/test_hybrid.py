"""Stage 1 (forward KL), Whittle vs Kalman, HybridVI result API and the 2-node driver case (MATH.md §4)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesflow_nets.coupling import (
    CouplingModel,
    CouplingParams,
    CouplingPosterior,
    HybridVI,
    MeasurementPosterior,
    conditional_log_evidence,
    fit_conditional_couplings,
    hp_to_unconstrained,
    kalman_log_likelihood,
    measurement_kernel,
    rdcm,
    sample_prior,
    simulate,
    train_measurement_posterior,
    whittle_log_likelihood,
)
from bayesflow_nets.coupling._reverse_kl import _log_prior_hp_unconstrained

DRIVER_A = np.array([[-0.5, 0.0], [0.4, -0.5]])  # node 0 drives node 1 (A[target, source])


def test_whittle_matches_kalman_likelihood_differences(x64):
    model = CouplingModel(n_nodes=3, tr=1.0, max_delay=4.0)
    p = sample_prior(jax.random.key(0), model, jnp.float64)
    _, Y = simulate(jax.random.key(1), p, model, 600)
    Y = Y - jnp.mean(Y, axis=0)
    kern = measurement_kernel(model, p.delays, p.hrf_scale)
    E = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    kal = [
        kalman_log_likelihood(model, p.A + s * E, kern, p.noise_scale, Y) for s in (0.0, 0.1, 0.3)
    ]
    wht = [
        whittle_log_likelihood(model, p.A + s * E, kern, p.noise_scale, Y) for s in (0.0, 0.1, 0.3)
    ]
    dk = np.diff(np.asarray(kal))
    dw = np.diff(np.asarray(wht))
    # asymptotically equivalent: log-likelihood differences agree to within a few nats / 10 %
    np.testing.assert_allclose(dw, dk, rtol=0.1, atol=3.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_whittle_tracks_kalman_on_smooth_low_noise_driver_data(x64, seed):
    # the 2-node driver case (σ = 0.05 ≪ signal, T = 1000): the plain Whittle likelihood's
    # spectral leakage made it prefer the reversed direction by ~11 nats more than the exact
    # Kalman likelihood (seed 1); the differenced, debiased version must track it
    model = CouplingModel(n_nodes=2, tr=1.0, max_delay=4.0)
    p = CouplingParams(
        jnp.asarray(DRIVER_A, jnp.float32), jnp.array([3.5, 0.0]), jnp.ones(2), jnp.full(2, 0.05)
    )
    _, Y = simulate(jax.random.key(seed), p, model, 1000)
    Y = (Y - jnp.mean(Y, axis=0)).astype(jnp.float64)
    sigma = jnp.full(2, 0.05)
    cases = [  # (delays, A): truth, reversed mode, truth delays with a weaker edge
        ((3.5, 0.0), DRIVER_A),
        ((0.5, 0.0), np.array([[-0.65, 0.33], [0.02, -0.44]])),
        ((3.5, 0.0), np.array([[-0.5, 0.0], [0.34, -0.5]])),
    ]
    kal, wht = [], []
    for d, A in cases:
        kern = measurement_kernel(model, jnp.asarray(d, jnp.float64), jnp.ones(2))
        kal.append(float(kalman_log_likelihood(model, jnp.asarray(A), kern, sigma, Y)))
        wht.append(float(whittle_log_likelihood(model, jnp.asarray(A), kern, sigma, Y)))
    kal, wht = np.asarray(kal), np.asarray(wht)
    np.testing.assert_allclose(wht[0] - wht[1:], kal[0] - kal[1:], atol=2.5)


def test_summary_is_permutation_equivariant_and_log_prob_invariant():
    model = CouplingModel(n_nodes=3, tr=2.0, max_delay=3.0)
    post = MeasurementPosterior(jax.random.key(0), model, flow_layers=2, nn_width=16)
    p = sample_prior(jax.random.key(1), model)
    _, Y = simulate(jax.random.key(2), p, model, 80)
    perm = jnp.array([2, 0, 1])
    summary = eqx.filter_jit(lambda pst, y: pst.summary(model, y))
    log_prob = eqx.filter_jit(lambda pst, *a: pst.log_prob(*a))
    c = summary(post, Y)
    c_perm = summary(post, Y[:, perm])
    np.testing.assert_allclose(c_perm, c[perm], rtol=1e-5, atol=1e-5)
    lp = log_prob(post, Y, p.delays, p.hrf_scale, p.noise_scale)
    lp_perm = log_prob(post, Y[:, perm], p.delays[perm], p.hrf_scale[perm], p.noise_scale[perm])
    np.testing.assert_allclose(lp_perm, lp, rtol=1e-5, atol=1e-4)


def test_stage1_sampler_matches_chained_log_prob():
    # the node-by-node sampler must draw from the density that log_prob evaluates: compare the
    # sample frequency of an event with its probability by importance sampling under log_prob
    model = CouplingModel(n_nodes=2, tr=2.0, max_delay=3.0)
    post = MeasurementPosterior(jax.random.key(0), model, flow_layers=2, nn_width=16)
    p = sample_prior(jax.random.key(1), model)
    _, Y = simulate(jax.random.key(2), p, model, 64)
    d, s, sig = eqx.filter_jit(post.sample)(jax.random.key(3), Y, 8000)
    rel = d[:, 0] - d[:, 1]
    freq = float(jnp.mean(rel > 0.5))
    # proposal: the prior of HP (uniform delays, log-normal scales), importance weights q/p
    n = 40_000
    kd, ks, kn = jax.random.split(jax.random.key(4), 3)
    dp = jax.random.uniform(kd, (n, 2), minval=0.0, maxval=3.0)
    sp = jnp.exp(model.hrf_scale_sd * jax.random.normal(ks, (n, 2)))
    npr = model.noise_loc * jnp.exp(model.noise_sd * jax.random.normal(kn, (n, 2)))
    h = hp_to_unconstrained(model, dp, sp, npr)
    log_p = jax.vmap(lambda hh: _log_prior_hp_unconstrained(model, hh))(h)
    log_q = eqx.filter_jit(lambda pst, *a: jax.vmap(pst.log_prob, in_axes=(None, 0, 0, 0))(*a))(
        post, Y, dp, sp, npr
    )
    w = jnp.exp(log_q - log_p)
    np.testing.assert_allclose(float(jnp.mean(w)), 1.0, atol=0.05)  # q is normalised
    est = float(jnp.sum(w * ((dp[:, 0] - dp[:, 1]) > 0.5)) / jnp.sum(w))
    np.testing.assert_allclose(freq, est, atol=0.03)


@pytest.mark.slow
def test_stage1_training_learns_noise_scale_and_checkpoints(tmp_path):
    model = CouplingModel(n_nodes=2, tr=2.0, max_delay=3.0, noise_sd=1.0)
    path = str(tmp_path / "stage1.eqx")
    opts = dict(steps=300, batch_size=32, learning_rate=2e-3, checkpoint=path, progress=False)
    post, losses = train_measurement_posterior(jax.random.key(0), model, 100, **opts)
    assert losses.shape == (300,)
    assert float(jnp.mean(losses[-50:])) < float(jnp.mean(losses[:20])) - 0.5
    # the finished checkpoint gives the trained posterior without training
    restored, _ = train_measurement_posterior(jax.random.key(0), model, 100, **opts)
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(
            lambda a, b: bool(jnp.all(a == b)),
            eqx.filter(restored, eqx.is_array),
            eqx.filter(post, eqx.is_array),
        )
    )
    # noise scales far above the prior median (0.1) are recovered to within a factor 2
    p = CouplingParams(
        jnp.array([[-0.3, 0.0], [0.2, -0.3]]),
        jnp.array([1.0, 2.0]),
        jnp.ones(2),
        jnp.array([0.3, 0.6]),
    )
    _, Y = simulate(jax.random.key(3), p, model, 100)
    _, _, sig = post.sample(jax.random.key(4), Y, 400)
    med = jnp.median(sig, axis=0)
    np.testing.assert_array_less(jnp.abs(jnp.log(med / p.noise_scale)), jnp.log(2.0))


def test_coupling_posterior_api_and_arviz():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(4000, 2, 2)) * 0.1 + np.array([[-0.5, 0.0], [0.3, -0.5]])
    post = CouplingPosterior(draws, "test", ("V1", "MT"))
    lo, hi = post.interval(0.9)
    np.testing.assert_allclose(lo, post.mean - 1.6449 * 0.1, atol=0.01)
    np.testing.assert_allclose(hi, post.mean + 1.6449 * 0.1, atol=0.01)
    ep = post.edge_probability(0.1)
    assert np.isnan(ep[0, 0]) and np.isnan(ep[1, 1])
    from scipy.stats import norm

    np.testing.assert_allclose(
        ep[1, 0], norm.sf(0.1, 0.3, 0.1) + norm.cdf(-0.1, 0.3, 0.1), atol=0.02
    )
    np.testing.assert_allclose(ep[0, 1], 2 * norm.sf(0.1, 0.0, 0.1), atol=0.03)
    idata = post.to_arviz()
    A = idata.posterior["A"]
    assert A.dims == ("chain", "draw", "target", "source")
    assert list(A.coords["target"].values) == ["V1", "MT"]
    np.testing.assert_allclose(A.sel(target="MT", source="V1").values[0], draws[:, 1, 0])
    with pytest.raises(ValueError, match="'level' must be in \\(0, 1\\)"):
        post.interval(1.5)


def test_hybrid_fit_is_the_equal_weight_mixture_of_stage2_components():
    model = CouplingModel(n_nodes=2, tr=2.0, max_delay=3.0)
    post = MeasurementPosterior(
        jax.random.key(0), model, flow_layers=2, nn_width=16
    )  # untrained is fine
    p = sample_prior(jax.random.key(1), model)
    _, Y = simulate(jax.random.key(2), p, model, 64)
    hv = HybridVI(
        model, post, n_hp_draws=4, vi_steps=30, draws_per_component=500, likelihood="whittle"
    )
    res = hv.fit(np.asarray(Y), 2.0, key=jax.random.key(3), node_names=["a", "b"])
    assert res.A.shape == (4 * 500, 2, 2) and res.delays.shape == (4, 2)
    assert np.all((res.delays >= 0) & (res.delays <= 3.0))
    # mixture mean = average of the component means (equal weights), up to MC error
    np.testing.assert_allclose(res.mean, res.component_means.mean(axis=0), atol=0.02)
    assert res.to_arviz().posterior["A"].shape == (1, 2000, 2, 2)
    with pytest.raises(ValueError, match="'node_names' must be 2 distinct names"):
        hv.fit(np.asarray(Y), 2.0, key=jax.random.key(3), node_names=["a", "a"])


@pytest.mark.slow
def test_hybrid_evidence_weighting_is_a_weighted_mixture():
    model = CouplingModel(n_nodes=2, tr=2.0, max_delay=3.0)
    post = MeasurementPosterior(jax.random.key(0), model, flow_layers=2, nn_width=16)
    p = sample_prior(jax.random.key(1), model)
    _, Y = simulate(jax.random.key(2), p, model, 64)
    hv = HybridVI(
        model,
        post,
        n_hp_draws=6,
        vi_steps=40,
        draws_per_component=1000,
        likelihood="whittle",
        weighting="evidence",
        n_evidence=16,
    )
    res = hv.fit(np.asarray(Y), 2.0, key=jax.random.key(3))
    assert res.weights.shape == (6,) and np.all(res.weights >= 0)
    np.testing.assert_allclose(res.weights.sum(), 1.0, rtol=1e-12)
    assert res.A.shape == (6 * 1000, 2, 2)
    # mixture mean = weighted average of the component means, up to MC error (components with
    # a large weight get more draws than draws_per_component)
    expected = np.einsum("k,kij->ij", res.weights, res.component_means)
    np.testing.assert_allclose(res.mean, expected, atol=0.03)
    with pytest.raises(ValueError, match="'n_evidence' must be an int >= 1"):
        HybridVI(model, post, n_evidence=0)


@pytest.mark.slow
def test_conditional_evidence_matches_reference_importance_sampling(x64):
    # validity of evidence weighting: the Gaussian q(A | HP, Y) is close enough to the
    # conditional posterior that a 64-sample estimate (and the ELBO) match a large reference
    model = CouplingModel(n_nodes=2, tr=2.0, max_delay=2.0, hrf_length=8.0, burn_in=3)
    p = sample_prior(jax.random.key(4), model, jnp.float64)
    _, Y = simulate(jax.random.key(5), p, model, 80)
    d, s, sig = p.delays[None], p.hrf_scale[None], p.noise_scale[None]
    fit = fit_conditional_couplings(
        jax.random.key(6), model, Y, d, s, sig, steps=300, learning_rate=3e-3, n_mc=8
    )
    est = conditional_log_evidence(jax.random.key(7), model, Y, d, s, sig, fit, n_samples=64)
    # reference: 10000 draws from q widened ×1.5 (heavier than the target on every axis)
    wide = fit._replace(scale_tril=1.5 * fit.scale_tril)
    ref = conditional_log_evidence(jax.random.key(8), model, Y, d, s, sig, wide, n_samples=10_000)
    elbo = -float(jnp.mean(fit.losses[0, -50:]))
    np.testing.assert_allclose(float(est[0]), float(ref[0]), atol=0.1)
    assert -0.5 < elbo - float(ref[0]) <= 0.1  # ELBO ≤ log evidence, gap small
    with pytest.raises(ValueError, match="'n_samples' must be an int >= 1"):
        conditional_log_evidence(jax.random.key(7), model, Y, d, s, sig, fit, n_samples=0)


@pytest.fixture(scope="module")
def driver_stage1():
    # stage 1 is amortised: trained once (10000 × 64 simulations of T = 1000) and reused
    model = CouplingModel(n_nodes=2, tr=1.0, max_delay=4.0)
    post, _ = train_measurement_posterior(
        jax.random.key(0),
        model,
        1000,
        steps=10_000,
        batch_size=64,
        learning_rate=2e-3,
        progress=False,
    )
    return post


def _driver_case(post, lik: str, seed: int, weighting: str = "uniform"):
    model = post.model
    p = CouplingParams(
        jnp.asarray(DRIVER_A, jnp.float32), jnp.array([3.5, 0.0]), jnp.ones(2), jnp.full(2, 0.05)
    )
    _, Y = simulate(jax.random.key(seed), p, model, 1000)
    Y = np.asarray(Y)
    rd = rdcm(Y, 1.0)
    hyb = HybridVI(
        model,
        post,
        n_hp_draws=32,
        n_mc=4,
        likelihood=lik,
        weighting=weighting,
    )
    return model, Y, rd, hyb.fit(Y, 1.0, key=jax.random.key(10 + seed))


def _assert_rdcm_wrong_way(rd):
    lo, hi = rd.interval(0.9)
    # rDCM points the wrong way, confidently: target→driver edge > 0, driver→target excludes the truth
    assert lo[0, 1] > 0 and hi[1, 0] < DRIVER_A[1, 0]


@pytest.mark.parametrize("seed", [0, 1])
def test_rdcm_points_the_wrong_way_when_driver_measured_later(seed):
    model = CouplingModel(n_nodes=2, tr=1.0, max_delay=4.0)
    p = CouplingParams(
        jnp.asarray(DRIVER_A, jnp.float32), jnp.array([3.5, 0.0]), jnp.ones(2), jnp.full(2, 0.05)
    )
    _, Y = simulate(jax.random.key(seed), p, model, 1000)
    _assert_rdcm_wrong_way(rdcm(np.asarray(Y), 1.0))


_SEED0_MISS = (
    "measured 2026-11-23 (10000x64 stage-1 simulations, K=32, Whittle): the hybrid's 90% interval "
    "for A[1,0] is [-0.08, 0.37] and for A[0,1] [0.003, 0.31]. With this seed's data even the "
    "true HP gives q(A[1,0] | HP, Y) = 0.35 +- 0.035 (exact Kalman: 0.34), so 0.4 is ~1.5 sd out "
    "of every component; the mixture has 16% of its components at the true relative delay."
)


_SEED1_MISS = (
    "measured 2026-12-08 with stage 1 trained by fit_to_loss (same algorithm, another random "
    "stream; held-out loss -2.450 vs -2.454 before): the 90% interval for A[0,1] starts at 0.009 "
    "and misses the true 0 by 0.009. Stage 1 does not yet learn the relative delays well enough "
    "for this case to pass on every seed."
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed",
    [
        pytest.param(0, marks=pytest.mark.xfail(strict=False, reason=_SEED0_MISS)),
        pytest.param(1, marks=pytest.mark.xfail(strict=False, reason=_SEED1_MISS)),
    ],
)
def test_driver_measured_later_hybrid_covers_truth(driver_stage1, seed):
    _, _, rd, res = _driver_case(driver_stage1, "whittle", seed)
    _assert_rdcm_wrong_way(rd)
    lo, hi = res.interval(0.9)
    assert lo[1, 0] <= DRIVER_A[1, 0] <= hi[1, 0]
    assert lo[0, 1] <= 0.0 <= hi[0, 1]

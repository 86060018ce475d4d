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
    kalman_log_likelihood,
    measurement_kernel,
    rdcm,
    sample_prior,
    simulate,
    train_measurement_posterior,
    whittle_log_likelihood,
)


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


@pytest.mark.slow
def test_stage1_training_learns_noise_scale_and_checkpoints(tmp_path):
    model = CouplingModel(n_nodes=2, tr=2.0, max_delay=3.0, noise_sd=1.0)
    path = str(tmp_path / "stage1.eqx")
    post, losses = train_measurement_posterior(
        jax.random.key(0),
        model,
        100,
        steps=300,
        batch_size=32,
        learning_rate=2e-3,
        checkpoint=path,
        progress=False,
    )
    assert losses.shape == (300,)
    assert float(jnp.mean(losses[-50:])) < float(jnp.mean(losses[:20])) - 0.5
    restored = eqx.tree_deserialise_leaves(path, post)
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


DRIVER_A = np.array([[-0.5, 0.0], [0.4, -0.5]])  # node 0 drives node 1 (A[target, source])


def _driver_case(lik: str, seed: int, weighting: str = "uniform"):
    model = CouplingModel(n_nodes=2, tr=1.0, max_delay=4.0)
    p = CouplingParams(
        jnp.asarray(DRIVER_A, jnp.float32), jnp.array([3.5, 0.0]), jnp.ones(2), jnp.full(2, 0.05)
    )
    _, Y = simulate(jax.random.key(seed), p, model, 1000)
    Y = np.asarray(Y)
    rd = rdcm(Y, 1.0)
    post, _ = train_measurement_posterior(
        jax.random.key(0),
        model,
        1000,
        steps=4000,
        batch_size=64,
        learning_rate=2e-3,
        progress=False,
    )
    hyb = HybridVI(
        model,
        post,
        n_hp_draws=32,
        vi_steps=150,
        learning_rate=0.05,
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


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,
    reason=(
        "measured 2026-11-23: with stage 1 trained 4000x64 simulations the delay posterior stays close "
        "to the U(0, 4) prior, so few of the K=32 components have d_0 - d_1 near 3.5; the mixture's 90% "
        "interval for A[1,0] was [-0.06, 0.34] (truth 0.4). Evidence weighting picked the reversed mode."
    ),
)
@pytest.mark.parametrize("seed", [0, 1])
def test_driver_measured_later_hybrid_covers_truth(seed):
    _, _, rd, res = _driver_case("whittle", seed)
    _assert_rdcm_wrong_way(rd)
    lo, hi = res.interval(0.9)
    assert lo[1, 0] <= DRIVER_A[1, 0] <= hi[1, 0]
    assert lo[0, 1] <= 0.0 <= hi[0, 1]

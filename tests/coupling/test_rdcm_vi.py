"""rDCM recovery, Gaussian VI vs closed form, input validation (MATH.md §4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesflow_nets.coupling import (
    CouplingModel,
    CouplingParams,
    HybridVI,
    check_data,
    fit_conditional_couplings,
    fit_gaussian_vi,
    input_drive,
    laplace_gaussian,
    mode_step_size,
    rdcm,
    rdcm_posterior,
    reverse_kl_vi,
    simulate,
    train_measurement_posterior,
)

A_TRUE = np.array([[-0.5, 0.0, 0.3], [0.4, -0.5, 0.0], [0.0, -0.3, -0.5]])


@pytest.fixture(scope="module")
def rdcm_data():
    # rDCM's own assumptions: canonical HRF for every region, no delays, deterministic dynamics
    # driven by known inputs, high SNR
    model = CouplingModel(n_nodes=3, tr=1.0, max_delay=0.0, state_noise=1e-3)
    params = CouplingParams(
        jnp.asarray(A_TRUE, jnp.float32), jnp.zeros(3), jnp.ones(3), jnp.full(3, 0.01)
    )
    n_time = 500
    U = jax.random.normal(jax.random.key(5), (model.n_burn + n_time, 3))
    _, Y = simulate(jax.random.key(0), params, model, n_time, input_drive(model, jnp.eye(3), U))
    return np.asarray(Y), np.asarray(U[model.n_burn :])


def test_rdcm_recovers_A_under_its_assumptions(rdcm_data):
    Y, U = rdcm_data
    res = rdcm(Y, 1.0, U)
    A_hat = res.mean[:, :3]
    np.testing.assert_allclose(A_hat, A_TRUE, atol=0.06)
    np.testing.assert_allclose(res.mean[:, 3:], np.eye(3), atol=0.08)  # C
    # free-energy criterion reached well before the iteration cap
    assert np.all(res.n_iter < 50)
    # sign of every true edge recovered with confidence
    lo = A_hat - 3 * res.sd[:, :3]
    hi = A_hat + 3 * res.sd[:, :3]
    edges = A_TRUE != 0
    assert np.all((lo[edges] > 0) | (hi[edges] < 0))


def test_rdcm_free_energy_is_stationary_at_convergence(rdcm_data):
    Y, U = rdcm_data
    res = rdcm(Y, 1.0, U, tol=1e-10, max_iter=1000)
    assert np.all(res.tau_shape / res.tau_rate > 0)
    res2 = rdcm(Y, 1.0, U, tol=1e-12, max_iter=1000)
    np.testing.assert_allclose(res2.free_energy, res.free_energy, rtol=1e-9)
    np.testing.assert_allclose(res2.mean, res.mean, atol=1e-8)


def test_rdcm_posterior_draws_match_moments(rdcm_data):
    Y, U = rdcm_data
    res = rdcm(Y, 1.0)
    post = rdcm_posterior(res, n_draws=4000, seed=1)
    np.testing.assert_allclose(post.mean, res.mean, atol=4 * res.sd.max() / np.sqrt(4000) * 3)
    np.testing.assert_allclose(post.sd, res.sd, rtol=0.1)


def _gaussian_target():
    """``(m, S, logp)``: a correlated 3-d Gaussian ``N(m, S)``, ``logp(z, aux, data)`` centred at
    ``aux``."""
    m = jnp.array([1.0, -2.0, 0.5])
    Lt = jnp.array([[1.0, 0.0, 0.0], [0.5, 0.7, 0.0], [-0.3, 0.2, 0.4]])
    S = Lt @ Lt.T
    P = jnp.linalg.inv(S)

    def logp(z, aux, data):
        d = z - aux
        return -0.5 * d @ P @ d

    return m, S, logp


def test_gaussian_vi_recovers_gaussian_target():
    # target N(m, S): the optimal full-rank Gaussian q is the target itself
    m, S, logp = _gaussian_target()

    res = fit_gaussian_vi(
        jax.random.key(0),
        logp,
        m,
        jnp.zeros(3),
        init_scale=1.0,
        steps=3000,
        learning_rate=3e-2,
        n_mc=8,
    )
    np.testing.assert_allclose(res.mean, m, atol=0.05)
    np.testing.assert_allclose(res.scale_tril @ res.scale_tril.T, S, atol=0.05)
    assert bool(res.finite)


@pytest.mark.parametrize("batched", [False, True])
def test_laplace_gaussian_is_exact_on_a_gaussian_target(batched):
    # log-quadratic target: the mode is m and the inverse Hessian is S, so N(ẑ, H⁻¹) = N(m, S)
    m, S, logp = _gaussian_target()

    aux, init = (jnp.stack([m, m + 1.0]), jnp.zeros((2, 3))) if batched else (m, jnp.zeros(3))
    mean, L, ok = laplace_gaussian(
        logp, aux, init, maxiter=500, batched=batched, min_precision=1e-3
    )
    np.testing.assert_allclose(mean, aux, atol=1e-3)
    np.testing.assert_allclose(L @ jnp.swapaxes(L, -1, -2), jnp.broadcast_to(S, L.shape), atol=1e-4)
    assert bool(jnp.all(ok))
    # the eigenvalue floor: precisions below min_precision are raised to it (wider, still valid)
    _, L2, _ = laplace_gaussian(logp, m, jnp.zeros(3), maxiter=500, min_precision=10.0)
    cov = L2 @ L2.T
    assert float(jnp.max(jnp.linalg.eigvalsh(cov))) <= 0.1 + 1e-5
    # steps=0 returns that start unchanged
    res = fit_gaussian_vi(
        jax.random.key(0),
        logp,
        m,
        mean if not batched else mean[0],
        init_scale=L if not batched else L[0],
        steps=0,
    )
    np.testing.assert_allclose(res.scale_tril @ res.scale_tril.T, S, atol=1e-4)


def test_block_laplace_is_exact_on_a_block_diagonal_gaussian():
    # precision with two 3×3 blocks (rows of a 2×3 "A"): the coloured 2b-gradient estimate is
    # exact, and problems that differ only in their mean share that curvature exactly
    _, S, _ = _gaussian_target()
    P = jnp.kron(jnp.eye(2), jnp.linalg.inv(S)) * jnp.array([1.0] * 3 + [4.0] * 3)[:, None]
    P = 0.5 * (P + P.T)

    def logp(z, aux, data):
        d = z - aux
        return -0.5 * d @ P @ d

    centres = jnp.stack([jnp.arange(6.0) / 5, -jnp.arange(6.0) / 7, jnp.ones(6) * 0.3])
    mean, L, ok = laplace_gaussian(
        logp, centres, jnp.zeros((3, 6)), batched=True, block_size=3, min_precision=1e-3
    )
    np.testing.assert_allclose(mean, centres, atol=1e-3)
    np.testing.assert_allclose(L[0] @ L[0].T, jnp.linalg.inv(P), atol=1e-4)
    assert np.all(np.asarray(L[:, :3, 3:]) == 0)  # block-diagonal factor
    assert bool(jnp.all(ok))
    with pytest.raises(ValueError, match="'block_size' must be None or an int >= 1 dividing"):
        laplace_gaussian(logp, centres[0], jnp.zeros(6), block_size=4)
    with pytest.raises(ValueError, match="'step_size' must be a finite float > 0"):
        laplace_gaussian(logp, centres[0], jnp.zeros(6), step_size=0.0)


def test_mode_step_size_scales_with_network_size():
    # Adam's mixed-sign first steps move rho(I + TR A) by ~ 2 TR step sqrt(N): the step keeps
    # that move fixed beyond N = 10 and is unchanged below (the calibrated small-N settings)
    assert mode_step_size(5) == mode_step_size(10) == 0.02
    np.testing.assert_allclose(mode_step_size(50) * np.sqrt(50), 0.02 * np.sqrt(10))


def test_whittle_block_laplace_matches_full_laplace_marginals():
    # the structured stage-2 start (covariance="rows") against the full Laplace, N = 4, one HP
    # draw: the cross-row curvature it ignores is small, so the marginal sds agree closely
    model = CouplingModel(n_nodes=4, tr=2.0, max_delay=3.0)
    A = jnp.array(
        [
            [-0.5, 0.0, 0.3, 0.0],
            [0.35, -0.5, 0.0, 0.0],
            [0.0, -0.3, -0.5, 0.2],
            [0.0, 0.0, 0.0, -0.5],
        ]
    )
    params = CouplingParams(A, jnp.array([0.5, 2.0, 1.0, 0.0]), jnp.ones(4), jnp.full(4, 0.1))
    _, Y = simulate(jax.random.key(3), params, model, 300)
    Y = Y - Y.mean(axis=0)
    hp = (params.delays[None], params.hrf_scale[None], params.noise_scale[None])
    fits = {
        c: fit_conditional_couplings(
            jax.random.key(1), model, Y, *hp, likelihood="whittle", steps=0, covariance=c
        )
        for c in ("full", "rows")
    }
    sd = {c: jnp.sqrt(jnp.diagonal(f.scale_tril[0] @ f.scale_tril[0].T)) for c, f in fits.items()}
    np.testing.assert_allclose(
        fits["rows"].mean, fits["full"].mean, atol=0.2 * float(sd["full"].min())
    )
    np.testing.assert_allclose(sd["rows"], sd["full"], rtol=0.1)


def test_stage2_from_laplace_start_recovers_couplings():
    # regression test: from the prior mean, Adam at the old default step (2e-2) inflated q's
    # scales until the ELBO was thousands of nats below the optimum (posterior sd ~1 vs prior 0.3)
    model = CouplingModel(n_nodes=3, tr=2.0, max_delay=3.0)
    A = jnp.array([[-0.5, 0.0, 0.0], [0.35, -0.5, 0.0], [0.0, -0.3, -0.5]])
    params = CouplingParams(A, jnp.array([0.5, 2.0, 1.0]), jnp.ones(3), jnp.full(3, 0.1))
    _, Y = simulate(jax.random.key(0), params, model, 300)
    Y = Y - Y.mean(axis=0)
    hp = (params.delays[None], params.hrf_scale[None], params.noise_scale[None])
    res = fit_conditional_couplings(jax.random.key(1), model, Y, *hp, likelihood="whittle")
    mean = res.mean[0].reshape(3, 3)
    sd = jnp.sqrt(jnp.diagonal(res.scale_tril[0] @ res.scale_tril[0].T)).reshape(3, 3)
    off = ~np.eye(3, dtype=bool)
    z = np.abs(np.asarray((mean - A) / sd))[off]
    assert np.all(z < 3.5), z
    assert float(jnp.max(sd)) < 0.1  # concentrated: prior sd is 0.3 off the diagonal
    assert bool(res.finite[0])


def test_bad_inputs_raise_before_training():
    model = CouplingModel(n_nodes=2, tr=1.0, max_delay=4.0)
    hv = HybridVI(model)  # no trained posterior: fit would train first — errors must come earlier
    Y = np.random.default_rng(0).normal(size=(200, 2))
    key = jax.random.key(0)
    Ynan = Y.copy()
    Ynan[5, 1] = np.nan
    with pytest.raises(ValueError, match="contains NaN at time points \\[5\\]"):
        hv.fit(Ynan, 1.0, key=key)
    with pytest.raises(ValueError, match="too short for the delay/HRF range"):
        hv.fit(Y[:40], 1.0, key=key)
    with pytest.raises(ValueError, match="has 3 nodes .* n_nodes=2"):
        hv.fit(np.ones((200, 3)), 1.0, key=key)
    for tr in (0.0, -1.0):
        with pytest.raises(ValueError, match="'TR' must be finite and > 0"):
            hv.fit(Y, tr, key=key)
    with pytest.raises(ValueError, match="'TR'=2.0 does not match"):
        hv.fit(Y, 2.0, key=key)
    with pytest.raises(ValueError, match="must be a 2-D array"):
        check_data(np.ones(10), 1.0)
    with pytest.raises(ValueError, match="'TR' must be finite and > 0"):
        rdcm(Y, 0.0)
    with pytest.raises(ValueError, match="'n_nodes' must be an int >= 1"):
        CouplingModel(n_nodes=0, tr=1.0)
    with pytest.raises(ValueError, match="'tr' must be finite and > 0"):
        CouplingModel(n_nodes=2, tr=-1.0)
    with pytest.raises(ValueError, match="'n_hp_draws' must be an int >= 1"):
        HybridVI(model, n_hp_draws=0)
    with pytest.raises(ValueError, match="'covariance' must be 'full' or 'rows'"):
        HybridVI(model, covariance="diag")
    with pytest.raises(ValueError, match="'covariance'='rows' needs init='laplace'"):
        HybridVI(model, covariance="rows", init="prior")
    # the baselines and stage 1 validate too, before any work
    with pytest.raises(ValueError, match="contains NaN at time points \\[5\\]"):
        rdcm(Ynan, 1.0)
    with pytest.raises(ValueError, match="has 3 nodes .* n_nodes=2"):
        reverse_kl_vi(key, model, np.ones((200, 3)), 1.0)
    with pytest.raises(ValueError, match="'TR' must be finite and > 0"):
        reverse_kl_vi(key, model, Y, -2.0)
    with pytest.raises(ValueError, match="too short for the delay/HRF range"):
        train_measurement_posterior(key, model, 40, steps=1, progress=False)

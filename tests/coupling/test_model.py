"""Simulator vs NumPyro model, Fourier shift vs analytic shift, Kalman vs dense Gaussian (MATH.md §4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal
from numpyro import handlers
from numpyro.infer.util import log_density

from bayesflow_nets.coupling import (
    CouplingModel,
    CouplingParams,
    coupling_numpyro_model,
    double_gamma_hrf,
    kalman_log_likelihood_params,
    log_joint,
    measurement_autocovariance,
    measurement_kernel,
    observe,
    sample_prior,
    simulate,
    simulate_latent,
    whittle_log_likelihood,
)


def _small_model(**kw):
    return CouplingModel(n_nodes=2, tr=2.0, max_delay=2.0, hrf_length=8.0, burn_in=3, **kw)


def test_fourier_shift_matches_analytic_shift(x64):
    model = CouplingModel(n_nodes=3, tr=0.25, max_delay=3.0, hrf_length=30.0)
    delays = jnp.array([0.0, 1.3, 2.7])
    scales = jnp.array([1.0, 0.9, 1.1])
    kern = measurement_kernel(model, delays, scales)
    t = jnp.arange(model.kernel_length) * model.tr
    grid = jnp.arange(model.fft_length) * model.tr
    for r in range(3):
        norm = jnp.sum(double_gamma_hrf(grid, scales[r]))
        expected = double_gamma_hrf(t - delays[r], scales[r]) / norm
        # band-limited (Fourier) vs analytic shift: t⁵ onset of the HRF leaves ~1e-7·peak ringing
        np.testing.assert_allclose(kern[:, r], expected, atol=5e-6 * float(jnp.max(expected)))


def test_simulator_and_numpyro_log_density_agree(x64):
    model = CouplingModel(n_nodes=3, tr=1.0, max_delay=2.0, hrf_length=10.0)
    params = sample_prior(jax.random.key(0), model, jnp.float64)
    X, Y = simulate(jax.random.key(1), params, model, 30)
    assert X.shape == (model.n_burn + 30, 3) and Y.shape == (30, 3)
    # innovations that generate X (x_0 = w_0, w_t = x_t − F x_{t−1})
    F = jnp.eye(3) + model.tr * params.A
    w = jnp.concatenate([X[:1], X[1:] - X[:-1] @ F.T])
    np.testing.assert_allclose(simulate_latent(model, params.A, w), X, rtol=1e-10, atol=1e-10)
    values = {
        "A": params.A,
        "delays": params.delays,
        "hrf_scale": params.hrf_scale,
        "noise_scale": params.noise_scale,
        "w": w,
    }
    lp_numpyro, _ = log_density(coupling_numpyro_model, (model, 30), {"Y": Y}, values)
    np.testing.assert_allclose(lp_numpyro, log_joint(model, params, X, Y), rtol=1e-10)


def test_numpyro_prior_draw_matches_simulator_mean():
    model = CouplingModel(n_nodes=2, tr=1.0, max_delay=2.0, hrf_length=10.0)
    tr = handlers.trace(handlers.seed(coupling_numpyro_model, jax.random.key(3))).get_trace(
        model, 20
    )
    A, w = tr["A"]["value"], tr["w"]["value"]
    kern = measurement_kernel(model, tr["delays"]["value"], tr["hrf_scale"]["value"])
    np.testing.assert_allclose(tr["X"]["value"], simulate_latent(model, A, w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        tr["Y"]["fn"].base_dist.loc,
        observe(kern, tr["X"]["value"], model.n_burn),
        rtol=1e-5,
        atol=1e-5,
    )


def test_simulator_noise_scale_matches_params():
    model = CouplingModel(n_nodes=2, tr=1.0, max_delay=1.0, hrf_length=8.0)
    params = CouplingParams(
        jnp.array([[-0.5, 0.0], [0.3, -0.5]]),
        jnp.array([0.0, 1.0]),
        jnp.ones(2),
        jnp.array([0.5, 2.0]),
    )
    X, Y = simulate(jax.random.key(0), params, model, 4000)
    kern = measurement_kernel(model, params.delays, params.hrf_scale)
    resid = Y - observe(kern, X, model.n_burn)
    np.testing.assert_allclose(jnp.std(resid, axis=0), params.noise_scale, rtol=0.05)


@pytest.mark.parametrize("seed", [0, 1])
def test_kalman_matches_dense_gaussian_marginal(x64, seed):
    model = _small_model()
    n_time = 7
    params = sample_prior(jax.random.key(seed), model, jnp.float64)
    params = params._replace(noise_scale=jnp.array([0.3, 0.6]))
    _, Y = simulate(jax.random.key(seed + 10), params, model, n_time)
    kern = measurement_kernel(model, params.delays, params.hrf_scale)
    s = model.n_burn + n_time

    def mean_of_w(wflat):
        X = simulate_latent(model, params.A, wflat.reshape(s, 2))
        return observe(kern, X, model.n_burn).reshape(-1)

    J = jax.jacfwd(mean_of_w)(jnp.zeros(s * 2))
    cov = model.state_noise**2 * J @ J.T + jnp.diag(jnp.tile(params.noise_scale**2, n_time))
    dense = multivariate_normal.logpdf(Y.reshape(-1), jnp.zeros(n_time * 2), cov)
    kal = kalman_log_likelihood_params(
        model, params.A, params.delays, params.hrf_scale, params.noise_scale, Y
    )
    np.testing.assert_allclose(kal, dense, rtol=1e-9)


def test_measurement_autocovariance_matches_dense_stationary_covariance(x64):
    # oracle: the dense covariance of simulated measurements (Jacobian of the simulator in the
    # state noise) after a burn-in long enough for stationarity
    model = CouplingModel(n_nodes=3, tr=2.0, max_delay=2.0, hrf_length=8.0, burn_in=80)
    params = sample_prior(jax.random.key(3), model, jnp.float64)
    params = params._replace(noise_scale=jnp.array([0.3, 0.6, 0.2]))
    kern = measurement_kernel(model, params.delays, params.hrf_scale)
    n_time, s = 8, model.n_burn + 8

    def mean_of_w(wflat):
        X = simulate_latent(model, params.A, wflat.reshape(s, 3))
        return observe(kern, X, model.n_burn)

    J = jax.jacfwd(mean_of_w)(jnp.zeros(s * 3)).reshape(n_time, 3, s * 3)
    C = measurement_autocovariance(model, params.A, kern, params.noise_scale, 6)
    for tau in range(-1, 6):  # C(τ) = E[y_{t+τ} y_tᵀ], t = 2
        dense = model.state_noise**2 * J[2 + tau] @ J[2].T
        if tau == 0:
            dense = dense + jnp.diag(params.noise_scale**2)
        np.testing.assert_allclose(C[tau + 1], dense, rtol=1e-8, atol=1e-12)


def test_whittle_is_minus_inf_for_an_unstable_network_and_nan_otherwise():
    model = CouplingModel(n_nodes=2, tr=2.0, max_delay=2.0)
    params = sample_prior(jax.random.key(0), model)
    _, Y = simulate(jax.random.key(1), params, model, 60)
    kern = measurement_kernel(model, params.delays, params.hrf_scale)
    unstable = jnp.array([[0.2, 0.0], [0.0, -0.5]])  # F = I + 2A has eigenvalue 1.4
    assert np.isfinite(whittle_log_likelihood(model, params.A, kern, params.noise_scale, Y))
    assert whittle_log_likelihood(model, unstable, kern, params.noise_scale, Y) == -np.inf
    unit_root = jnp.array([[0.0, 0.0], [0.0, -0.5]])  # eigenvalue exactly 1: not stationary
    assert whittle_log_likelihood(model, unit_root, kern, params.noise_scale, Y) == -np.inf
    # NaN from any other cause is not disguised as "outside the support"
    Y_nan = Y.at[3, 0].set(jnp.nan)
    assert np.isnan(whittle_log_likelihood(model, params.A, kern, params.noise_scale, Y_nan))
    A_nan = params.A.at[0, 1].set(jnp.nan)
    assert np.isnan(whittle_log_likelihood(model, A_nan, kern, params.noise_scale, Y))


def test_kalman_gradient_finite_float32():
    model = CouplingModel(n_nodes=3, tr=2.0, max_delay=2.0)
    params = sample_prior(jax.random.key(0), model)
    _, Y = simulate(jax.random.key(1), params, model, 100)

    @jax.jit
    def value_and_grad(A):
        return jax.value_and_grad(
            lambda a: kalman_log_likelihood_params(
                model, a, params.delays, params.hrf_scale, params.noise_scale, Y
            )
        )(A)

    f_true, g = value_and_grad(params.A)
    assert bool(jnp.all(jnp.isfinite(g)))
    # the true couplings are more likely than the direction-flipped (transposed) ones
    f_flip, _ = value_and_grad(params.A.T)
    assert f_true > f_flip

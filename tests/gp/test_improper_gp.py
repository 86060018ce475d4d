"""ImproperGP dense path: λ→∞ limit, contrast = bordered, REML oracle, extrapolation, errors."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg as sla, stats

from bayesflow_nets.gp import (
    Brownian,
    ImproperGP,
    Matern32,
    MaternWalk,
    SmoothWalk,
    SquaredExponential,
    contrast_lift,
    contrast_project,
    fit_reml,
)


def improper_kernels():
    return [
        Brownian(0.7),
        SmoothWalk(1.1, 0.6),
        MaternWalk(0.5, 1.3, 0.8),
        MaternWalk(1.5, 1.3, 0.8),
        MaternWalk(2.5, 1.3, 0.8),
        SmoothWalk(0.8, 0.5) + SquaredExponential(0.3, 0.2),
    ]


def data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, n)
    y = np.sin(x) + 0.3 * x + 2.0 + 0.1 * rng.normal(size=n)
    return jnp.asarray(x), jnp.asarray(y)


def x_test():
    return jnp.concatenate([jnp.linspace(-4.0, 14.0, 25), jnp.array([2.5, 7.0])])


def _lambda_posterior(gp, y, xt, lam2):
    """Ordinary GP posterior with the proper kernel k + λ² (MATH.md §3 limit)."""
    K = np.asarray(gp.gram()) + lam2
    Kxs = np.asarray(gp.kernel(gp.X, xt)) + lam2
    kss = np.asarray(gp.kernel(xt)) + lam2
    cf = sla.cho_factor(K, lower=True)
    mean = Kxs.T @ sla.cho_solve(cf, np.asarray(y))
    cov = kss - Kxs.T @ sla.cho_solve(cf, Kxs)
    return mean, cov


FAST = (0, 4, 5)  # kernels checked in the default run; the rest under -m slow
KERNEL_PARAMS = [i if i in FAST else pytest.param(i, marks=pytest.mark.slow) for i in range(7)]


def kernel_by_index(i):
    return (improper_kernels() + [Matern32(1.0, 2.0)])[i]


@pytest.mark.parametrize("index", KERNEL_PARAMS)
def test_lambda_limit_matches_corrected_posterior(x64, index):
    x, y = data()
    xt = x_test()
    for k in [kernel_by_index(index)]:
        gp = ImproperGP(k, x, 0.05, flat_mean=True)
        post = gp.predict(y, xt, full_cov=True)
        mean, cov = _lambda_posterior(gp, y, xt, 1e7)
        np.testing.assert_allclose(post.mean, mean, rtol=0, atol=1e-5)
        np.testing.assert_allclose(post.covariance, cov, rtol=0, atol=1e-5)
        np.testing.assert_allclose(post.variance, np.diagonal(cov), rtol=0, atol=1e-5)


@pytest.mark.parametrize("index", KERNEL_PARAMS[:6])
def test_contrast_form_equals_bordered_form(x64, index):
    x, y = data(n=80, seed=1)
    xt = x_test()
    for k in [kernel_by_index(index)]:
        gp = ImproperGP(k, x, 0.02)
        a = gp.predict(y, xt, method="contrast", full_cov=True)
        b = gp.predict(y, xt, method="bordered", full_cov=True)
        scale = float(jnp.max(jnp.abs(a.covariance)))
        np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=1e-9)
        np.testing.assert_allclose(a.covariance, b.covariance, rtol=0, atol=1e-10 * scale)
        av = gp.predict(y, xt, method="contrast")
        bv = gp.predict(y, xt, method="bordered")
        np.testing.assert_allclose(av.variance, jnp.diagonal(a.covariance), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(bv.variance, av.variance, rtol=0, atol=1e-10 * scale)
        assert av.covariance is None


def test_math_md_formula_with_explicit_inverse(x64):
    """β̂ = 1ᵀK⁻¹y/s, m = β̂ + k*ᵀK⁻¹(y − β̂1), cov with the (1 − 1ᵀK⁻¹k*) correction."""
    x, y = data(n=30, seed=2)
    xt = x_test()
    gp = ImproperGP(MaternWalk(1.5, 1.0, 1.0), x, 0.1)
    K = np.asarray(gp.gram())
    Ki = np.linalg.inv(K)
    one = np.ones(len(x))
    s = one @ Ki @ one
    beta = one @ Ki @ np.asarray(y) / s
    ks = np.asarray(gp.kernel(x, xt))
    mean = beta + ks.T @ Ki @ (np.asarray(y) - beta)
    u = 1 - one @ Ki @ ks
    cov = np.asarray(gp.kernel(xt)) - ks.T @ Ki @ ks + np.outer(u, u) / s
    post = gp.predict(y, xt, full_cov=True)
    np.testing.assert_allclose(post.mean, mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(post.covariance, cov, rtol=0, atol=1e-8)


def test_reml_equals_contrast_density_with_independent_basis(x64):
    x, y = data(n=50, seed=3)
    n = len(x)
    Q = sla.null_space(np.ones((1, n)))  # a different orthonormal basis of 1^⊥ (SVD)
    for k in improper_kernels():
        gp = ImproperGP(k, x, 0.03)
        K = np.asarray(gp.gram())
        ref = stats.multivariate_normal(np.zeros(n - 1), Q.T @ K @ Q).logpdf(Q.T @ np.asarray(y))
        np.testing.assert_allclose(gp.log_marginal_likelihood(y), ref, rtol=1e-10)
        # Level invariance: the REML does not see the constant offset.
        np.testing.assert_allclose(gp.log_marginal_likelihood(y + 123.0), ref, rtol=1e-10)


def test_reml_is_the_lambda_limit_of_the_marginal_likelihood(x64):
    """log N(y; 0, K + λ²11ᵀ) + ½ log(2π n λ²) → REML as λ → ∞."""
    x, y = data(n=40, seed=4)
    n = len(x)
    gp = ImproperGP(MaternWalk(2.5, 1.0, 1.0), x, 0.05)
    reml = float(gp.log_marginal_likelihood(y))
    errs = []
    for lam2 in (1e4, 1e6):
        K = np.asarray(gp.gram()) + lam2
        ll = stats.multivariate_normal(np.zeros(n), K).logpdf(np.asarray(y))
        errs.append(abs(ll + 0.5 * math.log(2 * math.pi * n * lam2) - reml))
    assert errs[1] < 1e-4 and errs[1] < errs[0] / 10


def test_contrast_project_and_lift(x64):
    rng = np.random.default_rng(5)
    y = jnp.asarray(rng.normal(size=9))
    z = contrast_project(y)
    np.testing.assert_allclose(jnp.sum(contrast_lift(z)), 0.0, atol=1e-13)
    np.testing.assert_allclose(contrast_lift(z), y - jnp.mean(y), atol=1e-13)
    np.testing.assert_allclose(jnp.dot(z, z), jnp.sum((y - jnp.mean(y)) ** 2), rtol=1e-13)


def test_proper_kernel_ordinary_path(x64):
    x, y = data(n=40, seed=6)
    xt = x_test()
    k = SquaredExponential(1.5, 2.0)
    gp = ImproperGP(k, x, 0.05)
    assert not gp.flat_mean
    K = np.asarray(gp.gram())
    ref = stats.multivariate_normal(np.zeros(len(x)), K).logpdf(np.asarray(y))
    np.testing.assert_allclose(gp.log_marginal_likelihood(y), ref, rtol=1e-10)
    ks = np.asarray(k(x, xt))
    post = gp.predict(y, xt, full_cov=True)
    np.testing.assert_allclose(post.mean, ks.T @ np.linalg.solve(K, np.asarray(y)), atol=1e-9)
    cov = np.asarray(k(xt)) - ks.T @ np.linalg.solve(K, ks)
    np.testing.assert_allclose(post.covariance, cov, atol=1e-9)


def test_extrapolation_brownian_is_exact_random_walk(x64):
    """Beyond the data: mean stays at the last level; variance grows linearly at rate σ²."""
    x, y = data(n=50, seed=7)
    gp = ImproperGP(Brownian(0.7), x, 0.05)
    last = float(jnp.max(x))
    u = jnp.array([0.0, 1.0, 10.0, 100.0, 1e4])
    post = gp.predict(y, last + u)
    # (1e-8: k* reaches 7e3 at u = 1e4, so the float64 solves cancel a few digits)
    np.testing.assert_allclose(post.mean, post.mean[0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(post.variance - post.variance[0], 0.7 * u, rtol=1e-9, atol=1e-9)
    first = float(jnp.min(x))
    left = gp.predict(y, first - u)
    np.testing.assert_allclose(left.mean, left.mean[0], atol=1e-8)
    np.testing.assert_allclose(left.variance - left.variance[0], 0.7 * u, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("nu", [0.5, 1.5, 2.5])
def test_extrapolation_matern_walk_continues_slope_without_reverting(x64, nu):
    rng = np.random.default_rng(8)
    x = jnp.asarray(np.sort(rng.uniform(0, 10, 60)))
    y = 5.0 + 0.8 * x + 0.01 * jnp.asarray(rng.normal(size=60))  # level 5, slope 0.8
    ell, var = 20.0, 1.0
    gp = ImproperGP(MaternWalk(nu, ell, var), x, 1e-4)
    last = float(x[-1])
    near = gp.predict(y, jnp.array([last + 1.0, last + 2.0]))
    if nu > 0.5:  # differentiable slope: continues it locally (ℓ ≫ 2)
        np.testing.assert_allclose(near.mean, 5.0 + 0.8 * (last + jnp.array([1.0, 2.0])), atol=0.05)
    else:  # OU slope (non-differentiable): still moving up, at a noisier slope
        assert bool(jnp.all(jnp.diff(near.mean) > 0.5)) and bool(near.mean[0] > y[-1])
    far_u = jnp.array([1e2, 1e3, 1e4, 1e5])
    far = gp.predict(y, last + far_u)
    # No reversion: far forecasts stay above the last value (the slope was positive) and the
    # variance grows without bound, asymptotically linearly with slope 2σ²ℓ (γ ~ ℓτ).
    assert bool(jnp.all(far.mean > y[-1]))
    assert bool(jnp.all(jnp.diff(far.variance) > 0))
    rate = (far.variance[3] - far.variance[2]) / (far_u[3] - far_u[2])
    # γ(τ) ~ τ ∫₀^∞ c(u) du with ∫c = ℓ, (2/√3)ℓ, (8√5/15)ℓ for ν = 1/2, 3/2, 5/2.
    integral_c = {0.5: 1.0, 1.5: 2 / math.sqrt(3), 2.5: 8 * math.sqrt(5) / 15}[nu] * ell
    np.testing.assert_allclose(rate, 2 * var * integral_c, rtol=1e-3)
    # A proper SE kernel (ordinary path) instead reverts: mean → 0, variance → k(0).
    se = ImproperGP(SquaredExponential(3.0, 50.0), x, 1e-4).predict(y, last + far_u)
    np.testing.assert_allclose(se.mean[1:], 0.0, atol=1e-8)
    np.testing.assert_allclose(se.variance[1:], 50.0, rtol=1e-8)


def test_matern12_walk_mean_follows_ou_slope_decay(x64):
    """Beyond the data the slope is an OU process: m(x_n + u) = m_n + ℓ g_n (1 − e^{−u/ℓ})."""
    x, y = data(n=40, seed=9)
    ell = 2.0
    gp = ImproperGP(MaternWalk(0.5, ell, 1.0), x, 0.05)
    last = float(jnp.max(x))
    u = jnp.array([0.0, 1.0, 3.0, 7.0])
    m = gp.predict(y, last + u).mean
    g_n = (m[1] - m[0]) / (ell * (1 - math.exp(-1.0 / ell)))
    np.testing.assert_allclose(m[2:], m[0] + ell * g_n * (1 - jnp.exp(-u[2:] / ell)), atol=1e-9)


def test_prior_sampling_by_pinning(x64):
    xs = jnp.linspace(0.0, 5.0, 6)
    gp = ImproperGP(MaternWalk(1.5, 1.0, 2.0), xs, 0.1)
    draws = gp.sample_prior(jax.random.key(0), num_samples=40000, pin_index=2)
    assert draws.shape == (40000, 6)
    np.testing.assert_allclose(draws[:, 2], 0.0, atol=1e-12)
    K = np.asarray(gp.kernel(xs))
    C = K - K[2][:, None] - K[2][None, :] + K[2, 2]
    emp = np.cov(np.asarray(draws), rowvar=False)
    se = np.sqrt((C**2 + np.outer(np.diag(C), np.diag(C))) / 40000)  # MC sd of cov estimates
    assert np.all(np.abs(emp - C) < 5 * se + 1e-12)
    # Increments have the variogram variance 2σ²γ(τ): Var(f(5) − f(0)) = C[5,5] + C[0,0] − 2C[0,5].
    np.testing.assert_allclose(C[5, 5] + C[0, 0] - 2 * C[0, 5], -2 * K[0, 5], rtol=1e-12)


def test_numpyro_dist_log_prob_and_samples(x64):
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer.util import log_density

    x, y = data(n=25, seed=10)
    gp = ImproperGP(SmoothWalk(1.0, 0.5), x, 0.05)
    d = gp.numpyro_dist()
    np.testing.assert_allclose(d.log_prob(y), gp.log_marginal_likelihood(y), rtol=1e-12)
    draws = d.sample(jax.random.key(1), (20000,))
    assert draws.shape == (20000, 25)
    np.testing.assert_allclose(jnp.sum(draws, axis=1), 0.0, atol=1e-10)

    def model(y):
        ell = numpyro.sample("ell", dist.LogNormal(0.0, 1.0))
        g = ImproperGP(SmoothWalk(ell, 0.5), x, 0.05)
        numpyro.sample("y", g.numpyro_dist(), obs=y)

    lp, _ = log_density(model, (y,), {}, {"ell": 1.0})
    prior = dist.LogNormal(0.0, 1.0).log_prob(1.0)
    np.testing.assert_allclose(lp, prior + gp.log_marginal_likelihood(y), rtol=1e-12)
    proper = ImproperGP(Matern32(1.0, 1.0), x, 0.05).numpyro_dist()
    assert isinstance(proper, dist.MultivariateNormal)


def test_fit_reml_finds_the_maximum(x64):
    rng = np.random.default_rng(11)
    n = 200
    x = jnp.asarray(np.sort(rng.uniform(0, 20, n)))
    f = np.cumsum(
        np.sqrt(np.diff(np.concatenate([[0.0], np.asarray(x)])) * 0.5) * rng.normal(size=n)
    )
    y = jnp.asarray(f + np.sqrt(0.04) * rng.normal(size=n))
    start = ImproperGP(Brownian(3.0), x, 0.5)
    res = fit_reml(start, y, steps=60)
    assert res.status in ("converged", "max_steps")
    assert float(res.losses[-1]) < float(res.losses[0])
    fitted = res.gp
    # Stationary point of the REML in (log variance, log noise) and close to the truth.
    g = jax.grad(lambda m: m.log_marginal_likelihood(y))(fitted)
    assert abs(float(g.kernel.log_variance)) < 1e-4 and abs(float(g.log_noise)) < 1e-4
    assert 0.2 < float(fitted.kernel.variance) < 1.2 and 0.02 < float(fitted.noise[0]) < 0.08
    np.testing.assert_array_equal(res.gp.X, x)  # inputs are not trained


@pytest.mark.slow
def test_fit_reml_adam_matches_lbfgs(x64):
    import optax

    rng = np.random.default_rng(11)
    x = jnp.asarray(np.sort(rng.uniform(0, 20, 200)))
    y = jnp.asarray(np.cumsum(rng.normal(size=200)) * 0.3 + 0.2 * rng.normal(size=200))
    start = ImproperGP(Brownian(3.0), x, 0.5)
    a = fit_reml(start, y, steps=60).gp
    b = fit_reml(start, y, steps=400, optimizer=optax.adam(0.05)).gp
    np.testing.assert_allclose(b.kernel.variance, a.kernel.variance, rtol=2e-2)
    np.testing.assert_allclose(b.noise[0], a.noise[0], rtol=2e-2)


def test_jit_and_grad(x64):
    x, y = data(n=30, seed=12)
    gp = ImproperGP(MaternWalk(2.5, 1.0, 1.0), x, 0.05)
    f = jax.jit(lambda g, y: g.log_marginal_likelihood(y))
    np.testing.assert_allclose(f(gp, y), gp.log_marginal_likelihood(y), rtol=1e-12)
    g = jax.grad(lambda m: m.log_marginal_likelihood(y))(gp)
    eps = 1e-6
    bumped = ImproperGP(MaternWalk(2.5, math.exp(eps), 1.0), x, 0.05)
    fd = (bumped.log_marginal_likelihood(y) - gp.log_marginal_likelihood(y)) / eps
    np.testing.assert_allclose(g.kernel.log_lengthscale, fd, rtol=1e-4)


# ------------------------------------------------------------------------------ bad input


def test_bad_inputs(x64):
    x, y = data(n=10)
    with pytest.raises(ValueError, match="noise .* must be positive"):
        ImproperGP(Brownian(), x, 0.0)
    with pytest.raises(ValueError, match="noise .* must be positive"):
        ImproperGP(Brownian(), x, -1.0)
    with pytest.raises(ValueError, match="noise must be a scalar or have shape"):
        ImproperGP(Brownian(), x, jnp.ones(3))
    with pytest.raises(ValueError, match="needs the flat level, flat_mean=True"):
        ImproperGP(SmoothWalk(), x, 0.1, flat_mean=False)
    with pytest.raises(ValueError, match="X contains NaN"):
        ImproperGP(Brownian(), x.at[0].set(jnp.nan), 0.1)
    with pytest.raises(ValueError, match="X must have shape"):
        ImproperGP(Brownian(), jnp.zeros((2, 2, 2)), 0.1)
    gp = ImproperGP(Brownian(), x, 0.1)
    with pytest.raises(ValueError, match="y contains 1 NaN/inf value"):
        gp.log_marginal_likelihood(y.at[3].set(jnp.nan))
    with pytest.raises(ValueError, match="y contains 1 NaN/inf value"):
        gp.predict(y.at[3].set(jnp.inf), x_test())
    with pytest.raises(ValueError, match=r"y must have shape \(10,\)"):
        gp.log_marginal_likelihood(y[:5])
    with pytest.raises(ValueError, match="method must be one of"):
        gp.predict(y, x_test(), method="cholesky")
    with pytest.raises(NotImplementedError, match="supports Brownian and MaternWalk"):
        ImproperGP(SmoothWalk(), x, 0.1).log_marginal_likelihood(y, method="state_space")
    with pytest.raises(ValueError, match="full_cov=True is not available"):
        gp.predict(y, x_test(), method="state_space", full_cov=True)
    with pytest.raises(ValueError, match="method='bordered' solves the flat-level system"):
        ImproperGP(Matern32(), x, 0.1).predict(y, x_test(), method="bordered")
    gp2 = ImproperGP(Brownian(), jnp.stack([x, x], axis=1), 0.1)
    with pytest.raises(ValueError, match="needs 1-D inputs"):
        gp2.log_marginal_likelihood(y, method="state_space")


def test_nan_inside_jit_raises(x64):
    x, y = data(n=10)
    gp = ImproperGP(Brownian(), x, 0.1)
    f = jax.jit(lambda g, y: g.log_marginal_likelihood(y))
    with pytest.raises(Exception, match="y contains NaN/inf"):
        f(gp, y.at[0].set(jnp.nan)).block_until_ready()


def test_duplicate_inputs_warn_but_work(x64):
    x, y = data(n=10)
    xd = x.at[1].set(x[0])
    with pytest.warns(UserWarning, match="duplicate input"):
        gp = ImproperGP(MaternWalk(1.5), xd, 0.1)
    a = gp.predict(y, x_test(), method="contrast")
    b = gp.predict(y, x_test(), method="state_space")
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-9)


def test_float32_ill_conditioned_warns_or_errors():
    x = jnp.linspace(0.0, 100.0, 50, dtype=jnp.float32)
    y = jnp.sin(x / 5.0)
    gp = ImproperGP(SmoothWalk(10.0, 1.0), x, 1e-3)  # true cond ≈ 1e7: warn
    with pytest.warns(UserWarning, match="float32 (lost accuracy|with an ill-conditioned).*x64"):
        gp.log_marginal_likelihood(y)
    x = jnp.linspace(0.0, 100.0, 100, dtype=jnp.float32)
    gp = ImproperGP(SmoothWalk(30.0, 1.0), x, 1e-3)  # Cholesky fails in float32: error
    with pytest.raises(Exception, match="ill-conditioned system.*enable float64"):
        gp.log_marginal_likelihood(jnp.sin(x / 5.0))


def _random_walk_data(n=150, seed=1):
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=float)
    return x, np.cumsum(rng.normal(size=n)) + 0.01 * rng.normal(size=n)


@pytest.mark.parametrize(
    "kernel, inaccurate",
    [
        (lambda: MaternWalk(2.5, 5.0, 1.0), True),  # mean off by 1.1 posterior sd
        (lambda: SmoothWalk(2.0, 1.0), True),  # 0.31 sd
        (lambda: MaternWalk(2.5, 0.3, 0.1), False),  # within 0.005 of float64
    ],
)
def test_float32_predict_measures_its_accuracy(kernel, inaccurate):
    x, y = _random_walk_data()
    xt = np.linspace(-5.0, 155.0, 200)
    with jax.enable_x64(True):
        ref = ImproperGP(kernel(), jnp.asarray(x), 0.01).predict(jnp.asarray(y), jnp.asarray(xt))
    gp = ImproperGP(kernel(), jnp.asarray(x, dtype=jnp.float32), 0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = gp.predict(jnp.asarray(y, dtype=jnp.float32), jnp.asarray(xt, dtype=jnp.float32))
    warned = any("float32 lost accuracy" in str(w.message) for w in caught)
    err = np.max(np.abs(np.asarray(post.mean) - np.asarray(ref.mean)) / np.sqrt(ref.variance))
    assert (err > 0.1) == inaccurate  # the case is what it claims to be
    assert warned == inaccurate


@pytest.mark.parametrize(
    "kernel, inaccurate",
    [
        (lambda: MaternWalk(2.5, 5.0, 1.0), True),  # off by 11 nats in float32
        (lambda: SmoothWalk(3.0, 1.0), True),  # 5 nats
        (lambda: MaternWalk(2.5, 0.3, 1.0), False),  # within 0.001 nats
    ],
)
def test_float32_log_marginal_likelihood_measures_its_accuracy(kernel, inaccurate):
    x, y = _random_walk_data()
    with jax.enable_x64(True):
        ref = ImproperGP(kernel(), jnp.asarray(x), 0.01).log_marginal_likelihood(jnp.asarray(y))
    gp = ImproperGP(kernel(), jnp.asarray(x, dtype=jnp.float32), 0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ll = gp.log_marginal_likelihood(jnp.asarray(y, dtype=jnp.float32))
    warned = any("float32" in str(w.message) for w in caught)
    assert (abs(float(ll) - float(ref)) > 0.2) == inaccurate  # the case is what it claims
    assert warned == inaccurate


def test_float64_well_conditioned_does_not_warn(x64):
    x, y = data(n=20)
    gp = ImproperGP(Brownian(), x, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gp.log_marginal_likelihood(y)


@pytest.mark.parametrize("kernel", [MaternWalk(2.5, 1.5), SmoothWalk(2.0, 1.0), Brownian()])
def test_pinned_and_householder_bases_agree(x64, kernel):
    """The float64 default (pinned contrasts y_i − y_0) equals the orthonormal Householder form."""
    from bayesflow_nets.gp import _dense

    x, y = data(n=80)
    gp = ImproperGP(kernel, x, 0.1)
    K = gp.gram()
    Kxs = kernel(x, x_test())
    kss = kernel.diag(x_test())
    hh = _dense.contrast_factor(K, basis="householder")
    pin = _dense.contrast_factor(K)
    assert pin.pinned and not hh.pinned
    np.testing.assert_allclose(
        _dense.contrast_log_likelihood(pin, y), _dense.contrast_log_likelihood(hh, y), rtol=1e-10
    )
    for a, b in zip(
        _dense.contrast_posterior(pin, y, Kxs, kss, False),
        _dense.contrast_posterior(hh, y, Kxs, kss, False),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-9)
    with pytest.raises(ValueError, match="basis must be"):
        _dense.contrast_factor(K, basis="qr")


@pytest.mark.parametrize("kernel", [MaternWalk(2.5, 1.5), SmoothWalk(2.0, 1.0), Brownian()])
@pytest.mark.parametrize("noise", [0.1, 1e-4])
def test_shifted_posterior_equals_contrast_form(x64, kernel, noise):
    """One Cholesky of K + c11ᵀ (the float64 predict path) gives the corrected posterior."""
    from bayesflow_nets.gp import _dense

    x, y = data(n=80)
    gp = ImproperGP(kernel, x, noise)
    K = gp.gram()
    Kxs = kernel(x, x_test())
    factor = _dense.contrast_factor(K, basis="householder")
    shift = 2.0 * jnp.max(jnp.abs(K))
    for full_cov, kss in ((False, kernel.diag(x_test())), (True, kernel(x_test()))):
        mean, cov, diag = _dense.shifted_posterior(K, y, Kxs, kss, full_cov, shift)
        assert np.all(np.isfinite(diag))
        ref_mean, ref_cov = _dense.contrast_posterior(factor, y, Kxs, kss, full_cov)
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(cov, ref_cov, rtol=1e-6, atol=1e-8 * float(shift))
    # the public path (float64) agrees with the contrast form too
    post = gp.predict(y, x_test())
    ref_mean, ref_var = _dense.contrast_posterior(factor, y, Kxs, kernel.diag(x_test()), False)
    np.testing.assert_allclose(post.mean, ref_mean, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(post.variance, ref_var, rtol=1e-6, atol=1e-8 * float(shift))


def test_shifted_posterior_falls_back_when_not_positive_definite(x64):
    """Too small a shift leaves K + c11ᵀ indefinite: NaN Cholesky diagonal, flagged to callers."""
    from bayesflow_nets.gp import _dense

    x, y = data(n=40)
    K = ImproperGP(Brownian(), x, 0.1).gram()
    Kxs = Brownian()(x, x_test())
    _, _, diag = _dense.shifted_posterior(K, y, Kxs, Brownian().diag(x_test()), False, 0.0)
    assert not np.all(np.isfinite(diag))


def test_predict_under_jit_uses_the_checked_shifted_path(x64):
    """Traced predict (lax.cond fallback) = eager predict (host check) = contrast form."""
    from bayesflow_nets.gp import _dense

    x, y = data(n=50)
    gp = ImproperGP(MaternWalk(2.5, 1.5), x, 0.05)
    eager = gp.predict(y, x_test())
    traced = jax.jit(lambda g, v: g.predict(v, x_test()))(gp, y)
    factor = _dense.contrast_factor(gp.gram(), basis="householder")
    kernel = gp.kernel
    ref = _dense.contrast_posterior(factor, y, kernel(x, x_test()), kernel.diag(x_test()), False)
    for post in (eager, traced):
        np.testing.assert_allclose(post.mean, ref[0], rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(post.variance, ref[1], rtol=1e-6, atol=1e-6)


def test_fit_reml_reports_a_runaway_hyperparameter(x64):
    # a straight line: a SmoothWalk's lengthscale runs to infinity along a flat asymptote,
    # where the gradient vanishes ("converged" before the check)
    rng = np.random.default_rng(0)
    x = jnp.arange(150.0)
    y = jnp.asarray(0.3 * np.arange(150) + 0.5 * rng.normal(size=150))
    with pytest.warns(UserWarning, match=r"lengthscale = .* ran off"):
        res = fit_reml(ImproperGP(SmoothWalk(5.0, 1.0), x, 0.5), y, steps=100)
    assert res.status == "runaway"
    assert float(res.gp.kernel.lengthscale) > 1e3


def test_fit_reml_interior_maximum_is_not_a_runaway(x64):
    rng = np.random.default_rng(0)
    x = jnp.arange(150.0)
    y = jnp.asarray(np.cumsum(rng.normal(size=150)) + 0.1 * rng.normal(size=150))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit_reml(ImproperGP(MaternWalk(2.5, 5.0, 1.0), x, 0.5), y, steps=100)
    assert res.status == "converged"


def test_fit_reml_max_steps_warns(x64):
    rng = np.random.default_rng(0)
    x = jnp.arange(150.0)
    y = jnp.asarray(np.cumsum(rng.normal(size=150)) + 0.1 * rng.normal(size=150))
    with pytest.warns(UserWarning, match="not converged after 2 steps"):
        res = fit_reml(ImproperGP(MaternWalk(2.5, 5.0, 1.0), x, 0.5), y, steps=2)
    assert res.status == "max_steps"

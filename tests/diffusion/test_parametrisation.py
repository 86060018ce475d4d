"""Score / ε / denoiser conversions (Tweedie) and the DSM loss (MATH.md §5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesflow_nets import diffusion as D

SCHEDULES = [D.VESchedule(), D.VPSchedule(), D.DDPMSchedule()]


def gaussian_score(schedule, mu, cov):
    """Exact score of N(mu, cov) data pushed through x_t = m x0 + s ε."""

    def score(x, t):
        m, s2 = schedule.mean_coeff(t), schedule.variance(t)
        c = m**2 * cov + s2 * jnp.eye(mu.shape[0], dtype=cov.dtype)
        return -jnp.linalg.solve(c, x - m * mu)

    return score


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_tweedie_gaussian(schedule, x64):
    """D(x) = (x + s² score)/m equals the Gaussian posterior mean E[x0 | x_t]."""
    mu = jnp.array([0.5, -1.0])
    cov = jnp.array([[2.0, 0.3], [0.3, 0.5]])
    score = gaussian_score(schedule, mu, cov)
    x = jnp.array([0.7, 0.1])
    t = 0.5 * (schedule.t_min + schedule.t_max) * 0.3
    m, s2 = schedule.mean_coeff(t), schedule.variance(t)
    c = m**2 * cov + s2 * jnp.eye(2)
    post_mean = mu + m * cov @ jnp.linalg.solve(c, x - m * mu)
    np.testing.assert_allclose(D.denoiser_from_score(schedule, x, score(x, t), t), post_mean)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_conversions_round_trip(schedule, x64):
    x = jnp.array([0.3, -0.8, 1.1])
    val = jnp.array([0.2, 0.5, -0.4])
    t = schedule.t_min + 0.1 * (schedule.t_max - schedule.t_min)
    for a in D.PARAMETRISATIONS:
        for b in D.PARAMETRISATIONS:
            there = D.convert(schedule, x, val, t, source=a, target=b)
            back = D.convert(schedule, x, there, t, source=b, target=a)
            np.testing.assert_allclose(back, val, rtol=1e-10, atol=1e-12)
    # explicit formulas
    s = schedule.std(t)
    np.testing.assert_allclose(D.score_from_eps(schedule, val, t), -val / s)
    np.testing.assert_allclose(
        D.denoiser_from_eps(schedule, x, val, t), (x - s * val) / schedule.mean_coeff(t)
    )


def test_ve_tweedie_matches_math(x64):
    """VE: D(x, t) = x + t·s(x, t) (MATH.md §5), checked on the empirical score."""
    ve = D.VESchedule()
    data = jax.random.normal(jax.random.key(0), (5, 2))
    x, t = jnp.array([0.3, 0.2]), 0.7
    np.testing.assert_allclose(
        x + t * D.empirical_score(ve, data, x, t), D.empirical_denoiser(ve, data, x, t)
    )


def test_as_score_fn_inverts_parametrisation(x64):
    """A network predicting ε (resp. D) built from the exact score reads back as that score."""
    vp = D.VPSchedule()
    mu, cov = jnp.array([1.0, 0.0]), jnp.eye(2) * 0.3
    score = gaussian_score(vp, mu, cov)
    c_in = lambda t: 1.0 / jnp.sqrt(vp.mean_coeff(t) ** 2 + vp.variance(t))
    eps_net = lambda x, t: D.eps_from_score(vp, score(x / c_in(t), t), t)
    den_net = lambda x, t: D.denoiser_from_score(vp, x, score(x, t), t)
    x, t = jnp.array([0.4, -0.9]), 0.35
    np.testing.assert_allclose(D.as_score_fn(eps_net, vp, "eps")(x, t), score(x, t))
    np.testing.assert_allclose(
        D.as_score_fn(den_net, vp, "denoiser", precondition=False)(x, t), score(x, t)
    )


def test_dsm_loss_at_exact_score_equals_oracle():
    """N(0, cI) data under VE: E‖ε̂ − ε‖² at the exact score = d·c·E_t[1/(c+t)]."""
    d, c = 4, 2.0
    ve = D.VESchedule(sigma_min=0.1, sigma_max=3.0)
    score = gaussian_score(ve, jnp.zeros(d), c * jnp.eye(d))
    c_in = lambda t: 1.0 / jnp.sqrt(1.0 + t)
    model = lambda x, t: D.eps_from_score(ve, score(x / c_in(t), t), t)
    x0 = jnp.sqrt(c) * jax.random.normal(jax.random.key(0), (40000, d))
    loss = D.dsm_loss(model, ve, x0, jax.random.key(1))
    lo, hi = ve.t_min, ve.t_max
    oracle = d * c * (np.log(c + hi) - np.log(c + lo)) / (hi - lo)
    np.testing.assert_allclose(loss, oracle, rtol=0.02)
    # log-uniform t: d·c·E[1/(c+t)] with density 1/(t log(hi/lo))
    from scipy.integrate import quad

    loss_log = D.dsm_loss(model, ve, x0, jax.random.key(2), t_sampling="log")
    e_log = quad(lambda u: 1.0 / (c + u) / u, lo, hi)[0] / np.log(hi / lo)
    np.testing.assert_allclose(loss_log, d * c * e_log, rtol=0.02)
    # a wrong score costs more
    bad = lambda x, t: 1.1 * model(x, t)
    assert D.dsm_loss(bad, ve, x0, jax.random.key(1)) > loss


def test_dsm_loss_parametrisations_agree(x64):
    """Equivalent ε / score / denoiser models give the same loss; weightings scale as stated."""
    vp = D.VPSchedule()
    score = gaussian_score(vp, jnp.zeros(3), 0.5 * jnp.eye(3))
    eps_m = lambda x, t: D.eps_from_score(vp, score(x, t), t)
    score_m = lambda x, t: score(x, t)
    den_m = lambda x, t: D.denoiser_from_score(vp, x, score(x, t), t)
    x0 = jax.random.normal(jax.random.key(0), (64, 3))
    key = jax.random.key(3)
    kw = dict(precondition=False)
    l_eps = D.dsm_loss(eps_m, vp, x0, key, parametrisation="eps", **kw)
    l_score = D.dsm_loss(score_m, vp, x0, key, parametrisation="score", **kw)
    l_den = D.dsm_loss(den_m, vp, x0, key, parametrisation="denoiser", **kw)
    np.testing.assert_allclose(l_score, l_eps, rtol=1e-10)
    np.testing.assert_allclose(l_den, l_eps, rtol=1e-10)
    # λ(t) = s²(t) as a callable reproduces the default "eps" weighting
    l_call = D.dsm_loss(eps_m, vp, x0, key, weighting=vp.variance, **kw)
    np.testing.assert_allclose(l_call, l_eps, rtol=1e-10)
    assert D.dsm_loss(eps_m, vp, x0, key, weighting="score", **kw) > l_eps


def test_dsm_errors():
    vp = D.VPSchedule()
    model = lambda x, t: x
    x0 = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="parametrisation must be one of"):
        D.dsm_loss(model, vp, x0, jax.random.key(0), parametrisation="v")
    with pytest.raises(ValueError, match="weighting must be one of"):
        D.dsm_loss(model, vp, x0, jax.random.key(0), weighting="snr")
    with pytest.raises(ValueError, match="need t_min < t_max"):
        D.dsm_loss(model, vp, x0, jax.random.key(0), t_min=0.5, t_max=0.1)
    with pytest.raises(ValueError, match=r"shape \(batch, \*event\)"):
        D.dsm_loss(model, vp, jnp.zeros(3), jax.random.key(0))
    with pytest.raises(ValueError, match="t_sampling must be 'uniform' or 'log'"):
        D.dsm_loss(model, vp, x0, jax.random.key(0), t_sampling="beta")
    with pytest.raises(ValueError, match="source must be one of"):
        D.convert(vp, x0[0], x0[0], 0.3, source="v", target="eps")

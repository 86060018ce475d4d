"""Schedules and VE ⇄ VP ⇄ τ conversions (MATH.md §5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesflow_nets import diffusion as D
from bayesflow_nets.diffusion import AbstractSchedule

SCHEDULES = {
    "ve": D.VESchedule(),
    "vp_linear": D.VPSchedule(),
    "vp_cosine": D.VPSchedule(kind="cosine", t_max=0.999),
    "ddpm": D.DDPMSchedule(),
}


def _times(schedule):
    return jnp.linspace(schedule.t_min, schedule.t_max, 7)[1:-1]


def test_ve_is_sigma2_equals_t(x64):
    s = D.VESchedule(sigma_min=0.1, sigma_max=10.0)
    t = jnp.array([0.01, 0.5, 3.0, 100.0])
    np.testing.assert_allclose(s.mean_coeff(t), 1.0)
    np.testing.assert_allclose(s.variance(t), t)
    np.testing.assert_allclose(s.tau(t), t)
    np.testing.assert_allclose([s.t_min, s.t_max], [0.01, 100.0], rtol=1e-12)


def test_vp_linear_closed_form(x64):
    s = D.VPSchedule(beta_min=0.1, beta_max=20.0)
    t = jnp.linspace(0.01, 1.0, 9)
    abar = np.exp(-(0.1 * t + 0.5 * 19.9 * t**2))
    np.testing.assert_allclose(s.alpha_bar(t), abar, rtol=1e-12)
    np.testing.assert_allclose(s.mean_coeff(t) ** 2 + s.variance(t), 1.0, rtol=1e-12)
    np.testing.assert_allclose(s.tau(t), (1 - abar) / abar, rtol=1e-10)


def test_vp_cosine_closed_form(x64):
    sc = 0.008
    s = D.VPSchedule(kind="cosine", cosine_s=sc, t_max=0.999)
    t = jnp.linspace(0.01, 0.99, 9)
    f = lambda u: np.cos((u + sc) / (1 + sc) * np.pi / 2) ** 2
    np.testing.assert_allclose(s.alpha_bar(t), f(np.asarray(t)) / f(0.0), rtol=1e-10)


def test_ddpm_discrete_alpha_bar(x64):
    s = D.DDPMSchedule()
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(s.betas, betas, rtol=1e-9)
    cum = np.cumprod(1 - betas)
    k = jnp.array([1, 10, 500, 900, 1000])
    np.testing.assert_allclose(s.alpha_bar(k), cum[np.asarray(k) - 1], rtol=1e-9)
    np.testing.assert_allclose(s.alpha_bar(0.0), 1.0)
    # between integers log ᾱ is linear
    mid = s.log_alpha_bar(10.5)
    np.testing.assert_allclose(mid, 0.5 * (np.log(cum[9]) + np.log(cum[10])), rtol=1e-10)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_sde_coefficients_match_autodiff(name, x64):
    """Closed-form f, g² equal the generic d log m/dt and ds²/dt − 2 f s²."""
    s = SCHEDULES[name]
    for t in _times(s):
        f_generic = AbstractSchedule.drift_coeff(s, t)
        g2_generic = AbstractSchedule.diffusion2(s, t)
        np.testing.assert_allclose(s.drift_coeff(t), f_generic, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(s.diffusion2(t), g2_generic, rtol=1e-8, atol=1e-12)


def test_conversions_round_trip(x64):
    abar = jnp.array([0.01, 0.3, 0.9, 0.9999])
    tau = D.alpha_bar_to_ve_time(abar)
    np.testing.assert_allclose(tau, (1 - abar) / abar, rtol=1e-12)
    np.testing.assert_allclose(D.ve_time_to_alpha_bar(tau), abar, rtol=1e-12)
    x = jnp.array([0.3, -1.2])
    x_ve, t_ve = D.vp_to_ve(x, 0.25)
    np.testing.assert_allclose(x_ve, x / 0.5)
    np.testing.assert_allclose(t_ve, 3.0)
    x_vp, abar2 = D.ve_to_vp(x_ve, t_ve)
    np.testing.assert_allclose(x_vp, x, rtol=1e-12)
    np.testing.assert_allclose(abar2, 0.25, rtol=1e-12)


@pytest.mark.parametrize("name", ["vp_linear", "vp_cosine", "ddpm"])
def test_vp_to_ve_preserves_posterior(name, x64):
    """The VP state at ᾱ and the VE state (x/√ᾱ, τ) have the same posterior mean over x₀."""
    s = SCHEDULES[name]
    ve = D.VESchedule()
    data = jax.random.normal(jax.random.key(0), (7, 3))
    x = jnp.array([0.2, -0.4, 0.9])
    for t in _times(s):
        x_ve, tau = D.vp_to_ve(x, s.alpha_bar(t))
        np.testing.assert_allclose(
            D.empirical_denoiser(s, data, x, t),
            D.empirical_denoiser(ve, data, x_ve, tau),
            rtol=1e-9,
        )


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_marginal_sample(name):
    s = SCHEDULES[name]
    x0 = jnp.array([1.0, -2.0, 0.5])
    t = _times(s)[2]
    xt, eps = s.marginal_sample(jax.random.key(1), x0, t)
    np.testing.assert_allclose(xt, s.mean_coeff(t) * x0 + s.std(t) * eps, rtol=1e-6)
    keys = jax.random.split(jax.random.key(2), 20000)
    xs = jax.vmap(lambda k: s.marginal_sample(k, x0, t)[0])(keys)
    se = float(s.std(t)) / np.sqrt(20000)
    np.testing.assert_allclose(xs.mean(0), s.mean_coeff(t) * x0, atol=5 * se)
    np.testing.assert_allclose(xs.var(0), s.variance(t), rtol=0.05)


def test_schedule_errors():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        D.VESchedule(sigma_min=2.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="sigma_min must be positive"):
        D.VESchedule(sigma_min=-1.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        D.VPSchedule(kind="quadratic")
    with pytest.raises(ValueError, match="cosine schedule has"):
        D.VPSchedule(kind="cosine")
    with pytest.raises(ValueError, match="num_steps must be an int"):
        D.DDPMSchedule(num_steps=0)
    with pytest.raises(ValueError, match="beta_start <= beta_end < 1"):
        D.DDPMSchedule(beta_start=0.1, beta_end=0.01)

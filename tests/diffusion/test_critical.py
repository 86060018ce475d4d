"""Critical times: exact oracles of MATH.md §5, each criterion checked from the exact score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

from bayesflow_nets import diffusion as D


def score_slope_at_zero(schedule, data, t):
    """∂s/∂x at x = 0 along the first axis for the exact empirical score."""
    d = data.shape[1]
    jac = jax.jacfwd(lambda x: D.empirical_score(schedule, data, x, t))(jnp.zeros(d))
    return float(jnp.linalg.eigvalsh(0.5 * (jac + jac.T))[-1])


@pytest.mark.parametrize("a", [1.0, 2.0, 0.5])
def test_vp_reverse_sde_theta_c(a, x64):
    """Reverse drift ½βx + β s(x) at x=0 changes stability where ½ + s'(0) = 0."""
    vp = D.VPSchedule()
    data = jnp.array([[a], [-a]])
    t_c = brentq(lambda t: 0.5 + score_slope_at_zero(vp, data, t), 1e-3, 1.0, xtol=1e-14)
    theta = float(vp.mean_coeff(t_c))
    np.testing.assert_allclose(theta, D.vp_reverse_sde_critical_theta(a**2), rtol=1e-8)
    if a == 1.0:
        np.testing.assert_allclose(
            D.vp_reverse_sde_critical_theta(), np.sqrt(np.sqrt(2) - 1), rtol=1e-12
        )
        np.testing.assert_allclose(D.vp_reverse_sde_critical_theta(), 0.6436, atol=1e-4)


@pytest.mark.parametrize("a", [1.0, 2.0])
def test_vp_bimodality_theta(a, x64):
    vp = D.VPSchedule()
    data = jnp.array([[a], [-a]])
    t_b = brentq(lambda t: score_slope_at_zero(vp, data, t), 1e-3, 1.0, xtol=1e-14)
    np.testing.assert_allclose(vp.mean_coeff(t_b), D.vp_bimodality_theta(a**2), rtol=1e-8)
    if a == 1.0:
        np.testing.assert_allclose(D.vp_bimodality_theta() ** 2, 0.5, rtol=1e-12)
    # the two criteria differ: bimodality happens later in generation (larger θ)
    assert D.vp_bimodality_theta(a**2) > D.vp_reverse_sde_critical_theta(a**2)


@pytest.mark.parametrize("a", [0.7, 1.0, 3.0])
def test_two_delta_critical_variance(a, x64):
    ve = D.VESchedule()
    data = jnp.array([[a], [-a]])
    s2 = brentq(lambda t: score_slope_at_zero(ve, data, t), 1e-3 * a**2, 10 * a**2, xtol=1e-14)
    np.testing.assert_allclose(s2, D.two_delta_critical_variance(a), rtol=1e-8)
    # magnetisation fixed point x = a tanh(a x / σ²): non-zero below T_c, zero above
    for ratio, nonzero in ((0.9, True), (1.1, False)):
        x = a
        for _ in range(5000):
            x = a * np.tanh(a * x / (ratio * a**2))
        assert (abs(x) > 1e-3) == nonzero


def test_equal_norm_critical_variance(x64):
    cube = jnp.array(np.array(np.meshgrid(*[[-1.0, 1.0]] * 4)).reshape(4, -1).T)
    np.testing.assert_allclose(D.equal_norm_critical_variance(cube), 1.0, rtol=1e-12)
    ve = D.VESchedule()
    s2 = brentq(lambda t: score_slope_at_zero(ve, cube, t), 0.1, 10.0, xtol=1e-14)
    np.testing.assert_allclose(s2, 1.0, rtol=1e-8)
    # sphere of radius r in R^d: r²/d for a large sample
    d, r = 5, 2.0
    z = jax.random.normal(jax.random.key(0), (20000, d))
    sphere = r * z / jnp.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(D.equal_norm_critical_variance(sphere), r**2 / d, rtol=0.03)
    with pytest.raises(ValueError, match="rows must have equal norms"):
        D.equal_norm_critical_variance(jnp.array([[1.0, 0.0], [2.0, 0.0]]))

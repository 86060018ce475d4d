"""Sticking-the-landing ELBO: same loss values as Trace_ELBO, zero-variance gradient at q = p."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

from bayesflow_nets.emf import AutoEMF, OrderedTraceELBO, StickingTheLandingELBO, fit_vi

from .test_autoguide import Y, conjugate_model, exact_posterior


def normal_model(y):
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(z, 0.5).to_event(1), obs=y)


def exact_params(y):
    """AutoNormal parameters equal to the exact posterior N(4y/5, 1/5) of ``normal_model``."""
    return {"z_auto_loc": 0.8 * y, "z_auto_scale": jnp.full(2, np.sqrt(0.2))}


def test_stl_gradient_vanishes_at_exact_posterior(x64):
    y = jnp.array([0.7, -1.3])
    guide = AutoNormal(normal_model)
    handlers.seed(guide, 0)(y)  # build the prototype
    params = exact_params(y)
    stl, plain = StickingTheLandingELBO(num_particles=2), Trace_ELBO(num_particles=2)
    for seed in range(3):
        key = jax.random.PRNGKey(seed)
        l_stl, g_stl = jax.value_and_grad(stl.loss, argnums=1)(key, params, normal_model, guide, y)
        l_tr, g_tr = jax.value_and_grad(plain.loss, argnums=1)(key, params, normal_model, guide, y)
        np.testing.assert_allclose(l_stl, l_tr, rtol=1e-12)
        for name in params:
            np.testing.assert_allclose(g_stl[name], 0.0, atol=1e-12)
        # the ordinary estimator's gradient is noisy at the optimum: it is not the same estimator
        assert max(float(jnp.max(jnp.abs(g))) for g in g_tr.values()) > 1e-3


def test_stl_gradient_unbiased_away_from_optimum(x64):
    y = jnp.array([0.7, -1.3])
    guide = AutoNormal(normal_model)
    handlers.seed(guide, 0)(y)
    params = {"z_auto_loc": jnp.array([0.1, 0.2]), "z_auto_scale": jnp.array([0.9, 0.3])}
    key = jax.random.PRNGKey(0)
    stl = StickingTheLandingELBO(num_particles=20000)
    plain = Trace_ELBO(num_particles=20000)
    g_stl = jax.grad(stl.loss, argnums=1)(key, params, normal_model, guide, y)
    g_tr = jax.grad(plain.loss, argnums=1)(key, params, normal_model, guide, y)
    for name in params:
        np.testing.assert_allclose(g_stl[name], g_tr[name], atol=0.05)


def test_fit_vi_stl_autoemf_reaches_log_evidence(x64):
    guide = AutoEMF(conjugate_model)
    res = fit_vi(
        conjugate_model,
        guide,
        Y,
        progress=False,
        num_steps=1000,
        chunk=250,
        min_steps=500,
        estimator="stl",
    )
    _, _, log_z = exact_posterior(Y)
    np.testing.assert_allclose(res.elbo, log_z, atol=0.05)
    assert res.elbo_se < 0.02  # near-exact q: log-weights nearly constant


def test_fit_vi_rejects_unknown_estimator():
    with pytest.raises(ValueError, match="argument 'estimator'"):
        fit_vi(conjugate_model, AutoEMF(conjugate_model), Y, estimator="iwae")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"tol": -0.1}, "argument 'tol'"),
        ({"tol": float("nan")}, "argument 'tol'"),
        ({"init": "map"}, "argument 'init'"),
        ({"num_particles": 0}, "'num_particles'"),
    ],
)
def test_fit_vi_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_vi(conjugate_model, AutoEMF(conjugate_model), Y, **kwargs)


def test_ordered_trace_elbo_is_numpyros_trace_elbo(x64):
    # same draws, same loss and gradient, up to the order of the per-site sum
    y = jnp.array([0.7, -1.3])
    guide = AutoNormal(normal_model)
    handlers.seed(guide, 0)(y)
    params = {"z_auto_loc": jnp.array([0.1, -0.4]), "z_auto_scale": jnp.array([0.9, 0.6])}
    ordered, plain = OrderedTraceELBO(num_particles=3), Trace_ELBO(num_particles=3)
    for seed in range(3):
        key = jax.random.PRNGKey(seed)
        l_o, g_o = jax.value_and_grad(ordered.loss, argnums=1)(key, params, normal_model, guide, y)
        l_t, g_t = jax.value_and_grad(plain.loss, argnums=1)(key, params, normal_model, guide, y)
        np.testing.assert_allclose(l_o, l_t, rtol=1e-12)
        for name in params:
            np.testing.assert_allclose(g_o[name], g_t[name], rtol=1e-10, atol=1e-12)

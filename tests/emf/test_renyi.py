"""Rényi α-bound (plain and doubly reparametrised gradients), and fit_vi's mass-covering refinement."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer.autoguide import AutoNormal

from bayesflow_nets.emf import AutoEMF, OrderedTraceELBO, RenyiELBO, fit_vi

from .test_autoguide import Y, conjugate_model, exact_posterior
from .test_stl import exact_params, normal_model

PARAMS_OFF = {"z_auto_loc": jnp.array([0.1, 0.2]), "z_auto_scale": jnp.array([0.9, 0.3])}


def _guide(y):
    guide = AutoNormal(normal_model)
    handlers.seed(guide, 0)(y)  # build the prototype
    return guide


def test_loss_value_is_the_elbo_and_gradient_vanishes_at_exact_posterior(x64):
    y = jnp.array([0.7, -1.3])
    guide = _guide(y)
    params = exact_params(y)
    for alpha in (0.0, 0.5, 0.9):
        renyi, plain = RenyiELBO(num_particles=4, alpha=alpha, dreg=True), OrderedTraceELBO(4)
        key = jax.random.PRNGKey(3)
        loss, grads = jax.value_and_grad(renyi.loss, argnums=1)(key, params, normal_model, guide, y)
        np.testing.assert_allclose(
            loss, plain.loss(key, params, normal_model, guide, y), rtol=1e-12
        )
        for name in params:
            np.testing.assert_allclose(grads[name], 0.0, atol=1e-12)


@pytest.mark.parametrize("dreg", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_gradient_is_unbiased_for_the_renyi_bound(alpha, dreg, x64):
    # oracle: the reparametrised gradient of the K-particle bound (1/(1-α)) log mean exp((1-α) w)
    y = jnp.array([0.7, -1.3])
    guide = _guide(y)
    k, reps = 4, 20000

    def bound(params, key):
        def log_weight(key):
            return -OrderedTraceELBO(1).loss(key, params, normal_model, guide, y)

        w = jax.vmap(log_weight)(jax.random.split(key, k))
        return jax.nn.logsumexp((1 - alpha) * w) / (1 - alpha) - jnp.log(k) / (1 - alpha)

    renyi = RenyiELBO(num_particles=k, alpha=alpha, dreg=dreg)
    keys = jax.random.split(jax.random.PRNGKey(0), reps)
    g_ref = jax.vmap(jax.grad(bound), in_axes=(None, 0))(PARAMS_OFF, keys)
    g_dreg = jax.vmap(
        jax.grad(lambda p, key: -renyi.loss(key, p, normal_model, guide, y)), in_axes=(None, 0)
    )(PARAMS_OFF, keys)
    for name in PARAMS_OFF:
        ref, dreg = np.asarray(g_ref[name]), np.asarray(g_dreg[name])
        se = np.sqrt(ref.var(0) / reps + dreg.var(0) / reps)
        np.testing.assert_array_less(np.abs(ref.mean(0) - dreg.mean(0)), 4 * se + 1e-3)


def test_bad_alpha_and_particles_named():
    with pytest.raises(ValueError, match="argument 'alpha'"):
        RenyiELBO(num_particles=4, alpha=1.0)
    with pytest.raises(ValueError, match="argument 'num_particles'"):
        RenyiELBO(num_particles=1)


def test_fit_vi_refinement_keeps_exact_family_at_log_evidence(x64):
    # min_steps = num_steps: training cannot converge first, so the refinement runs
    opts = dict(progress=False, num_steps=1000, chunk=250, min_steps=1000)
    res = fit_vi(conjugate_model, AutoEMF(conjugate_model), Y, refine_steps=250, **opts)
    _, _, log_z = exact_posterior(Y)
    np.testing.assert_allclose(res.elbo, log_z, atol=0.05)
    assert res.elbo_se < 0.02
    assert res.refine_steps == 250 and res.num_steps == res.losses.size == 1000
    none = fit_vi(conjugate_model, AutoEMF(conjugate_model), Y, refine_steps=0, **opts)
    assert none.refine_steps == 0 and none.num_steps == 1000
    with pytest.raises(ValueError, match="argument 'refine_steps'"):
        fit_vi(conjugate_model, AutoEMF(conjugate_model), Y, refine_steps=1000, **opts)
    with pytest.raises(ValueError, match="argument 'refine_alpha'"):
        fit_vi(conjugate_model, AutoEMF(conjugate_model), Y, refine_alpha=1.0, **opts)


def test_refinement_widens_an_under_dispersed_guide(x64):
    # a mean-field guide on a correlated Gaussian under-covers it (reverse KL matches the
    # conditional precisions); the Rényi bound with α < 1 widens it toward the marginal sds
    cov = jnp.array([[1.0, 0.9], [0.9, 1.0]])

    def correlated():
        numpyro.sample("z", dist.MultivariateNormal(jnp.zeros(2), cov))

    opts = dict(progress=False, num_steps=4000, chunk=500, min_steps=4000)
    plain = fit_vi(correlated, AutoNormal(correlated), refine_steps=0, **opts)
    refined = fit_vi(
        correlated, AutoNormal(correlated), refine_steps=2000, refine_alpha=0.0, **opts
    )
    sd_plain = float(jnp.mean(plain.params["z_auto_scale"]))
    sd_refined = float(jnp.mean(refined.params["z_auto_scale"]))
    # reverse KL gives the conditional sd sqrt(1 - 0.9^2) = 0.44; the marginal sd is 1
    np.testing.assert_allclose(sd_plain, np.sqrt(1 - 0.81), rtol=0.1)
    assert sd_refined > sd_plain + 0.1
    assert refined.refine_steps == 2000


def test_tempering_keeps_the_effective_sample_size():
    from bayesflow_nets.emf._stl import _tempering

    def ess(beta, w):
        p = jax.nn.softmax(beta * w)
        return 1.0 / jnp.sum(p**2)

    for seed, spread in [(0, 0.1), (1, 3.0), (2, 300.0)]:
        w = spread * jax.random.normal(jax.random.PRNGKey(seed), (16,))
        beta = _tempering(w, jnp.asarray(0.5), 8.0)
        assert 0.0 <= float(beta) <= 0.5
        assert float(ess(beta, w)) >= 8.0 - 1e-3
        # the largest such order: a little more and the ESS falls below the floor
        assert float(beta) == 0.5 or float(ess(beta + 1e-3, w)) < 8.0


def test_full_ess_floor_is_the_elbo_gradient(x64):
    # min_ess = 1 forces equal weights: the step is an ordinary ELBO step
    y = jnp.array([0.7, -1.3])
    guide = _guide(y)
    key = jax.random.PRNGKey(5)
    renyi = RenyiELBO(num_particles=4, alpha=0.0, min_ess=1.0)
    g_renyi = jax.grad(renyi.loss, argnums=1)(key, PARAMS_OFF, normal_model, guide, y)
    g_elbo = jax.grad(OrderedTraceELBO(4).loss, argnums=1)(key, PARAMS_OFF, normal_model, guide, y)
    for name in PARAMS_OFF:
        np.testing.assert_allclose(g_renyi[name], g_elbo[name], rtol=1e-9, atol=1e-12)

"""NeuTra: NUTS through a guide's flow recovers known moments, even from a poor guide."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer.autoguide import AutoDiagonalNormal

from bayesflow_nets.emf import AutoEMF, fit_vi
from bayesflow_nets.infer import neutra, warped_potential

Y_MU = jnp.array([[0.3, -1.2], [1.1, -0.4], [0.8, -0.9], [0.2, -1.5], [1.4, -0.6]])
Y_LAM = jnp.array([0.9, -1.3, 0.4, 2.1, -0.7, 1.6])
A, B = 3.0, 2.0


def conjugate_pair():
    """Normal means (prior N(0, 2²), unit noise) and a Gamma precision: both closed form."""
    with numpyro.plate("dim", 2):
        mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    lam = numpyro.sample("lam", dist.Gamma(A, B))
    numpyro.sample("y_mu", dist.Normal(mu, 1.0).to_event(1), obs=Y_MU)
    with numpyro.plate("n_lam", Y_LAM.shape[0]):
        numpyro.sample("y_lam", dist.Normal(0.0, lam**-0.5), obs=Y_LAM)


def _init_params(guide):
    tr = handlers.trace(handlers.seed(guide, 0)).get_trace()
    return {k: s["value"] for k, s in tr.items() if s["type"] == "param"}


def _exact():
    n = Y_MU.shape[0]
    prec = 1 / 4 + n
    mu_mean = np.asarray(Y_MU.sum(0) / prec)
    a, b = A + Y_LAM.shape[0] / 2, B + float(jnp.sum(Y_LAM**2)) / 2
    return mu_mean, prec**-0.5, a / b, np.sqrt(a) / b


def _check_moments(idata):
    mu_mean, mu_sd, lam_mean, lam_sd = _exact()
    import arviz as az

    ess = az.ess(idata, var_names=["mu", "lam"])
    mu = idata.posterior["mu"].values.reshape(-1, 2)
    lam = idata.posterior["lam"].values.reshape(-1)
    e_mu, e_lam = ess["mu"].values, float(ess["lam"])
    assert np.all(e_mu > 150) and e_lam > 150
    e_mu = float(e_mu.min())
    np.testing.assert_allclose(mu.mean(0), mu_mean, atol=4 * mu_sd / np.sqrt(e_mu))
    np.testing.assert_allclose(mu.std(0), np.full(2, mu_sd), atol=4 * mu_sd / np.sqrt(2 * e_mu))
    np.testing.assert_allclose(lam.mean(), lam_mean, atol=4 * lam_sd / np.sqrt(e_lam))
    np.testing.assert_allclose(lam.std(), lam_sd, atol=5 * lam_sd / np.sqrt(2 * e_lam))


@pytest.mark.slow  # ~10 s of compilation; the exact log-density check below is fast
def test_neutra_corrects_a_poor_gaussian_guide():
    # a diagonal-normal guide with the wrong location and scale: the moments are only right if
    # the warped potential includes log|det J_T| (and NUTS corrects the rest)
    guide = AutoDiagonalNormal(conjugate_pair)
    params = _init_params(guide)
    params = {"auto_loc": params["auto_loc"] + 0.5, "auto_scale": params["auto_scale"] * 3.0}
    idata = neutra(
        conjugate_pair,
        guide,
        params,
        rng_key=jax.random.key(1),
        num_chains=2,
        num_warmup=300,
        num_samples=500,
    )
    assert set(idata.groups()) == {"posterior", "sample_stats", "observed_data"}
    assert idata.posterior["mu"].dims == ("chain", "draw", "dim")
    assert idata.posterior.attrs["sampler"] == "neutra"
    assert not idata.sample_stats["diverging"].values.any()
    _check_moments(idata)


@pytest.mark.slow
def test_neutra_corrects_an_unfitted_autoemf_guide():
    # at initialisation the AutoEMF guide is (about) the prior, far from the posterior
    guide = AutoEMF(conjugate_pair)
    idata = neutra(
        conjugate_pair,
        guide,
        _init_params(guide),
        rng_key=jax.random.key(1),
        num_chains=2,
        num_warmup=300,
        num_samples=500,
    )
    assert idata.posterior["mu"].dims == ("chain", "draw", "dim")
    _check_moments(idata)


def test_warped_potential_matches_change_of_variables():
    guide = AutoDiagonalNormal(conjugate_pair)
    params = _init_params(guide)
    params = {k: v + 0.3 for k, v in params.items()}  # a non-trivial affine map
    logp_eps, to_constrained, dim = warped_potential(
        conjugate_pair, guide, params, rng_key=jax.random.key(0)
    )
    assert dim == 3
    eps = jnp.array([0.2, -0.5, 1.0])
    transform = guide.get_transform(params)
    z = transform(eps)
    # AutoContinuous packs sites in sorted order: lam (1), mu (2); lam's unconstraining is log
    lam, mu = jnp.exp(z[0]), z[1:]
    lp = (
        dist.Normal(0.0, 2.0).log_prob(mu).sum()
        + dist.Gamma(A, B).log_prob(lam)
        + z[0]
        + dist.Normal(mu, 1.0).log_prob(Y_MU).sum()
        + dist.Normal(0.0, lam**-0.5).log_prob(Y_LAM).sum()
    )
    log_det = jnp.sum(jnp.log(params["auto_scale"]))
    np.testing.assert_allclose(logp_eps(eps), lp + log_det, rtol=1e-5)
    out = to_constrained(eps)
    np.testing.assert_allclose(out["lam"], lam, rtol=1e-5)
    np.testing.assert_allclose(out["mu"], mu, rtol=1e-5)


def test_neutra_rejects_non_continuous_guides():
    from numpyro.infer.autoguide import AutoNormal

    with pytest.raises(TypeError, match="'guide' must be a NumPyro AutoContinuous guide"):
        neutra(conjugate_pair, AutoNormal(conjugate_pair), {}, rng_key=jax.random.key(0))


def funnel():
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    with numpyro.plate("k", 9):
        numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)))


@pytest.mark.slow
def test_neutra_on_a_fitted_funnel_guide():
    guide = AutoEMF(funnel, backbone="iaf")
    res = fit_vi(funnel, guide, rng_key=jax.random.key(0), progress=False, num_steps=3000)
    idata = neutra(funnel, guide, res.params, rng_key=jax.random.key(1), num_warmup=500)
    v = idata.posterior["v"].values.reshape(-1)
    import arviz as az

    ess = float(az.ess(idata, var_names=["v"])["v"])
    np.testing.assert_allclose(v.mean(), 0.0, atol=4 * 3.0 / np.sqrt(ess))
    np.testing.assert_allclose(v.std(), 3.0, atol=4 * 3.0 / np.sqrt(2 * ess))

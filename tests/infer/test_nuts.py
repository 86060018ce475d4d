"""BlackJAX NUTS on NumPyro models: conjugate-normal recovery (closed form), stats and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from bayesflow_nets.infer import nuts

M0, S0, SIGMA = 1.0, 2.0, 0.5


def conjugate(y):
    mu = numpyro.sample("mu", dist.Normal(M0, S0))
    numpyro.deterministic("mu_plus_one", mu + 1.0)
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, SIGMA), obs=y)


def test_nuts_recovers_conjugate_normal_posterior():
    y = jnp.asarray(np.random.default_rng(0).normal(2.0, SIGMA, size=20))
    precision = 1 / S0**2 + y.shape[0] / SIGMA**2
    mean = float((M0 / S0**2 + jnp.sum(y) / SIGMA**2) / precision)
    sd = precision**-0.5
    idata = nuts(
        conjugate, y, rng_key=jax.random.key(0), num_chains=2, num_warmup=300, num_samples=500
    )
    assert set(idata.groups()) == {"posterior", "sample_stats", "observed_data"}
    draws = idata.posterior["mu"].values
    assert draws.shape == (2, 500) and np.all(np.isfinite(draws))
    import arviz as az

    ess = float(az.ess(idata, var_names=["mu"])["mu"])
    assert ess > 200
    # within 4 Monte Carlo standard errors (sd of the sd estimate ≈ sd / sqrt(2 ess))
    np.testing.assert_allclose(draws.mean(), mean, atol=4 * sd / np.sqrt(ess))
    np.testing.assert_allclose(draws.std(), sd, atol=4 * sd / np.sqrt(2 * ess))
    np.testing.assert_allclose(idata.posterior["mu_plus_one"].values, draws + 1.0, rtol=1e-6)
    assert idata.observed_data["y"].dims == ("obs",)
    stats = idata.sample_stats
    for name in ("diverging", "acceptance_rate", "num_integration_steps", "step_size", "lp"):
        assert stats[name].shape == (2, 500)
    assert not stats["diverging"].values.any()
    assert 0.5 < float(stats["acceptance_rate"].mean()) <= 1.0
    assert idata.posterior.attrs["sampler"] == "nuts"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_chains": 0}, "'num_chains' must be an integer >= 1, got 0"),
        ({"num_warmup": 0}, "'num_warmup' must be an integer >= 1, got 0"),
        ({"num_samples": -1}, "'num_samples' must be an integer >= 1, got -1"),
    ],
)
def test_nuts_rejects_bad_counts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nuts(conjugate, jnp.zeros(3), rng_key=jax.random.key(0), **kwargs)

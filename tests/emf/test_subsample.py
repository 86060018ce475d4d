"""``fit_vi`` on models whose plates subsample: the minibatch ELBO is unbiased for the full-data
ELBO, the final ELBO, k̂ and draws are full-data, and the posterior is recovered."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

from bayesflow_nets.emf import AutoEMF, fit_vi
from bayesflow_nets.emf._evaluation import all_log_weights
from bayesflow_nets.emf._fit import _init_state
from bayesflow_nets.emf._subsample import (
    full_data,
    minibatches_with_replacement,
    subsampled_plates,
)

N, D, SUB = 2000, 3, 200


def _regression(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D))  # NumPy data, indexed by the plate's (traced) indices
    y = x @ np.array([0.5, -1.0, 2.0]) + rng.normal(size=N)
    return x, y


def linear_model(x, y, subsample_size=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([D]).to_event(1))
    with numpyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
        numpyro.sample("y", dist.Normal(x[idx] @ w, 1.0), obs=y[idx])


def _closed_form(x, y):
    """Posterior mean, covariance and log evidence of ``linear_model`` (unit noise and prior)."""
    cov = np.linalg.inv(np.eye(D) + x.T @ x)
    s = np.eye(N) + x @ x.T
    log_z = -0.5 * (N * np.log(2 * np.pi) + np.linalg.slogdet(s)[1] + y @ np.linalg.solve(s, y))
    return cov @ x.T @ y, cov, log_z


def test_subsampled_plates_and_full_data():
    x, y = _regression()
    assert subsampled_plates(linear_model, (x, y), {"subsample_size": SUB}) == {"data": (N, SUB)}
    assert subsampled_plates(linear_model, (x, y), {}) == {}
    assert full_data(linear_model, {}) is linear_model


def test_minibatch_elbo_is_unbiased_for_full_data_elbo():
    """At fixed guide parameters, the mean of the minibatch ELBO estimates that ``fit_vi``
    trains on (indices drawn with replacement) matches the full-data ELBO that it reports; an
    unscaled minibatch likelihood would be off by thousands of nats."""
    numpyro.enable_x64()
    x, y = (jax.numpy.asarray(v) for v in _regression())
    kwargs = {"subsample_size": SUB}
    plates = subsampled_plates(linear_model, (x, y), kwargs)
    guide = AutoEMF(linear_model)
    model_b = minibatches_with_replacement(linear_model, plates)
    guide_b = minibatches_with_replacement(guide, plates)
    svi = numpyro.infer.SVI(model_b, guide_b, numpyro.optim.Adam(1e-3), Trace_ELBO())
    params = svi.get_params(_init_state(svi, guide, jax.random.PRNGKey(0), (x, y), kwargs))
    loss = jax.jit(
        jax.vmap(lambda k: Trace_ELBO().loss(k, params, model_b, guide_b, x, y, **kwargs))
    )
    minibatch = -np.asarray(loss(jax.random.split(jax.random.PRNGKey(1), 4000)))
    full = all_log_weights(
        full_data(linear_model, plates), guide, params, jax.random.PRNGKey(2), 4000, (x, y), kwargs
    )
    assert minibatch.var() > full.var()  # minibatch estimates add the subsampling variance
    se = np.sqrt(minibatch.var() / minibatch.size + full.var() / full.size)
    assert abs(minibatch.mean() - full.mean()) < 4 * se, (minibatch.mean(), full.mean(), se)


def test_minibatch_indices_come_from_the_seed_and_span_the_plate():
    x, y = _regression()
    plates = {"data": (N, SUB)}
    model_b = minibatches_with_replacement(linear_model, plates)
    traces = [
        numpyro.handlers.trace(numpyro.handlers.seed(model_b, k)).get_trace(x, y, SUB)
        for k in range(20)
    ]
    idx = np.stack([np.asarray(t["data"]["value"]) for t in traces])
    assert idx.shape == (20, SUB) and idx.min() >= 0 and idx.max() < N
    assert len(np.unique(idx)) > N // 2  # different draws per seed, covering the plate
    assert traces[0]["y"]["scale"] == N / SUB


def test_fit_vi_subsampled_recovers_closed_form_posterior():
    numpyro.enable_x64()
    x, y = _regression()
    mean, cov, log_z = _closed_form(x, y)
    res = fit_vi(
        linear_model,
        AutoEMF(linear_model),
        x,
        y,
        subsample_size=SUB,
        progress=False,
        rng_key=jax.random.PRNGKey(0),
    )
    assert res.status == "max_steps"  # minibatch noise hides a plateau: all steps run
    # full-data ELBO of a near-exact Gaussian posterior: within a fraction of a nat of log Z
    assert log_z - 0.5 < res.elbo < log_z + 4 * res.elbo_se + 1e-6, (res.elbo, log_z)
    draws = np.asarray(res.samples(jax.random.PRNGKey(1), 4000)["w"])
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean) / sd, 0.35)
    np.testing.assert_array_less(np.abs(np.log(draws.std(0) / sd)), 0.3)


def local_model(y, subsample_size=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    with numpyro.plate("data", y.shape[0], subsample_size=subsample_size) as idx:
        z = numpyro.sample("z", dist.Normal(mu, 1.0))
        numpyro.sample("y", dist.Normal(z, 0.5), obs=y[idx])


def test_local_latents_in_subsampled_plate():
    """AutoEMF names the site it cannot embed; a guide that subsamples its local parameters
    (AutoNormal) fits, and its draws cover the full plate."""
    numpyro.enable_x64()
    y = np.random.default_rng(0).normal(size=300)
    with pytest.raises(NotImplementedError, match="'z' lies in plate 'data'.*50 of 300"):
        fit_vi(local_model, AutoEMF(local_model), y, subsample_size=50, progress=False)
    res = fit_vi(
        local_model,
        AutoNormal(local_model),
        y,
        subsample_size=50,
        progress=False,
        num_steps=500,
        num_eval=200,
    )
    assert np.isfinite(res.elbo)
    assert res.samples(jax.random.PRNGKey(0), 5)["z"].shape == (5, 300)

"""NumPyro bridge: transforms, the distribution adapter, NUTS with a flow prior, SVI with a flow guide."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO

import bayesflow_nets.bijectors as bj

from .registry import perturb


def _flow(key, dim=2):
    f = bj.coupling_flow(key, base_dist=bj.StandardNormal((dim,)), flow_layers=2, nn_width=8)
    return perturb(f, key, 0.1)


def test_transform_matches_bijector_and_is_a_pytree():
    flow = _flow(jax.random.key(0))
    t = bj.to_numpyro(flow.bijector)
    x = jax.random.normal(jax.random.key(1), (5, 2))
    y, ld = t.call_with_intermediates(x)
    y1, ld1 = eqx.filter_vmap(flow.bijector.transform_and_log_det)(x)
    np.testing.assert_allclose(y, y1, rtol=1e-5, atol=1e-6)  # float32: jit vs eager
    np.testing.assert_allclose(t.log_abs_det_jacobian(x, y), ld1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t.inv(y), x, rtol=1e-4, atol=1e-4)
    y_jit = jax.jit(lambda tr, v: tr(v))(t, x)
    np.testing.assert_allclose(y_jit, y, rtol=1e-5, atol=1e-5)
    base = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
    td = dist.TransformedDistribution(base, t)
    np.testing.assert_allclose(td.log_prob(y), flow.log_prob(y), rtol=1e-4, atol=1e-4)


def test_transformed_flow_one_pass_log_prob():
    flow = _flow(jax.random.key(4))
    base = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
    td = bj.TransformedFlow(base, bj.to_numpyro(flow.bijector))
    y, inter = td.sample_with_intermediates(jax.random.key(5), (6,))
    assert y.shape == (6, 2) and td.event_shape == (2,)
    # one inverse pass, the NumPyro path (inverse then forward), and the sampled intermediates
    reference = dist.TransformedDistribution(base, bj.to_numpyro(flow.bijector)).log_prob(y)
    np.testing.assert_allclose(td.log_prob(y), reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(td.log_prob(y, inter), reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(td.expand_by((3,)).log_prob(y[:3]), reference[:3], rtol=1e-4)
    jitted = jax.jit(lambda d, v: d.log_prob(v))(td, y)
    np.testing.assert_allclose(jitted, reference, rtol=1e-4, atol=1e-4)
    with pytest.raises(TypeError, match="argument 'transform'"):
        bj.TransformedFlow(base, dist.transforms.ExpTransform())


def test_adapter_log_prob_and_sample():
    flow = _flow(jax.random.key(2))
    d = bj.as_numpyro_distribution(flow)
    s = d.sample(jax.random.key(3), (7,))
    assert s.shape == (7, 2) and d.event_shape == (2,)
    np.testing.assert_allclose(d.log_prob(s), flow.log_prob(s), rtol=1e-6)
    with pytest.raises(ValueError, match="argument 'condition' given"):
        bj.as_numpyro_distribution(flow, jnp.zeros(3))


@pytest.mark.slow
def test_flow_prior_under_nuts_recovers_posterior():
    """1-D spline-flow prior × Gaussian likelihood: NUTS moments vs quadrature on a fine grid."""
    prior = bj.Transformed(
        bj.StandardNormal((1,)),
        bj.Chain(
            [
                perturb(bj.RationalQuadraticSpline(6, 3.0, (1,)), jax.random.key(4), 0.8),
                bj.Affine(jnp.array([0.5]), 1.5),
            ]
        ),
    )
    y_obs = jnp.array([1.2, 0.7, 1.9])
    noise = 1.0

    def model():
        x = numpyro.sample("x", bj.as_numpyro_distribution(prior))
        numpyro.sample("y", dist.Normal(x[0], noise), obs=y_obs)

    grid = jnp.linspace(-12, 14, 20001)
    logp = prior.log_prob(grid[:, None]) + jnp.sum(
        jax.scipy.stats.norm.logpdf(y_obs[None, :], grid[:, None], noise), axis=1
    )
    w = jnp.exp(logp - logp.max())
    w = w / w.sum()
    mean = float(jnp.sum(w * grid))
    sd = float(jnp.sqrt(jnp.sum(w * (grid - mean) ** 2)))

    mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=4000, progress_bar=False)
    mcmc.run(jax.random.key(5))
    xs = mcmc.get_samples()["x"][:, 0]
    # Monte Carlo error of the mean with ESS >~ 1000 is < 0.05 sd.
    assert abs(float(xs.mean()) - mean) < 0.08 * sd
    assert abs(float(xs.std()) / sd - 1) < 0.08


def test_flow_guide_trained_by_svi():
    mu = jnp.array([1.0, -2.0])
    cov = jnp.array([[1.0, 0.8], [0.8, 1.0]])

    def model():
        numpyro.sample("x", dist.MultivariateNormal(mu, cov))

    flow0 = bj.inverse_autoregressive_flow(
        jax.random.key(6), base_dist=bj.StandardNormal((2,)), flow_layers=2, nn_width=16
    )

    def guide():
        numpyro.sample("x", bj.as_numpyro_distribution(bj.flow_param("flow", flow0)))

    opt = optax.adam(optax.cosine_decay_schedule(2e-2, 3000, alpha=0.02))
    svi = SVI(model, guide, opt, Trace_ELBO(num_particles=8))
    res = svi.run(jax.random.key(7), 3000, progress_bar=False)
    # The target is normalised, so -ELBO = KL(q || p) >= 0 and should be near 0.
    assert 0 <= float(res.losses[-300:].mean()) < 0.02
    flow = eqx.combine(res.params["flow"], eqx.partition(flow0, eqx.is_inexact_array)[1])
    s = flow.sample(jax.random.key(8), (20000,))
    np.testing.assert_allclose(s.mean(0), mu, atol=0.1)
    np.testing.assert_allclose(jnp.cov(s.T), cov, atol=0.12)

"""Structured layers (MATH.md §1): exact prior density, bijector contract, gates."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.scipy.stats import norm

from bayesflow_nets.bijectors import AbstractBijector
from bayesflow_nets.emf import GatedStructuredLayer, StructuredLayer


def gaussian_model():
    """Unconstrained-Normal model: Normal, plated Normal, MVN depending on parents."""
    mu = numpyro.sample("mu", dist.Normal(0.5, 2.0))
    with numpyro.plate("J", 3):
        theta = numpyro.sample("theta", dist.Normal(mu, 1.5))
    cov = jnp.array([[1.0, 0.4], [0.4, 2.0]])
    numpyro.sample("m", dist.MultivariateNormal(theta[:2], cov))
    numpyro.deterministic("total", mu + theta.sum())


def constrained_model():
    """HalfCauchy scale, plated children, LogNormal TransformedDistribution, Uniform."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", 3):
        numpyro.sample("theta", dist.Normal(mu, tau))
    numpyro.sample("ln", dist.LogNormal(mu / 5.0, 0.5).expand([2]).to_event(1))
    numpyro.sample("u", dist.Uniform(-1.0, tau + 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=0.3)  # observed: not part of the layer


def full_model():
    """Every family of the acceptance list: Normal, HalfCauchy, Gamma, Beta, Dirichlet, MVN,
    plates and a TransformedDistribution."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", 3):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
    s = numpyro.sample("s", dist.Gamma(2.0, jnp.exp(mu / 10)))
    numpyro.sample("b", dist.Beta(2.0, 3.0))
    numpyro.sample("p", dist.Dirichlet(jnp.ones(3) * 1.5))
    m = numpyro.sample(
        "m", dist.MultivariateNormal(theta[:2], jnp.array([[1.0, 0.5], [0.5, 2.0]]) * s)
    )
    numpyro.sample("ln", dist.LogNormal(m, 1.0).to_event(1))
    numpyro.sample(
        "td",
        dist.TransformedDistribution(
            dist.Normal(0.0, 1.0).expand([2]).to_event(1), dist.transforms.ExpTransform()
        ),
    )


def _eps(layer, seed=0, scale=1.0):
    return scale * jax.random.normal(jax.random.PRNGKey(seed), layer.shape)


MODELS = [
    gaussian_model,
    constrained_model,
    pytest.param(full_model, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("model", MODELS)
def test_prior_density_reproduced(model, x64):
    layer = StructuredLayer(model)
    f = eqx.filter_jit(lambda e: layer.transform_and_log_det(e))
    for seed in range(2):
        eps = _eps(layer, seed)
        u, ld = f(eps)
        np.testing.assert_allclose(
            jnp.sum(norm.logpdf(eps)) - ld, layer.prior_log_density(u), atol=1e-8
        )


def test_prior_density_float32():
    layer = StructuredLayer(gaussian_model)
    eps = _eps(layer)
    u, ld = eqx.filter_jit(layer.transform_and_log_det)(eps)
    assert u.dtype == jnp.float32
    np.testing.assert_allclose(
        jnp.sum(norm.logpdf(eps)) - ld, layer.prior_log_density(u), atol=1e-5
    )


def _layers(model):
    return {
        "ungated": StructuredLayer(model),
        "gated": GatedStructuredLayer(model).with_gates(0.7),
        "per-element": GatedStructuredLayer(model, per_element=True).with_gates(0.4),
    }


CONTRACT = [
    (gaussian_model, "ungated"),
    (gaussian_model, "gated"),
    (gaussian_model, "per-element"),
    (constrained_model, "per-element"),
] + [
    pytest.param(m, k, marks=pytest.mark.slow)
    for m, k in [
        (constrained_model, "ungated"),
        (constrained_model, "gated"),
        (full_model, "ungated"),
        (full_model, "gated"),
        (full_model, "per-element"),
    ]
]


@pytest.mark.parametrize("model,kind", CONTRACT)
def test_bijector_contract(model, kind, x64):
    layer = _layers(model)[kind]
    assert isinstance(layer, AbstractBijector)
    eps = _eps(layer, 3, 0.8)
    fwd = eqx.filter_jit(lambda b, e: b.transform_and_log_det(e))
    inv = eqx.filter_jit(lambda b, y: b.inverse_and_log_det(y))
    y, ld = fwd(layer, eps)
    x, ld_inv = inv(layer, y)
    np.testing.assert_allclose(x, eps, atol=1e-9)
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-9)
    jac = eqx.filter_jit(lambda b, e: jax.jacobian(b.transform)(e))(layer, eps)
    np.testing.assert_allclose(ld, jnp.linalg.slogdet(jac)[1], atol=1e-8)
    # vmap over a batch equals the loop
    batch = jnp.stack([eps, 0.5 * eps])
    yb, ldb = eqx.filter_jit(eqx.filter_vmap(lambda e: layer.transform_and_log_det(e)))(batch)
    np.testing.assert_allclose(yb[0], y, atol=1e-12)
    np.testing.assert_allclose(ldb[1], fwd(layer, 0.5 * eps)[1], atol=1e-12)


def test_forward_is_sequential_in_parents(x64):
    # theta's map uses mu's *output*: z_theta = mu + 1.5 ε_theta with mu = 0.5 + 2 ε_mu
    layer = StructuredLayer(gaussian_model)
    eps = _eps(layer)
    u = layer.unpack(layer.transform(eps))
    e = layer.unpack(eps)
    np.testing.assert_allclose(u["mu"], 0.5 + 2.0 * e["mu"], rtol=1e-12)
    np.testing.assert_allclose(u["theta"], u["mu"] + 1.5 * e["theta"], rtol=1e-12)
    chol = jnp.linalg.cholesky(jnp.array([[1.0, 0.4], [0.4, 2.0]]))
    np.testing.assert_allclose(u["m"], u["theta"][:2] + chol @ e["m"], rtol=1e-12)


@pytest.mark.parametrize("model", [gaussian_model, constrained_model])
def test_gate_limits(model, x64):
    ungated = StructuredLayer(model)
    gated = GatedStructuredLayer(model, per_element=True)
    eps = _eps(ungated, 5)
    y1, ld1 = gated.with_gates(1.0).transform_and_log_det(eps)
    y, ld = ungated.transform_and_log_det(eps)
    np.testing.assert_allclose(y1, y, atol=1e-12)
    np.testing.assert_allclose(ld1, ld, atol=1e-12)
    y0, ld0 = gated.with_gates(0.0).transform_and_log_det(eps)
    np.testing.assert_allclose(y0, eps, atol=1e-12)
    np.testing.assert_allclose(ld0, 0.0, atol=1e-12)
    # λ → 0 continuously approaches the identity
    y_small = gated.with_gates(1e-6).transform(eps)
    np.testing.assert_allclose(y_small, eps, atol=1e-4)


def test_gate_closed_forms(x64):
    # MATH.md §1: Normal λ(μ+σε)+(1−λ)ε, log-det log(λ(σ−1)+1); MVN λμ+(λL+(1−λ)I)ε
    lam = 0.3
    layer = GatedStructuredLayer(gaussian_model).with_gates(lam)
    eps = _eps(layer, 7)
    x, ld = layer.transform_and_log_det(eps)
    e, xs = layer.unpack(eps), layer.unpack(x)
    np.testing.assert_allclose(xs["mu"], lam * (0.5 + 2.0 * e["mu"]) + (1 - lam) * e["mu"])
    np.testing.assert_allclose(
        xs["theta"], lam * (xs["mu"] + 1.5 * e["theta"]) + (1 - lam) * e["theta"]
    )
    chol = jnp.linalg.cholesky(jnp.array([[1.0, 0.4], [0.4, 2.0]]))
    mat = lam * chol + (1 - lam) * jnp.eye(2)
    np.testing.assert_allclose(xs["m"], lam * xs["theta"][:2] + mat @ e["m"])
    expected = (
        np.log(lam * (2.0 - 1) + 1) + 3 * np.log(lam * (1.5 - 1) + 1) + np.sum(np.log(np.diag(mat)))
    )
    np.testing.assert_allclose(ld, expected, rtol=1e-12)


def test_gates_are_leaves_and_differentiable():
    layer = GatedStructuredLayer(gaussian_model)
    leaves = jax.tree_util.tree_leaves(eqx.filter(layer, eqx.is_inexact_array))
    assert len(leaves) == 3  # one scalar gate per site
    eps = _eps(layer)
    grads = eqx.filter_grad(lambda b: b.transform_and_log_det(eps)[1])(layer)
    assert all(jnp.all(jnp.isfinite(g)) and jnp.any(g != 0) for g in grads.gate_logits)


def test_discrete_latent_raises_naming_site():
    def model():
        numpyro.sample("k", dist.Poisson(3.0))

    with pytest.raises(NotImplementedError, match="site 'k' is discrete"):
        StructuredLayer(model)


def test_validation_messages():
    with pytest.raises(TypeError, match="argument 'model'"):
        StructuredLayer(3)
    with pytest.raises(ValueError, match="argument 'gate_init'"):
        GatedStructuredLayer(gaussian_model, gate_init=1.5)
    with pytest.raises(ValueError, match="no latent"):
        StructuredLayer(lambda: numpyro.sample("y", dist.Normal(0, 1), obs=1.0))


def scan_model(y):
    """A latent AR(1) written with NumPyro's ``scan`` (one site per step inside the scan)."""
    from numpyro.contrib.control_flow import scan

    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sig = numpyro.sample("sig", dist.HalfNormal(0.5))

    def step(h, yt):
        h = numpyro.sample("h", dist.Normal(0.9 * h, sig))
        numpyro.sample("y", dist.Normal(0.0, jnp.exp(h / 2)), obs=yt)
        return h, None

    scan(step, mu, y)


@pytest.mark.parametrize("gated", [pytest.param(False, marks=pytest.mark.slow), True])
def test_scan_model_layer_contract_and_prior_density(gated, x64):
    y = jnp.asarray(np.random.default_rng(0).normal(size=7))
    if gated:
        layer = GatedStructuredLayer(scan_model, (y,), gate_init=0.7, per_element=True)
    else:
        layer = StructuredLayer(scan_model, (y,))
    assert [(s.name, s.shape) for s in layer.sites] == [("mu", ()), ("sig", ()), ("h", (7,))]
    eps = jax.random.normal(jax.random.PRNGKey(1), (9,))
    x, ld = eqx.filter_jit(lambda m, e: m.transform_and_log_det(e))(layer, eps)
    back, ild = layer.inverse_and_log_det(x)
    np.testing.assert_allclose(back, eps, atol=1e-12)
    _, logdet = jnp.linalg.slogdet(jax.jacobian(layer.transform)(eps))
    np.testing.assert_allclose(ld, logdet, rtol=1e-10)
    np.testing.assert_allclose(ild, -ld, rtol=1e-10)
    assert jax.vmap(layer.transform)(jnp.ones((3, 9))).shape == (3, 9)
    if not gated:  # base N(0, I) pushed through T is the prior in unconstrained space
        np.testing.assert_allclose(
            norm.logpdf(eps).sum() - ld, layer.prior_log_density(x), rtol=1e-10
        )


def random_walk_model():
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 0.5))
    numpyro.sample("x", dist.GaussianRandomWalk(scale=scale, num_steps=6))


def lkj_model():
    numpyro.sample("L", dist.LKJCholesky(3, 2.0))
    numpyro.sample("s", dist.HalfNormal(1.0))


def test_random_walk_site_and_unsupported_fallback(x64):
    layer = StructuredLayer(random_walk_model)
    eps = jax.random.normal(jax.random.PRNGKey(2), (7,))
    x, ld = layer.transform_and_log_det(eps)
    np.testing.assert_allclose(layer.inverse(x), eps, atol=1e-12)
    np.testing.assert_allclose(norm.logpdf(eps).sum() - ld, layer.prior_log_density(x), rtol=1e-10)
    with pytest.raises(NotImplementedError, match="site 'L'.*LKJCholesky"):
        StructuredLayer(lkj_model)
    with pytest.raises(ValueError, match="argument 'unsupported'"):
        StructuredLayer(lkj_model, unsupported="skip")
    # with unsupported="identity" the LKJ site passes through unembedded (u = ε)
    gated = GatedStructuredLayer(lkj_model, gate_init=0.8, unsupported="identity")
    eps = jax.random.normal(jax.random.PRNGKey(3), (4,))
    x, ld = gated.transform_and_log_det(eps)
    np.testing.assert_allclose(x[:3], eps[:3], atol=0)
    _, logdet = jnp.linalg.slogdet(jax.jacobian(gated.transform)(eps))
    np.testing.assert_allclose(ld, logdet, rtol=1e-10)
    np.testing.assert_allclose(gated.inverse(x), eps, atol=1e-12)

"""EMFDensity (MATH.md §1, "EMF family"): exact log-density, trainable param sites, errors; and
the EMF paper's VI benchmark models (bayesflow_nets.data)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.scipy.stats import norm
from numpyro import handlers
from numpyro.distributions import constraints

from bayesflow_nets.data import EMF_VI_MODELS, emf_vi_problem
from bayesflow_nets.emf import EMFDensity
from bayesflow_nets.infer import fit_to_data


def walk(num_steps=5, step=0.7):
    """Brownian-motion program with a learnable start location, start scale and step scale."""
    m0 = numpyro.param("m0", 0.3)
    s0 = numpyro.param("s0", 1.5, constraint=constraints.positive)
    s = numpyro.param("step", step, constraint=constraints.positive)
    x = numpyro.sample("x_0", dist.Normal(m0, s0))
    for t in range(1, num_steps):
        x = numpyro.sample(f"x_{t}", dist.Normal(x, s))


def walk_log_density(x, m0=0.3, s0=1.5, step=0.7):
    return norm.logpdf(x[0], m0, s0) + jnp.sum(norm.logpdf(x[1:], x[:-1], step))


def test_identity_backbone_reproduces_program_density(x64):
    d = EMFDensity(walk, "normal", gated=False)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 5))
    np.testing.assert_allclose(
        eqx.filter_jit(d.log_prob)(x), jax.vmap(walk_log_density)(x), rtol=1e-10, atol=1e-10
    )
    assert d.site_names == ("x_0", "x_1", "x_2", "x_3", "x_4")
    draws, lp = eqx.filter_jit(d.sample_and_log_prob)(jax.random.PRNGKey(1), (3,))
    assert draws.shape == (3, 5)
    np.testing.assert_allclose(lp, jax.vmap(walk_log_density)(draws), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(d.constrained_params()["step"], 0.7, rtol=1e-12)


@pytest.mark.parametrize("backbone", ["maf", pytest.param("rqs", marks=pytest.mark.slow)])
def test_log_prob_is_change_of_variables(backbone, x64):
    d = EMFDensity(walk, backbone, gated=True, key=jax.random.PRNGKey(1), nn_width=8)
    # move every leaf off its initial value so gates, params and the flow all matter
    leaves, static = eqx.partition(d, eqx.is_inexact_array)
    keys = iter(jax.random.split(jax.random.PRNGKey(2), 100))
    leaves = jax.tree_util.tree_map(
        lambda a: a + 0.1 * jax.random.normal(next(keys), a.shape, a.dtype), leaves
    )
    d = eqx.combine(leaves, static)

    def to_base(x):
        return d.backbone.inverse(d.structured_layer().inverse(x))

    @jax.jit
    def check(x):
        z = to_base(x)
        _, logdet = jnp.linalg.slogdet(jax.jacobian(to_base)(x))
        back = d.structured_layer().transform(d.backbone.transform(z))
        return d.log_prob(x), jnp.sum(norm.logpdf(z)) + logdet, back

    x = jnp.array([0.4, -0.3, 0.9, 1.7, 1.1])
    lp, expected, back = check(x)
    np.testing.assert_allclose(lp, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)  # round trip


def test_gradients_reach_param_sites_and_gates():
    d = EMFDensity(walk, "normal", gated=True)
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 5))
    grads = eqx.filter_jit(eqx.filter_grad(lambda m: -jnp.mean(m.log_prob(x))))(d)
    for name in ("m0", "s0", "step"):
        g = grads.params[name]
        assert bool(jnp.isfinite(g)) and float(jnp.abs(g)) > 0, name
    gates = jnp.stack(grads.layer.gate_logits)
    assert bool(jnp.all(jnp.isfinite(gates))) and float(jnp.max(jnp.abs(gates))) > 0


def test_fit_to_data_learns_step_scale():
    true_step, num_steps = 0.3, 10
    rng = np.random.default_rng(0)
    x0 = 0.3 + 1.5 * rng.standard_normal((400, 1))  # x_0 ~ N(0.3, 1.5)
    steps = true_step * rng.standard_normal((400, num_steps - 1))
    data = np.concatenate([x0, x0 + np.cumsum(steps, 1)], 1).astype(np.float32)
    d = EMFDensity(lambda: walk(num_steps, step=1.0), "normal", gated=False)
    # train the program's param sites only (the backbone's scale would trade off with them)
    spec = jax.tree_util.tree_map(lambda _: False, d)
    spec = eqx.tree_at(lambda m: m.params, spec, {k: True for k in d.params})
    before = -float(jnp.mean(d.log_prob(data)))
    res = fit_to_data(
        jax.random.PRNGKey(0),
        d,
        data,
        learning_rate=5e-2,
        max_epochs=40,
        batch_size=100,
        filter_spec=spec,
        progress=False,
    )
    after = -float(jnp.mean(res.model.log_prob(data)))
    assert after < before - 5.0
    np.testing.assert_allclose(res.model.constrained_params()["step"], true_step, rtol=0.1)
    np.testing.assert_allclose(res.model.constrained_params()["s0"], 1.5, rtol=0.15)


def vector_program():
    scale = numpyro.param("scale", 2.0, constraint=constraints.positive)
    x = numpyro.sample("x", dist.Normal(0.0, scale).expand([3]).to_event(1))
    numpyro.sample("later", dist.Normal(x.sum(), 1.0))
    numpyro.sample("obs", dist.Normal(x.sum(), 1.0), obs=0.5)


def test_named_site_and_errors():
    d = EMFDensity(vector_program, "normal", gated=False, site="x")
    assert d.shape == (3,)
    x = jnp.array([0.1, -0.4, 1.2])
    np.testing.assert_allclose(
        d.log_prob(x), jnp.sum(norm.logpdf(x, 0.0, 2.0)), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="event shape"):
        d.log_prob(jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="shape"):
        fit_to_data(jax.random.PRNGKey(0), d, np.zeros((20, 4)), progress=False)
    with pytest.raises(ValueError, match="'site' is 'y', which is not a latent sample site"):
        EMFDensity(vector_program, site="y")
    with pytest.raises(ValueError, match="It is observed"):
        EMFDensity(vector_program, site="obs")
    with pytest.raises(ValueError, match=r"latent sites \('x',\) run before it"):
        EMFDensity(vector_program, site="later")
    with pytest.raises(ValueError, match="argument 'backbone' must be one of"):
        EMFDensity(vector_program, "made")
    with pytest.raises(TypeError, match="model"):
        EMFDensity("walk")

    def discrete():
        numpyro.sample("k", dist.Poisson(3.0))

    with pytest.raises(NotImplementedError, match="site 'k' is discrete"):
        EMFDensity(discrete)


FAST_VI_MODELS = (
    "brownian_bridge_classification",
    "eight_schools",
    "tree_tanh_d4",
)


@pytest.mark.parametrize(
    "name",
    [n if n in FAST_VI_MODELS else pytest.param(n, marks=pytest.mark.slow) for n in EMF_VI_MODELS],
)
def test_vi_suite_models_prior_predictive(name):
    model, y = emf_vi_problem(name)
    tr = handlers.trace(handlers.seed(model, 1)).get_trace()
    latent = {k: s["value"].shape for k, s in tr.items() if s["type"] == "sample" and k != "y"}
    if name.startswith(("brownian", "lorenz")):
        event = () if name.startswith("brownian") else (3,)
        assert latent == {f"x_{t}": event for t in range(30)}
        assert y.shape == ((20,) if "bridge" in name else (30,))
        assert tr["y"]["value"].shape == y.shape
        if "classification" in name:
            assert set(np.unique(y)) <= {0, 1}
    elif name.startswith("tree"):
        depth = int(name[-1])
        assert latent == {f"level_{k}": (2**k,) for k in range(1, depth + 1)}
        assert y.shape == (1,)
    else:
        assert latent == {"mu": (), "tau": (), "theta_trans": (8,)}
        assert y.shape == (8,)
    # the observation is a prior draw: the model scores it finitely
    conditioned = handlers.substitute(handlers.seed(model, 2), data={"y": y})
    lp = sum(
        jnp.sum(s["fn"].log_prob(s["value"]))
        for s in handlers.trace(conditioned).get_trace(y).values()
        if s["type"] == "sample"
    )
    assert bool(jnp.isfinite(lp))

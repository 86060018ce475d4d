"""Site transforms (MATH.md §1): push-forward density, round trip, log-det, registry coverage."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from jax.scipy.stats import norm
from numpyro.distributions import continuous, distribution, truncated
from numpyro.distributions.transforms import biject_to

from bayesflow_nets.emf import (
    SITE_TRANSFORM_RULES,
    UNSUPPORTED_DISTRIBUTIONS,
    monotone_inverse,
    site_map,
)
from bayesflow_nets.emf._site_transforms import site_log_prob_unconstrained

# One example per claimed class (the meta-test checks this table covers the registry).
EXAMPLES = {
    dist.Normal: lambda: dist.Normal(jnp.array([0.3, -1.0]), jnp.array([2.0, 0.5])),
    dist.MultivariateNormal: lambda: dist.MultivariateNormal(
        jnp.array([1.0, 2.0]), jnp.array([[2.0, 0.3], [0.3, 1.0]])
    ),
    dist.LowRankMultivariateNormal: lambda: dist.LowRankMultivariateNormal(
        jnp.zeros(3), jnp.ones((3, 1)), jnp.ones(3)
    ),
    dist.GaussianRandomWalk: lambda: dist.GaussianRandomWalk(jnp.array([0.5, 2.0]), num_steps=4),
    dist.Uniform: lambda: dist.Uniform(-1.0, 3.0),
    dist.Dirichlet: lambda: dist.Dirichlet(jnp.array([1.5, 2.0, 0.7, 3.0])),
    dist.ImproperUniform: lambda: dist.ImproperUniform(dist.constraints.positive, (), (2,)),
    dist.Cauchy: lambda: dist.Cauchy(1.0, 2.0),
    dist.HalfCauchy: lambda: dist.HalfCauchy(2.5),
    dist.HalfNormal: lambda: dist.HalfNormal(2.0),
    dist.Exponential: lambda: dist.Exponential(1.3),
    dist.Laplace: lambda: dist.Laplace(0.0, 2.0),
    dist.Logistic: lambda: dist.Logistic(1.0, 0.5),
    dist.Gumbel: lambda: dist.Gumbel(0.0, 1.0),
    dist.Gompertz: lambda: dist.Gompertz(1.0, 2.0),
    dist.SoftLaplace: lambda: dist.SoftLaplace(0.0, 1.0),
    dist.AsymmetricLaplace: lambda: dist.AsymmetricLaplace(0.0, 1.0, 2.0),
    dist.AsymmetricLaplaceQuantile: lambda: dist.AsymmetricLaplaceQuantile(0.0, 1.0, 0.3),
    dist.Levy: lambda: dist.Levy(0.0, 1.0),
    dist.Dagum: lambda: dist.Dagum(2.0, 3.0, 1.0),
    dist.Gamma: lambda: dist.Gamma(2.5, 1.5),
    dist.Chi2: lambda: dist.Chi2(3.0),
    dist.Beta: lambda: dist.Beta(2.0, 3.0),
    dist.BetaProportion: lambda: dist.BetaProportion(0.3, 5.0),
    dist.StudentT: lambda: dist.StudentT(3.0, 1.0, 2.0),
    dist.Weibull: lambda: dist.Weibull(1.0, 2.0),
    truncated.LeftTruncatedDistribution: lambda: dist.TruncatedDistribution(
        dist.StudentT(3.0, 0.0, 10.0), low=0.0
    ),
    truncated.RightTruncatedDistribution: lambda: dist.TruncatedDistribution(
        dist.Logistic(0.0, 1.0), high=1.0
    ),
    truncated.TwoSidedTruncatedDistribution: lambda: dist.TruncatedDistribution(
        dist.Normal(0.0, 1.0), low=-1.0, high=2.0
    ),
    truncated.LeftTruncatedGamma: lambda: dist.TruncatedGamma(2.0, 1.0, low=0.5),
    truncated.RightTruncatedGamma: lambda: dist.TruncatedGamma(2.0, 1.0, high=3.0),
    truncated.TwoSidedTruncatedGamma: lambda: dist.TruncatedGamma(2.0, 1.0, low=0.5, high=3.0),
    dist.TransformedDistribution: lambda: dist.TransformedDistribution(
        dist.Normal(0.0, 1.0).expand([2]).to_event(1), dist.transforms.ExpTransform()
    ),
    dist.LogNormal: lambda: dist.LogNormal(0.5, 0.7),
    dist.InverseGamma: lambda: dist.InverseGamma(3.0, 2.0),
    dist.Pareto: lambda: dist.Pareto(1.0, 3.0),
    dist.LogUniform: lambda: dist.LogUniform(1.0, 5.0),
}
WRAPPED = {
    "expanded": lambda: dist.Gamma(2.0, 1.0).expand([3]),
    "independent": lambda: dist.Beta(jnp.ones(2) * 2.0, 3.0).to_event(1),
    "masked": lambda: dist.HalfCauchy(1.0).expand([2]).mask(jnp.array([True, False])),
    "affine-td": lambda: dist.TransformedDistribution(
        dist.Normal(0.0, 1.0), [dist.transforms.AffineTransform(1.0, -2.0)]
    ),
}
CASES = {c.__name__: f for c, f in EXAMPLES.items()} | WRAPPED
# Default run: one case per map kind (compile time of the numerical inverses is seconds each);
# the whole table runs with ``pytest -m slow``.
FAST = {"Normal", "MultivariateNormal", "Uniform", "HalfCauchy", "Gamma", "LogNormal", "masked"}
CASE_PARAMS = [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in sorted(CASES)]


def test_registry_covers_claims_and_numpyro():
    claimed = {c for rule in SITE_TRANSFORM_RULES for c in rule.claims}
    assert claimed == set(EXAMPLES), "every claimed class needs an example in EXAMPLES"
    assert not claimed & set(UNSUPPORTED_DISTRIBUTIONS)
    everything = set()
    for mod in (continuous, truncated, distribution):
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, dist.Distribution) and cls.__module__ == mod.__name__:
                everything.add(cls)
    wrappers = {
        dist.Distribution,
        dist.ExpandedDistribution,
        dist.Independent,
        dist.MaskedDistribution,
        dist.Unit,
    }
    missing = everything - claimed - set(UNSUPPORTED_DISTRIBUTIONS) - wrappers
    assert not missing, f"classify these: {sorted(c.__name__ for c in missing)}"


def _eps(d, seed=1):
    shape = biject_to(d.support).inverse_shape(d.shape())
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


@pytest.mark.parametrize("name", CASE_PARAMS)
def test_pushforward_roundtrip_logdet(name, x64):
    d = CASES[name]()
    m = site_map(d, name)
    eps = _eps(d)
    u, ld = jax.jit(m.forward)(eps)
    back, ld_inv = jax.jit(m.inverse)(u)
    np.testing.assert_allclose(back, eps, atol=1e-9)
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-9)
    jac = jax.jit(jax.jacobian(lambda e: m.forward(e)[0].ravel()))(eps).reshape(u.size, eps.size)
    np.testing.assert_allclose(ld, jnp.linalg.slogdet(jac)[1], atol=1e-8)
    if name != "ImproperUniform":  # a flat prior has no push-forward (identity by choice)
        pushed = jnp.sum(norm.logpdf(eps)) - ld
        ref = d.base_dist if isinstance(d, dist.MaskedDistribution) else d  # mask: density only
        np.testing.assert_allclose(pushed, site_log_prob_unconstrained(ref, u), atol=1e-8)


@pytest.mark.parametrize(
    ("name", "per_element"),
    [
        (name, per_element)
        for name in ("Normal", "MultivariateNormal", "HalfCauchy")
        for per_element in (False, True)
    ]
    # numerically inverted maps: per-element gates cover λ from 2e-4 to 1 in one case
    + [("Gamma", True), ("Dirichlet", True)]
    + [pytest.param(n, False, marks=pytest.mark.slow) for n in ("Gamma", "Dirichlet")],
)
def test_gated_site_maps(name, per_element, x64):
    d = CASES[name]()
    m = site_map(d, name)
    eps = _eps(d)
    # per element: gates from nearly the identity (λ ≈ 2e-4) to nearly the full map (λ ≈ 1)
    logit = jnp.linspace(-8.5, 9.0, eps.size).reshape(eps.shape) if per_element else 0.7
    logit = jnp.asarray(logit)
    x, ld = jax.jit(m.gated_forward)(eps, logit)
    back, ld_inv = jax.jit(m.gated_inverse)(x, logit)
    np.testing.assert_allclose(back, eps, atol=1e-9)
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-9)
    jac = jax.jit(jax.jacobian(lambda e: m.gated_forward(e, logit)[0].ravel()))(eps)
    np.testing.assert_allclose(ld, jnp.linalg.slogdet(jac.reshape(x.size, eps.size))[1], atol=1e-8)


def test_gate_closed_form_normal(x64):
    # MATH.md §1: forward λ(μ+σε)+(1−λ)ε, log-det log(λ(σ−1)+1)
    m = site_map(dist.Normal(1.5, 3.0), "x")
    lam = 0.3
    x, ld = m.gated_forward(jnp.asarray(0.4), jnp.log(lam / (1 - lam)))
    np.testing.assert_allclose(x, lam * (1.5 + 3.0 * 0.4) + (1 - lam) * 0.4, rtol=1e-12)
    np.testing.assert_allclose(ld, np.log(lam * 2.0 + 1.0), rtol=1e-12)


def test_discrete_site_raises_naming_it():
    with pytest.raises(NotImplementedError, match="site 'k' is discrete"):
        site_map(dist.Poisson(3.0), "k")


def test_unsupported_continuous_raises_naming_it():
    with pytest.raises(NotImplementedError, match="site 'L'.*LKJCholesky"):
        site_map(dist.LKJCholesky(3, 1.0), "L")


def _inv_gamma(a, yy):
    from jax.scipy.special import gammainc

    return monotone_inverse(lambda x: gammainc(a, jnp.exp(x)), yy)


def _inv_beta(a, yy):  # betainc has no JAX derivative in a: the documented fallback
    from jax.scipy.special import betainc

    return monotone_inverse(lambda x: betainc(a, 2.0, jax.nn.sigmoid(x)), yy)


@pytest.mark.parametrize("inv", [_inv_gamma, pytest.param(_inv_beta, marks=pytest.mark.slow)])
def test_numerical_inverse_gradients_vs_finite_differences(inv, x64):
    y = jnp.array([0.1, 0.5, 0.9])
    h = 1e-6
    f = jax.jit(inv)
    grad_a = jax.jit(jax.grad(lambda a: inv(a, y).sum()))(1.5)
    fd_a = (f(1.5 + h, y).sum() - f(1.5 - h, y).sum()) / (2 * h)
    np.testing.assert_allclose(grad_a, fd_a, rtol=1e-5)
    grad_y = jax.jit(jax.grad(lambda yy: inv(1.5, yy).sum()))(y)
    fd_y = [
        (f(1.5, y.at[i].add(h)).sum() - f(1.5, y.at[i].add(-h)).sum()) / (2 * h) for i in range(3)
    ]
    np.testing.assert_allclose(grad_y, fd_y, rtol=1e-5)
    jvp = jax.jit(lambda a: jax.jvp(lambda b: inv(b, y), (a,), (1.0,))[1])(1.5)
    np.testing.assert_allclose(jvp, (f(1.5 + h, y) - f(1.5 - h, y)) / (2 * h), rtol=1e-5)


def test_numerical_inverse_solves(x64):
    from jax.scipy.special import gammainc

    y = jnp.array([1e-6, 0.1, 0.5, 0.9, 1 - 1e-9])
    np.testing.assert_allclose(gammainc(1.5, jnp.exp(jax.jit(_inv_gamma)(1.5, y))), y, atol=1e-13)


def test_numerical_inverse_batch_converges_like_its_slowest_element(x64, monkeypatch):
    """Solved together, elements that converge early stay converged while the others iterate:
    the batch takes as many Newton steps as its slowest element, not more."""
    from jax.scipy.special import betainc

    import bayesflow_nets.emf._solve as solve

    counts = []
    plain_while = jax.lax.while_loop

    def counting_while(cond, body, init):
        out, n = plain_while(
            lambda c: cond(c[0]), lambda c: (body(c[0]), c[1] + 1), (init, jnp.asarray(0))
        )
        counts.append(n)
        return out

    monkeypatch.setattr(solve.jax.lax, "while_loop", counting_while)
    a = jnp.tile(jnp.ones(5), 16)
    b = jnp.tile(jnp.array([5.0, 4.0, 3.0, 2.0, 1.0]), 16)
    y = jax.scipy.special.ndtr(jax.random.normal(jax.random.PRNGKey(0), (80,)))

    def fn(s, a, b):
        return betainc(a, b, jax.nn.sigmoid(s))

    def newton_steps(yy, aa, bb):
        counts.clear()
        x = solve._bracket_and_bisect(fn, (aa, bb), yy)
        return x, counts[-1]  # the Newton loop runs after the bracket expansion

    x, batch = jax.jit(newton_steps)(y, a, b)
    np.testing.assert_allclose(fn(x, a, b), y, atol=1e-13)
    # one element at a time (``lax.map`` runs each element's loops on their own)
    x1, alone = jax.jit(lambda *t: jax.lax.map(lambda e: newton_steps(*e), t))(y, a, b)
    np.testing.assert_allclose(x1, x, atol=1e-12)
    assert int(batch) <= int(alone.max()) + 1, (int(batch), np.asarray(alone))


@pytest.mark.slow
def test_float32_roundtrip():
    d = dist.Gamma(2.0, 1.0).expand([4])
    m = site_map(d, "g")
    eps = jnp.linspace(-2.0, 2.0, 4, dtype=jnp.float32)
    u, ld = m.forward(eps)
    assert u.dtype == jnp.float32
    back, _ = m.inverse(u)
    np.testing.assert_allclose(back, eps, atol=2e-4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: dist.TruncatedDistribution(dist.Normal(0.0, 10.0), low=0.0),
        lambda: dist.InverseGamma(3.0, 2.0),
        lambda: dist.TruncatedDistribution(dist.Logistic(0.0, 1.0), high=1.0),
    ],
)
def test_site_map_built_under_jit(make, x64):
    # transform signs must be resolved structurally, not from traced `Transform.sign`
    eps = jnp.array([-0.4, 0.3])
    inside = jax.jit(lambda e: site_map(make().expand([2]), "s").forward(e))(eps)
    outside = jax.jit(site_map(make().expand([2]), "s").forward)(eps)
    np.testing.assert_allclose(inside[0], outside[0], rtol=1e-12)
    np.testing.assert_allclose(inside[1], outside[1], rtol=1e-12)

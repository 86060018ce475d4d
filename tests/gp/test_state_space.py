"""State-space O(n) path vs the dense corrected posterior and REML (n = 500, ≤ 1e-8)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesflow_nets.gp import Brownian, ImproperGP, MaternWalk, supports_state_space


def walk_kernels():
    return [
        Brownian(0.6),
        MaternWalk(0.5, 1.2, 0.7),
        MaternWalk(1.5, 1.2, 0.7),
        MaternWalk(2.5, 1.2, 0.7),
    ]


def problem(n=500, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 30.0, n)  # unsorted
    y = np.sin(x / 2) + 0.05 * x + 0.1 * rng.normal(size=n)
    # Test points: before the data, interior, on data points, after the data.
    xt = np.concatenate([[-5.0, -0.5], np.linspace(-1.0, 33.0, 30), x[:3], [40.0, 100.0]])
    return jnp.asarray(x), jnp.asarray(y), jnp.asarray(xt)


@eqx.filter_jit
def both(gp, y, xt):
    dense = gp._predict(y, xt, "contrast", False)[:2]
    ss = gp._predict(y, xt, "state_space", False)[:2]
    lml_dense = gp._log_marginal_likelihood(y, "contrast")[0]
    lml_ss = gp._log_marginal_likelihood(y, "state_space")[0]
    return dense, ss, lml_dense, lml_ss


@pytest.mark.parametrize(
    "index",
    [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow), 3],
)
def test_state_space_matches_dense_n500(x64, index):
    x, y, xt = problem()
    kernel = walk_kernels()[index]
    gp = ImproperGP(kernel, x, 0.05)
    (md, vd), (ms, vs), ld, ls = both(gp, y, xt)
    np.testing.assert_allclose(ls, ld, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ms, md, rtol=0, atol=1e-8)
    np.testing.assert_allclose(vs, vd, rtol=0, atol=1e-8)


@pytest.mark.slow
def test_state_space_heteroscedastic_scaled_and_higher_order(x64):
    x, y, xt = problem(n=200, seed=1)
    noise = jnp.asarray(np.random.default_rng(2).uniform(0.01, 0.2, 200))
    for kernel in (2.5 * MaternWalk(3.5, 2.0, 0.3), 0.5 * Brownian(1.0)):
        gp = ImproperGP(kernel, x, noise)
        (md, vd), (ms, vs), ld, ls = both(gp, y, xt)
        np.testing.assert_allclose(ls, ld, rtol=0, atol=1e-8)
        np.testing.assert_allclose(ms, md, rtol=0, atol=1e-8)
        np.testing.assert_allclose(vs, vd, rtol=0, atol=1e-8)


def test_sorted_and_unsorted_inputs_agree(x64):
    x, y, xt = problem(n=100, seed=3)
    order = jnp.argsort(x)
    k = MaternWalk(1.5, 1.0, 1.0)
    a = ImproperGP(k, x, 0.05)
    b = ImproperGP(k, x[order], 0.05)
    np.testing.assert_allclose(
        a.log_marginal_likelihood(y, method="state_space"),
        b.log_marginal_likelihood(y[order], method="state_space"),
        rtol=1e-12,
    )
    pa = a.predict(y, xt, method="state_space")
    pb = b.predict(y[order], xt, method="state_space")
    np.testing.assert_allclose(pa.mean, pb.mean, atol=1e-10)
    np.testing.assert_allclose(pa.variance, pb.variance, atol=1e-10)


@pytest.mark.slow
def test_state_space_gradient_matches_dense(x64):
    x, y, _ = problem(n=120, seed=4)
    gp = ImproperGP(MaternWalk(2.5, 1.5, 0.5), x, 0.05)

    @eqx.filter_jit
    def grads(g):
        gd = jax.grad(lambda m: m._log_marginal_likelihood(y, "contrast")[0])(g)
        gs = jax.grad(lambda m: m._log_marginal_likelihood(y, "state_space")[0])(g)
        return gd, gs

    gd, gs = grads(gp)
    for a, b in zip(jax.tree_util.tree_leaves(gd), jax.tree_util.tree_leaves(gs)):
        if a.dtype == jnp.float64 and a.shape == ():
            np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-8)


def test_supports_state_space():
    from bayesflow_nets.gp import SmoothWalk, SquaredExponential

    assert supports_state_space(MaternWalk(2.5)) and supports_state_space(2.0 * Brownian())
    assert not supports_state_space(SmoothWalk()) and not supports_state_space(SquaredExponential())
    assert not supports_state_space(Brownian() + MaternWalk(0.5))

"""Kernels: registry, closed forms vs quadrature, CPD property, combinators, bad input."""

import inspect
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

import bayesflow_nets.gp as gp
from bayesflow_nets.gp import (
    KERNELS,
    AbstractKernel,
    Brownian,
    Matern12,
    Matern32,
    Matern52,
    MaternWalk,
    Periodic,
    Product,
    Scaled,
    SmoothWalk,
    SquaredExponential,
    Sum,
    matern_correlation,
    matern_walk_variogram,
    smooth_walk_variogram,
)

COMBINATORS = (Sum, Scaled, Product)


def make_kernels():
    """One instance per registered kernel (MaternWalk for each ν), built in the current dtype."""
    return [
        SquaredExponential(0.7, 1.3),
        Matern12(0.7, 1.3),
        Matern32(0.7, 1.3),
        Matern52(0.7, 1.3),
        Periodic(1.7, 0.9, 1.3),
        Brownian(0.8),
        SmoothWalk(0.7, 1.3),
        MaternWalk(0.5, 0.7, 1.3),
        MaternWalk(1.5, 0.7, 1.3),
        MaternWalk(2.5, 0.7, 1.3),
        MaternWalk(3.5, 0.7, 1.3),
    ]


IMPROPER = (Brownian, SmoothWalk, MaternWalk)


def test_registry_covers_public_kernels():
    public = {
        obj
        for _, obj in inspect.getmembers(gp, inspect.isclass)
        if issubclass(obj, AbstractKernel)
        and not inspect.isabstract(obj)
        and obj not in COMBINATORS
    }
    assert public == set(KERNELS)
    assert {type(k) for k in make_kernels()} == set(KERNELS)


def test_is_improper_flags(x64):
    for k in make_kernels():
        assert k.is_improper == isinstance(k, IMPROPER), type(k).__name__


def test_matrix_matches_pointwise_and_is_symmetric(x64):
    rng = np.random.default_rng(0)
    X1 = jnp.asarray(rng.uniform(-2, 2, 4))
    X2 = jnp.asarray(rng.uniform(-2, 2, 3))
    for k in make_kernels():
        K = k(X1, X2)
        ref = k.of_distance(jnp.abs(X1[:, None] - X2[None, :]))
        np.testing.assert_allclose(K, ref, rtol=1e-13, atol=1e-13)
        Kxx = k(X1)
        np.testing.assert_allclose(Kxx, Kxx.T, rtol=0, atol=1e-14)
        np.testing.assert_allclose(k.diag(X1), jnp.diagonal(Kxx), rtol=1e-13, atol=1e-13)
    # One single-point evaluation per kind (the batched path is built from it).
    np.testing.assert_allclose(Brownian(2.0).evaluate(X1[0], X2[0]), -jnp.abs(X1[0] - X2[0]))


def _matern_bessel(u, ell, nu):
    """Independent Matérn correlation via the modified Bessel function (u ≥ 0)."""
    if u == 0.0:
        return 1.0
    z = math.sqrt(2 * nu) * u / ell
    return 2 ** (1 - nu) / special.gamma(nu) * z**nu * special.kv(nu, z)


def test_matern_correlation_matches_bessel_form(x64):
    for nu in (0.5, 1.5, 2.5, 3.5):
        u = np.array([0.0, 0.01, 0.3, 1.0, 4.0])
        ref = [_matern_bessel(v, 0.8, nu) for v in u]
        np.testing.assert_allclose(matern_correlation(jnp.asarray(u), 0.8, nu), ref, rtol=1e-11)


def _gamma_quad(tau, corr):
    val, _ = integrate.quad(lambda u: (tau - u) * corr(u), 0.0, tau, epsabs=1e-13, epsrel=1e-12)
    return val


@pytest.mark.parametrize("nu", [0.5, 1.5, 2.5, 3.5])
def test_matern_walk_variogram_matches_quadrature(x64, nu):
    ell = 0.8
    taus = np.array([1e-3, 0.05, 0.4, 1.0, 3.0, 12.0])
    got = np.asarray(matern_walk_variogram(jnp.asarray(taus), ell, nu))
    ref = [_gamma_quad(t, lambda u: _matern_bessel(u, ell, nu)) for t in taus]
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_matern_walk_variogram_matches_math_md_closed_forms(x64):
    ell = 1.3
    t = jnp.linspace(0.0, 9.0, 50)
    r3, r5 = math.sqrt(3.0), math.sqrt(5.0)
    forms = {
        0.5: ell * t + ell**2 * (jnp.exp(-t / ell) - 1),
        1.5: (2 / r3) * ell * t - ell**2 + ell * (ell + t / r3) * jnp.exp(-r3 * t / ell),
        2.5: (8 * r5 / 15) * ell * t
        - ell**2
        + (ell**2 + (7 * r5 / 15) * ell * t + t**2 / 3) * jnp.exp(-r5 * t / ell),
    }
    for nu, ref in forms.items():
        np.testing.assert_allclose(matern_walk_variogram(t, ell, nu), ref, rtol=1e-12, atol=1e-12)


def test_matern_correlations_match_proper_kernels(x64):
    t = jnp.linspace(0.0, 5.0, 30)
    for nu, cls in [(0.5, Matern12), (1.5, Matern32), (2.5, Matern52)]:
        np.testing.assert_allclose(
            cls(0.9, 1.0).of_distance(t), matern_correlation(t, 0.9, nu), rtol=1e-13
        )


def test_smooth_walk_variogram_matches_quadrature_and_math_md(x64):
    ell = 0.6
    taus = np.array([1e-3, 0.1, 0.5, 2.0, 7.0])
    got = np.asarray(smooth_walk_variogram(jnp.asarray(taus), ell))
    ref = [_gamma_quad(t, lambda u: math.exp(-0.5 * (u / ell) ** 2)) for t in taus]
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    closed = [
        math.sqrt(math.pi / 2) * ell * t * math.erf(t / (math.sqrt(2) * ell))
        + ell**2 * (math.exp(-(t**2) / (2 * ell**2)) - 1)
        for t in taus
    ]
    np.testing.assert_allclose(got, closed, rtol=1e-12, atol=1e-14)


def test_periodic_closed_form(x64):
    t = jnp.linspace(0.0, 4.0, 9)
    ref = 1.3 * np.exp(-2 * np.sin(np.pi * np.asarray(t) / 1.7) ** 2 / 0.9**2)
    np.testing.assert_allclose(Periodic(1.7, 0.9, 1.3).of_distance(t), ref, rtol=1e-13)


def test_walk_kernel_is_minus_variance_times_variogram(x64):
    t = jnp.linspace(0.0, 4.0, 9)
    np.testing.assert_allclose(Brownian(0.8).of_distance(t), -0.4 * t, rtol=1e-14)
    np.testing.assert_allclose(
        MaternWalk(1.5, 0.7, 1.3).of_distance(t), -1.3 * matern_walk_variogram(t, 0.7, 1.5)
    )
    np.testing.assert_allclose(
        SmoothWalk(0.7, 1.3).of_distance(t), -1.3 * smooth_walk_variogram(t, 0.7)
    )


def _contrast_basis(n):
    ones = np.ones((n, 1)) / math.sqrt(n)
    q, _ = np.linalg.qr(np.concatenate([ones, np.eye(n)[:, : n - 1]], axis=1))
    return q[:, 1:]


@pytest.mark.parametrize("dim", [1, 2])
def test_cpd_property_on_random_point_sets(x64, dim):
    """Σ c_i c_j k(x_i, x_j) ≥ 0 for Σ c_i = 0 (improper) and for all c (proper)."""
    rng = np.random.default_rng(1 + dim)
    kernels = make_kernels()
    if dim == 2:  # variograms of the Euclidean distance: Brownian and the proper kernels
        kernels = [k for k in kernels if not isinstance(k, (SmoothWalk, MaternWalk, Periodic))]
    gram = eqx.filter_jit(lambda k, X: k(X))
    for trial in range(6):
        n = (7, 30)[trial % 2]  # two sizes: one compilation each
        X = rng.uniform(-3, 3, (n,) if dim == 1 else (n, dim))
        X[-1] = X[0] + 1e-3 * rng.normal(size=X[0].shape)  # include a near-duplicate pair
        Q = _contrast_basis(n)
        for k in kernels:
            K = np.asarray(gram(k, jnp.asarray(X)))
            scale = np.abs(K).max()
            if k.is_improper:
                ev = np.linalg.eigvalsh(Q.T @ K @ Q)
                assert ev.min() > -1e-10 * scale, (type(k).__name__, trial, ev.min())
                # ...and genuinely improper: K itself is indefinite.
                assert np.linalg.eigvalsh(K).min() < -1e-8 * scale
            else:
                assert np.linalg.eigvalsh(K).min() > -1e-10 * scale, (type(k).__name__, trial)


def test_sum_scale_product(x64):
    X = jnp.linspace(0, 3, 6)
    a, b = SmoothWalk(0.5, 2.0), SquaredExponential(1.0, 0.5)
    s = a + b
    assert isinstance(s, Sum) and s.is_improper
    np.testing.assert_allclose(s(X), a(X) + b(X), rtol=1e-14)
    sc = 3.0 * a
    assert isinstance(sc, Scaled) and sc.is_improper and (a * 3.0).is_improper
    np.testing.assert_allclose(sc(X), 3.0 * a(X), rtol=1e-14)
    p = b * Matern32(0.3, 2.0)
    assert isinstance(p, Product) and not p.is_improper
    np.testing.assert_allclose(p(X), b(X) * Matern32(0.3, 2.0)(X), rtol=1e-14)
    with pytest.raises(ValueError, match="products are only supported for proper kernels"):
        a * b
    with pytest.raises(ValueError, match="scale must be positive"):
        -1.0 * a


def test_hyperparameters_are_log_parametrised(x64):
    k = MaternWalk(2.5, lengthscale=0.3, variance=4.0)
    np.testing.assert_allclose(k.log_lengthscale, math.log(0.3))
    np.testing.assert_allclose(k.log_variance, math.log(4.0))
    np.testing.assert_allclose(k.lengthscale, 0.3)
    leaves = jax.tree_util.tree_leaves(k)
    assert len(leaves) == 2  # nu is static
    assert k.differentiability == 3


def test_gradients_finite_at_zero_distance(x64):
    X = jnp.array([0.0, 0.0, 1.0])

    def total(k):
        return jnp.sum(k(X))

    for k in make_kernels():
        g = jax.grad(total)(k)
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(g))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: SquaredExponential(lengthscale=-1.0), "lengthscale must be positive"),
        (lambda: Matern32(lengthscale=0.0), "lengthscale must be positive"),
        (lambda: SmoothWalk(variance=float("nan")), "variance must be positive"),
        (lambda: Brownian(variance=-2.0), "variance must be positive"),
        (lambda: MaternWalk(nu=1.0), "nu must be a half-integer"),
        (
            lambda: MaternWalk(nu=2.5, lengthscale=np.array([1.0, 2.0])),
            "lengthscale must be a scalar",
        ),
    ],
)
def test_bad_hyperparameters(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_bad_kernel_inputs():
    with pytest.raises(ValueError, match="X1 must have shape"):
        Brownian()(jnp.zeros((2, 2, 2)))

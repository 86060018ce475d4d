"""Contract tests over every bijector: round trip, log-det vs jax.jacobian, jit, vmap, float64."""

import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesflow_nets.bijectors as bj

from ..helpers import default_tols, tree_allclose
from .registry import CASES, COND, DIM

NAMES = sorted(CASES)


_CACHE = {}


def _make(name, dtype):
    key_ = (name, jnp.dtype(dtype).name)
    if key_ not in _CACHE:
        _CACHE[key_] = _build(name, dtype)
    return _CACHE[key_]


def _build(name, dtype):
    factory, sampler = CASES[name]
    key = jax.random.key(NAMES.index(name))
    b = factory(key)
    b = jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, b)
    x = sampler(jax.random.key(100), b.shape).astype(dtype)
    c = None if b.cond_shape is None else jax.random.normal(jax.random.key(7), b.cond_shape, dtype)
    return b, x, c


def test_registry_covers_public_api():
    public = {
        obj
        for _, obj in inspect.getmembers(bj, inspect.isclass)
        if issubclass(obj, bj.AbstractBijector) and not inspect.isabstract(obj)
    }
    covered = set()
    for name in NAMES:
        b, _, _ = _make(name, jnp.float32)
        stack = [b]
        while stack:
            node = stack.pop()
            covered.add(type(node))
            for v in vars(node).values():
                if isinstance(v, bj.AbstractBijector):
                    stack.append(v)
                elif isinstance(v, tuple):
                    stack.extend(e for e in v if isinstance(e, bj.AbstractBijector))
    missing = {c.__name__ for c in public - covered}
    assert not missing, f"bijectors without a contract-test case: {missing}"


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", NAMES)
def test_round_trip_and_log_det(name, dtype, request):
    if dtype == jnp.float64:
        request.getfixturevalue("x64")
    b, x, c = _make(name, dtype)

    @eqx.filter_jit
    def run(b, x, c):
        y, ld = b.transform_and_log_det(x, c)
        x_rec, ild = b.inverse_and_log_det(y, c)
        flat = lambda v: b.transform(v.reshape(b.shape), c).ravel()  # noqa: E731
        sign, logabs = jnp.linalg.slogdet(jax.jacobian(flat)(x.ravel()))
        return y, ld, x_rec, ild, sign, logabs

    y, ld, x_rec, ild, sign, logabs = run(b, x, c)
    assert y.shape == b.shape and y.dtype == dtype and ld.shape == ()
    tol = default_tols(dtype)
    np.testing.assert_allclose(x_rec, x, **tol)
    np.testing.assert_allclose(ld, -ild, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    assert sign != 0
    ld_tol = 2e-4 if dtype == jnp.float32 else 1e-9
    np.testing.assert_allclose(ld, logabs, rtol=ld_tol, atol=ld_tol)


@pytest.mark.parametrize("name", NAMES)
def test_jit_and_vmap(name):
    b, x, c = _make(name, jnp.float32)
    y, ld = b.transform_and_log_det(x, c)
    y_jit, ld_jit = eqx.filter_jit(lambda m, v, cc: m.transform_and_log_det(v, cc))(b, x, c)
    tree_allclose((y_jit, ld_jit), (y, ld), rtol=1e-5, atol=1e-5)
    xs = jnp.stack([x, 0.5 * x, x + 0.1])
    cs = None if c is None else jnp.stack([c, c, -c])
    ys, lds = eqx.filter_vmap(lambda v, cc: b.transform_and_log_det(v, cc))(xs, cs)
    for i in range(3):
        yi, ldi = b.transform_and_log_det(xs[i], None if cs is None else cs[i])
        tree_allclose((ys[i], lds[i]), (yi, ldi), rtol=1e-5, atol=1e-5)
    xr = eqx.filter_vmap(lambda v, cc: b.inverse(v, cc))(ys, cs)
    np.testing.assert_allclose(xr, xs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n][0] is not None])
def test_wrong_shapes_raise(name):
    b, x, c = _make(name, jnp.float32)
    bad = jnp.zeros(b.shape + (2,))
    with pytest.raises(ValueError, match="argument 'x' has shape"):
        b.transform(bad, c)
    with pytest.raises(ValueError, match="argument 'y' has shape"):
        b.inverse(bad, c)
    if b.cond_shape is None:
        with pytest.raises(ValueError, match="unconditional"):
            b.transform(x, jnp.zeros(COND))
    else:
        with pytest.raises(ValueError, match="argument 'condition' has shape"):
            b.transform(x, jnp.zeros(COND + 1))
        with pytest.raises(ValueError, match="'condition' of shape"):
            b.transform(x)


def test_scan_python_loop_equals_lax_scan():
    """Scan's unrolled Python loop and its lax.scan path give the same values and log-dets."""
    from .registry import _stacked_affine

    key = jax.random.key(3)
    looped, scanned = _stacked_affine(key, unroll=True), _stacked_affine(key, unroll=1)
    assert looped.unroll is True and scanned.unroll == 1
    assert bj.Scan(looped.stacked).unroll is True  # 3 layers <= MAX_UNROLLED
    x = jax.random.normal(jax.random.key(4), (DIM,))
    for a, b in [
        (looped.transform_and_log_det(x), scanned.transform_and_log_det(x)),
        (looped.inverse_and_log_det(x), scanned.inverse_and_log_det(x)),
    ]:
        np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="unroll"):
        bj.Scan(looped.stacked, unroll=0)

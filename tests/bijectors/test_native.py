"""The native spline kernel (XLA FFI, AVX-512) against the XLA path it stands in for."""

from __future__ import annotations

import shutil

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

import bayesflow_nets.bijectors as bj
from bayesflow_nets.bijectors import _native
from bayesflow_nets.bijectors._rqs import rqs_blocked, rqs_blocked_biased

LO, HI = -4.0, 4.0


needs_kernel = pytest.mark.skipif(
    not (_native.cpu_has_avx512f() and _native.find_compiler()),
    reason="needs AVX-512F and a C++ compiler",
)


def _arrays(seed, lead, m, scale=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 3.0, lead + (m,))
    x[..., 0], x[..., -1] = 5.0, (-6.0 if m > 1 else 5.0)  # outside [lo, hi]: identity tails
    params = rng.normal(0.0, scale, lead + (23, m))
    bias = rng.normal(0.0, scale, (23, m))
    return (jnp.asarray(a, jnp.float32) for a in (x, params, bias))


def _uses_kernel(fn, *args) -> int:
    return str(jax.make_jaxpr(fn)(*args)).count(_native.TARGET)


@pytest.fixture
def fresh_status(monkeypatch):
    """Re-run the kernel's set-up under this test's environment, and again afterwards."""
    _native.status.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    _native.status.cache_clear()


@needs_kernel
def test_kernel_builds_and_registers():
    assert _native.status() is None


@needs_kernel
@pytest.mark.parametrize("inverse", [True, False])
@pytest.mark.parametrize("m", [1, 5, 16, 37])
def test_values_match_the_xla_path(m, inverse, x64):
    """Over 64 × m splines, the kernel's float32 values are about as close to a float64
    evaluation as the XLA path's (measured: mean error 1.0–1.6×, max 1.0–4.3× the XLA path's)."""
    x, params, bias = _arrays(m, (64,), m)

    def native(x, p):
        return rqs_blocked_biased(x, p, bias, 8, LO, HI, inverse)

    def xla(x, p, dtype=jnp.float32):
        return rqs_blocked(x.astype(dtype), (p + bias).astype(dtype), 8, LO, HI, inverse)

    assert _uses_kernel(jax.vmap(native), x, params) == 1
    ours, theirs = jax.vmap(native)(x, params), jax.vmap(xla)(x, params)
    exact = jax.vmap(lambda x, p: xla(x, p, jnp.float64))(x, params)
    for a, b, truth in zip(ours, theirs, exact):
        assert a.dtype == jnp.float32
        err, ref = (jnp.abs(v.astype(jnp.float64) - truth) for v in (a, b))
        assert float(err.mean()) <= 2 * float(ref.mean()) + 1e-7
        assert float(err.max()) <= 5 * float(ref.max()) + 1e-5
    outside = (x <= LO) | (x >= HI)
    assert bool(jnp.all(jnp.where(outside, (ours[0] == x) & (ours[1] == 0), True)))


@needs_kernel
def test_batching_broadcasts_unbatched_operands():
    x, params, bias = _arrays(1, (3, 4), 20)
    for inverse in (True, False):
        def native(x, p, b, inverse=inverse):
            return rqs_blocked_biased(x, p, b, 8, LO, HI, inverse)

        def ref(x, p, b, inverse=inverse):
            return rqs_blocked(x, p + b, 8, LO, HI, inverse)

        cases = [  # (in_axes of the outer and inner vmap, arguments)
            (((0, 0, None), (0, 0, None)), (x, params, bias)),  # a flow: bias unbatched
            (((None, 0, None), (None, 0, None)), (x[0, 0], params, bias)),  # x unbatched
            (((0, None, None), (0, 0, None)), (x, params[0], bias)),  # outer: params unbatched
        ]
        for (outer, inner), args in cases:
            f = jax.jit(jax.vmap(jax.vmap(native, in_axes=inner), in_axes=outer))
            g = jax.vmap(jax.vmap(ref, in_axes=inner), in_axes=outer)
            assert _uses_kernel(f, *args) == 1
            for a, b in zip(f(*args), g(*args)):
                assert_allclose(a, b, atol=2e-4, rtol=1e-4)


def _flow(dtype=jnp.float32, knots=8):
    key = jax.random.key(0)
    flow = bj.coupling_flow(key, base_dist=bj.StandardNormal((24,)), flow_layers=3, nn_width=32,
                            nn_depth=2, knots=knots, interval=4.0)
    leaves, tdef = jax.tree_util.tree_flatten(flow)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    return jax.tree_util.tree_unflatten(tdef, [
        (leaf + 0.05 * jax.random.normal(k, leaf.shape)).astype(dtype)
        if eqx.is_inexact_array(leaf) else leaf for leaf, k in zip(leaves, keys)])


@pytest.mark.slow
@needs_kernel
def test_coupling_flow_uses_the_kernel_and_matches(monkeypatch):
    flow = _flow()
    x = jax.random.normal(jax.random.key(2), (64, 24))

    def log_prob(f, x):
        return jax.vmap(f.log_prob)(x)

    def loss(f, x):
        return jnp.mean(log_prob(f, x))

    def sample(f, z):
        return jax.vmap(f.bijector.transform_and_log_det)(z)

    assert _uses_kernel(lambda x: log_prob(flow, x), x) == 3  # one call per layer
    assert _uses_kernel(lambda z: sample(flow, z), x) == 3
    native = (log_prob(flow, x), sample(flow, x), eqx.filter_grad(loss)(flow, x))
    monkeypatch.setattr(_native, "usable", lambda *args: False)
    assert _uses_kernel(lambda x: log_prob(flow, x), x) == 0
    xla = (log_prob(flow, x), sample(flow, x), eqx.filter_grad(loss)(flow, x))
    assert_allclose(native[0], xla[0], atol=1e-4, rtol=1e-5)
    for a, b in zip(native[1], xla[1]):
        assert_allclose(a, b, atol=1e-4, rtol=1e-5)
    # derivatives take the XLA path either way
    for a, b in zip(jax.tree_util.tree_leaves(native[2]), jax.tree_util.tree_leaves(xla[2])):
        assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_other_dtypes_and_bin_counts_take_the_xla_path(x64):
    x = jax.random.normal(jax.random.key(2), (4, 24))
    for flow, dtype in ((_flow(jnp.float64), jnp.float64), (_flow(knots=5), jnp.float32)):
        assert _uses_kernel(lambda x, f=flow: jax.vmap(f.log_prob)(x), x.astype(dtype)) == 0
    flow = _flow()
    assert _uses_kernel(lambda x: jax.vmap(flow.log_prob)(x), x.astype(jnp.float32)) == (
        3 if _native.status() is None else 0)


def test_disabled_by_environment(fresh_status):
    fresh_status.setenv("BAYESFLOW_NETS_NATIVE", "0")
    assert _native.status() == "disabled by BAYESFLOW_NETS_NATIVE"
    x, params, bias = _arrays(0, (), 8)
    assert not _native.usable(x, params, bias, 8)
    assert _uses_kernel(lambda *a: rqs_blocked_biased(*a, 8, LO, HI, True), x, params, bias) == 0


@needs_kernel
def test_a_failed_build_warns_and_falls_back(fresh_status, tmp_path):
    fresh_status.setenv("BAYESFLOW_NETS_CACHE", str(tmp_path))
    fresh_status.setenv("CXX", shutil.which("false") or "/bin/false")
    with pytest.warns(RuntimeWarning, match="did not build or load"):
        reason = _native.status()
    assert reason is not None and "did not build" in reason
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left in the cache

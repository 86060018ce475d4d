"""The blocked spline kernel: its two bin lookups agree with a gather-based NumPy reference, and
its custom JVP (masked-sum form) is the derivative of the values it returns (select form)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesflow_nets.bijectors._rqs import _bin_masked, _bin_selects, _rqs, rqs_blocked

K, LO, HI = 6, -3.0, 3.0


def _reference(x, params, inverse):
    """Durkan et al.'s spline with NumPy gathers (searchsorted), identity outside [LO, HI]."""
    x, params = np.asarray(x, np.float64), np.asarray(params, np.float64)

    def knots(u):
        w = np.exp(u - u.max(0))
        w = 1e-3 + (1 - 1e-3 * K) * w / w.sum(0)
        return LO + (HI - LO) * np.concatenate([np.zeros((1, u.shape[1])), np.cumsum(w, 0)])

    xk, yk = knots(params[:K]), knots(params[K : 2 * K])
    ones = np.ones((1, params.shape[1]))
    dk = np.concatenate([ones, 1e-3 + np.logaddexp(0.0, params[2 * K :]), ones])
    out, ld = x.copy(), np.zeros_like(x)
    for n in range(x.shape[0]):
        if not LO < x[n] < HI:
            continue
        kn = yk[:, n] if inverse else xk[:, n]
        i = min(int(np.searchsorted(kn, x[n], side="right")) - 1, K - 1)
        x0, x1, y0, y1 = xk[i, n], xk[i + 1, n], yk[i, n], yk[i + 1, n]
        d0, d1 = dk[i, n], dk[i + 1, n]
        w, h = x1 - x0, y1 - y0
        s = h / w
        if inverse:
            dy = x[n] - y0
            c2 = d1 + d0 - 2 * s
            a, b, c = h * (s - d0) + dy * c2, h * d0 - dy * c2, -s * dy
            xi = 2 * c / (-b - np.sqrt(b * b - 4 * a * c))
        else:
            xi = (x[n] - x0) / w
        om = xi * (1 - xi)
        denom = s + (d1 + d0 - 2 * s) * om
        lg = np.log(s**2 * (d1 * xi**2 + 2 * s * om + d0 * (1 - xi) ** 2)) - 2 * np.log(denom)
        if inverse:
            out[n], ld[n] = x0 + xi * w, -lg
        else:
            out[n], ld[n] = y0 + h * (s * xi**2 + d0 * om) / denom, lg
    return out, ld


def _inputs(seed):
    key = jax.random.key(seed)
    params = 1.5 * jax.random.normal(key, (3 * K - 1, 40), jnp.float64)
    x = 2.5 * jax.random.normal(jax.random.fold_in(key, 1), (40,), jnp.float64)
    # the interval's ends, just inside and outside them, and zero
    x = x.at[:6].set(jnp.array([LO, HI, LO - 1e-6, HI + 1e-6, LO + 1e-6, 0.0]))
    return x, params


@pytest.mark.parametrize("inverse", [False, True])
def test_both_lookups_match_gather_reference(inverse, x64):
    x, params = _inputs(0)
    ref = _reference(x, params, inverse)
    for lookup in (_bin_selects, _bin_masked):
        out, ld = _rqs(x, params, K, LO, HI, inverse, lookup)
        np.testing.assert_allclose(np.asarray(out), ref[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(ld), ref[1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("inverse", [pytest.param(False, marks=pytest.mark.slow), True])
def test_custom_jvp_is_the_derivative_of_the_values(inverse, x64):
    x, params = _inputs(1)

    def loss(x, params, fn):
        out, ld = fn(x, params)
        return jnp.sum(jnp.sin(out)) + jnp.sum(ld**2)

    custom = lambda x, p: rqs_blocked(x, p, K, LO, HI, inverse)  # noqa: E731
    plain = lambda x, p: _rqs(x, p, K, LO, HI, inverse, _bin_selects)  # noqa: E731
    g_custom = jax.grad(loss, argnums=(0, 1))(x, params, custom)
    g_plain = jax.grad(loss, argnums=(0, 1))(x, params, plain)
    for a, b in zip(g_custom, g_plain):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-10)
    # forward mode works too and agrees with reverse mode
    jf = jax.jacfwd(lambda x: custom(x, params)[0])(x)
    jr = jax.jacrev(lambda x: custom(x, params)[0])(x)
    np.testing.assert_allclose(np.asarray(jf), np.asarray(jr), rtol=1e-10, atol=1e-12)
    # and finite differences of the returned values
    v = jax.random.normal(jax.random.key(2), params.shape, jnp.float64)
    eps = 1e-6
    fd = (loss(x, params + eps * v, custom) - loss(x, params - eps * v, custom)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.vdot(g_custom[1], v)), float(fd), rtol=1e-6)

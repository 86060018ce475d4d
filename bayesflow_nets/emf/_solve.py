"""Bracketed inversion of elementwise increasing maps with implicit gradients (MATH.md §1).

``monotone_inverse(fn, y)`` solves ``fn(x) = y`` elementwise for an increasing ``fn`` by bracket
expansion then Newton steps safeguarded by bisection; gradients follow the implicit-function theorem
``dx = (dy − ∂f/∂θ · dθ) / f'(x)`` through ``jax.custom_jvp`` (so reverse mode works by
transposition). Closed-over tracers (the distribution's parameters) are hoisted with
``jax.closure_convert`` so they receive gradients too.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jaxtyping import Array

_EXPAND_STEPS = 12  # bracket grows to ±2**12 around the initial [-1, 1]
_MAX_STEPS = 64  # bisection alone narrows the widest bracket to float64 resolution in 64


def _bracket_and_bisect(fn, consts, y):
    """Elementwise: find ``x`` with ``fn(x, *consts) = y`` for increasing ``fn``: bracket
    expansion while any element lies outside its bracket, then Newton steps that fall back to
    bisection where a step would leave the bracket, until every step is below √eps (relative):
    Newton's error is then about eps. A few iterations where ``fn`` is smooth."""
    f = lambda x: fn(x, *consts)
    one = jnp.ones_like(y)

    def unbracketed(c):
        i, lo, hi, flo, fhi = c
        return (i < _EXPAND_STEPS) & jnp.any((flo > y) | (fhi < y))

    def expand(c):
        i, lo, hi, flo, fhi = c
        lo = jnp.where(flo > y, 2.0 * lo, lo)
        hi = jnp.where(fhi < y, 2.0 * hi, hi)
        return i + 1, lo, hi, f(lo), f(hi)

    _, lo, hi, _, _ = jax.lax.while_loop(unbracketed, expand, (0, -one, one, f(-one), f(one)))
    tol = jnp.sqrt(jnp.finfo(y.dtype).eps)

    def unconverged(c):
        i, x, lo, hi, dx = c
        return (i < _MAX_STEPS) & jnp.any(jnp.abs(dx) > tol * (1.0 + jnp.abs(x)))

    def step(c):
        i, x, lo, hi, _ = c
        fx, dfx = jax.jvp(f, (x,), (one,))
        r = fx - y
        lo = jnp.where(r < 0, x, lo)
        hi = jnp.where(r > 0, x, hi)
        newton = x - r / jnp.where(dfx > 0, dfx, 1.0)
        # a Newton step that rounds to x itself (an element already converged while others
        # iterate) stays put: bisecting it would undo its convergence
        inside = (dfx > 0) & (newton >= lo) & (newton <= hi)
        new = jnp.where(r == 0, x, jnp.where(inside, newton, 0.5 * (lo + hi)))
        return i + 1, new, lo, hi, new - x

    x0 = 0.5 * (lo + hi)
    return jax.lax.while_loop(unconverged, step, (0, x0, lo, hi, hi - lo))[1]


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _solve(fn, consts, y):
    return _bracket_and_bisect(fn, consts, y)


def _param_tangent(fn, x, consts, dconsts):
    """``∂fn/∂consts · dconsts`` at fixed ``x``; central differences if JAX has no rule."""
    idx = [i for i, t in enumerate(dconsts) if not isinstance(t, SymbolicZero)]
    if not idx:
        return jnp.zeros_like(x)
    sub = tuple(consts[i] for i in idx)
    tan = tuple(dconsts[i] for i in idx)

    def g(*s):
        full = list(consts)
        for i, v in zip(idx, s):
            full[i] = v
        return fn(x, *full)

    try:
        return jax.jvp(g, sub, tan)[1]
    except ValueError:
        # e.g. betainc has no derivative in its shape parameters: central differences of the
        # primal, one parameter at a time, so the result stays linear in the tangent. Valid
        # because ``fn`` is elementwise with parameters broadcasting against ``x``.
        out = jnp.zeros_like(x)
        for k, (s, t) in enumerate(zip(sub, tan)):
            h = jnp.sqrt(jnp.finfo(x.dtype).eps) * jnp.maximum(1.0, jnp.abs(s))
            shifted = lambda v, k=k: g(*(v if j == k else sub[j] for j in range(len(sub))))
            deriv = jax.lax.stop_gradient((shifted(s + h) - shifted(s - h)) / (2.0 * h))
            out = out + deriv * jnp.broadcast_to(t, jnp.broadcast_shapes(jnp.shape(t), x.shape))
        return out


def _solve_jvp(fn, primals, tangents):
    consts, y = primals
    dconsts, dy = tangents
    x = _solve(fn, consts, y)
    _, fx = jax.jvp(lambda xx: fn(xx, *consts), (x,), (jnp.ones_like(x),))
    dy = jnp.zeros_like(y) if isinstance(dy, SymbolicZero) else dy
    dx = (dy - _param_tangent(fn, x, consts, dconsts)) / fx
    return x, dx


_solve.defjvp(_solve_jvp, symbolic_zeros=True)


def monotone_inverse(fn: Callable[[Array], Array], y: Array) -> Array:
    """Solve ``fn(x) = y`` elementwise for an elementwise-increasing ``fn`` (MATH.md §1).

    ``fn`` may close over traced parameters; gradients with respect to them and to ``y`` use
    the implicit-function theorem. The bracket reaches ``±2**12``; outside it the result is
    clipped to the bracket end.
    """
    y = jnp.asarray(y)
    converted, consts = jax.closure_convert(fn, y)
    return _solve(converted, tuple(consts), y)

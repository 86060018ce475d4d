"""Elementwise rational-quadratic spline (Durkan et al. 2019) with identity tails."""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._custom_types import Shape
from . import _native
from ._base import AbstractBijector, _as_shape, check_finite
from ._utils import softplus_inverse

_MIN_BIN = 1e-3
_MIN_DERIVATIVE = 1e-3


def _bin_masked(x, params, k, lo, hi, inverse):
    """The bin's (x0, x1, y0, y1, d0 raw, d1 raw) from the bin probabilities by masked sums down
    the bin axis: x0 = lo + idx·step + c·Σ_{i<idx} p_i, x1 = x0 + step + c·p_idx. Its tangents
    are masked sums of the softmax tangents, whose transposes are broadcasts: XLA differentiates
    this form well (no knot array, no gathers)."""

    def probs(u):
        top = jax.lax.stop_gradient(jnp.max(u, axis=0, keepdims=True))  # overflow guard only
        e = jnp.exp(u - top)
        return e / jnp.sum(e, axis=0, keepdims=True)

    pw, ph, ud = probs(params[:k]), probs(params[k : 2 * k]), params[2 * k :]
    step, c = (hi - lo) * _MIN_BIN, (hi - lo) * (1 - _MIN_BIN * k)
    # the interior knots only locate the bin (an integer): no gradient flows through them
    p_in = jax.lax.stop_gradient(ph if inverse else pw)
    lower = jnp.asarray(np.tril(np.ones((k - 1, k))), p_in.dtype)  # knot j sums p_0..p_{j-1}
    interior = lo + step * jnp.arange(1, k, dtype=p_in.dtype)[:, None] + c * (lower @ p_in)
    idx = jnp.sum((x[None] >= interior).astype(jnp.int32), axis=0)  # the bin, 0..K−1
    bins = jnp.arange(k)[:, None]
    below, at = bins < idx[None], bins == idx[None]

    def ends(p):
        start = lo + step * idx.astype(p.dtype) + c * jnp.sum(jnp.where(below, p, 0.0), axis=0)
        return start, start + step + c * jnp.sum(jnp.where(at, p, 0.0), axis=0)

    def pick(offset):  # ud[idx − offset]
        rows = jnp.arange(k - 1)[:, None]
        return jnp.sum(jnp.where(rows == idx[None] - offset, ud, 0.0), axis=0)

    (x0, x1), (y0, y1) = ends(pw), ends(ph)
    return idx, (x0, x1, y0, y1, pick(1), pick(0))


def _bin_selects(x, params, k, lo, hi, inverse):
    """The same values written out over the bin axis as elementwise operations (maxima, running
    sums, chains of selects): no reductions, about 1.5× faster to run than :func:`_bin_masked`
    in a coupling flow, but XLA's gradient of the select chains is 4–6× slower.

    On XLA:CPU the splines cost about as much as the conditioner's matmuls, because XLA fuses
    the row maxima, knots and bin index into each of their consumers (each exponential re-reads
    every row; the picks and the permutation's gather recompute the knots and comparisons);
    ``jax.lax.optimization_barrier`` does not stop it on this backend."""
    rows = [params[i] for i in range(3 * k - 1)]

    def knots(u):
        top = functools.reduce(jnp.maximum, u)
        e = [jnp.exp(v - top) for v in u]
        scale = (hi - lo) * (1 - _MIN_BIN * k) / functools.reduce(jnp.add, e)
        out = [jnp.full_like(top, lo)]
        for i in range(k):
            out.append(out[-1] + ((hi - lo) * _MIN_BIN + scale * e[i]))
        return out

    xk, yk, ud = knots(rows[:k]), knots(rows[k : 2 * k]), rows[2 * k :]
    idx = functools.reduce(
        jnp.add, [(x >= kn).astype(jnp.int32) for kn in (yk if inverse else xk)[1:k]]
    )

    def pick(arr, offset=0):  # arr[idx − offset] per spline
        out = arr[0]
        for j in range(1, len(arr)):
            out = jnp.where(idx == j + offset, arr[j], out)
        return out

    return idx, (pick(xk[:k]), pick(xk[1:]), pick(yk[:k]), pick(yk[1:]), pick(ud, 1), pick(ud))


def _rqs(x, params, k, lo, hi, inverse, bin_values):
    inside = (x > lo) & (x < hi)
    xc = jnp.clip(x, lo, hi)
    idx, (x0, x1, y0, y1, u0, u1) = bin_values(xc, params, k, lo, hi, inverse)
    # the derivative at interior knot j is softplus(params[2K + j − 1]); at the ends it is 1
    d0 = jnp.where(idx == 0, 1.0, _MIN_DERIVATIVE + jax.nn.softplus(u0))
    d1 = jnp.where(idx == k - 1, 1.0, _MIN_DERIVATIVE + jax.nn.softplus(u1))
    w, h = x1 - x0, y1 - y0
    s = h / w
    if inverse:
        dy = xc - y0
        c2 = d1 + d0 - 2 * s
        a = h * (s - d0) + dy * c2
        b = h * d0 - dy * c2
        c = -s * dy
        disc = jnp.maximum(b**2 - 4 * a * c, 0.0)
        xi = (2 * c) / (-b - jnp.sqrt(disc))
    else:
        xi = (xc - x0) / w
    xi = jnp.clip(xi, 0.0, 1.0)
    om = xi * (1 - xi)
    denom = s + (d1 + d0 - 2 * s) * om
    num_dy = s**2 * (d1 * xi**2 + 2 * s * om + d0 * (1 - xi) ** 2)
    log_grad = jnp.log(num_dy) - 2 * jnp.log(denom)  # log dy/dx at the point
    if inverse:
        out = x0 + xi * w
        return jnp.where(inside, out, x), jnp.where(inside, -log_grad, 0.0)
    out = y0 + h * (s * xi**2 + d0 * om) / denom
    return jnp.where(inside, out, x), jnp.where(inside, log_grad, 0.0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def rqs_blocked(
    x: Array, params: Array, knots: int, lo: float, hi: float, inverse: bool
) -> tuple[Array, Array]:
    """``n`` splines in the blocked layout: ``x`` (n,), ``params`` (3K − 1, n) with rows
    [widths (K), heights (K), interior derivatives (K − 1)], unnormalised.

    The bin axis is short and leading, so every step runs across the n splines at once, with no
    gathers, and softplus only on the bin's two derivatives. Values come from
    :func:`_bin_selects`, derivatives (any order, forward or reverse) from the same formula on
    :func:`_bin_masked`. Identity outside [lo, hi]. Returns the outputs and the elementwise
    log|dy/dx| (log|dx/dy| when ``inverse``).
    """
    return _rqs(x, params, knots, lo, hi, inverse, _bin_selects)


@rqs_blocked.defjvp
def _rqs_blocked_jvp(knots, lo, hi, inverse, primals, tangents):
    def f(x, params):
        return _rqs(x, params, knots, lo, hi, inverse, _bin_masked)

    return jax.jvp(f, primals, tangents)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5, 6))
def rqs_blocked_biased(
    x: Array, params: Array, bias: Array, knots: int, lo: float, hi: float, inverse: bool
) -> tuple[Array, Array]:
    """:func:`rqs_blocked` on ``params + bias`` (both (3K − 1, n)): a conditioner's output before
    its last bias, and that bias.

    On the CPU, with 8 bins in float32, the values come from the native kernel where it is
    ready (:mod:`._native`), which adds the bias as it loads each row: a coupling flow then
    never writes out its conditioners' biased outputs. Elsewhere, and for all derivatives, the
    XLA path of :func:`rqs_blocked`, where XLA fuses the add into the spline.
    """

    def xla(x, params, bias):
        return _rqs(x, params + bias, knots, lo, hi, inverse, _bin_selects)

    if not _native.usable(x, params, bias, knots):
        return xla(x, params, bias)
    return jax.lax.platform_dependent(
        x,
        params,
        bias,
        cpu=lambda x, p, b: _native.rqs_values(x, p, b, lo, hi, inverse),
        default=xla,
    )


@rqs_blocked_biased.defjvp
def _rqs_blocked_biased_jvp(knots, lo, hi, inverse, primals, tangents):
    (x, params, bias), (dx, dparams, dbias) = primals, tangents
    return _rqs_blocked_jvp(knots, lo, hi, inverse, (x, params + bias), (dx, dparams + dbias))


class RationalQuadraticSpline(AbstractBijector):
    """Monotone rational-quadratic spline on [−B, B] (or [lo, hi]) per element, identity outside.

    Parameters are unconstrained fields of shape ``shape + (knots,)`` (widths, heights) and
    ``shape + (knots − 1,)`` (interior derivatives, softplus); boundary derivatives are 1 so the
    map is C¹ with the identity tails. Default initialisation is the identity.
    """

    unnormalised_widths: Array
    unnormalised_heights: Array
    unnormalised_derivatives: Array
    interval: tuple[float, float] = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(
        self,
        knots: int = 8,
        interval: float | tuple[float, float] = 4.0,
        shape: Shape = (),
        *,
        widths: ArrayLike | None = None,
        heights: ArrayLike | None = None,
        derivatives: ArrayLike | None = None,
    ):
        if not isinstance(knots, int) or knots < 2:
            raise ValueError(
                f"argument 'knots' (number of bins) must be an int >= 2, got {knots!r}."
            )
        if isinstance(interval, int | float):
            if interval <= 0:
                raise ValueError(f"argument 'interval' must be positive, got {interval!r}.")
            interval = (-float(interval), float(interval))
        try:
            lo, hi = (float(v) for v in interval)
        except (TypeError, ValueError):
            raise TypeError(
                f"argument 'interval' must be a number B > 0 or a pair (lo, hi), got {interval!r}."
            ) from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"argument 'interval' must be finite, got {interval!r}.")
        if not hi > lo:
            raise ValueError(f"argument 'interval' must satisfy lo < hi, got {interval!r}.")
        self.interval = (lo, hi)
        self.shape = _as_shape(shape, "shape")

        def _bins(name, value):
            if value is None:
                return jnp.zeros(self.shape + (knots,))
            arr = jnp.asarray(value, dtype=jnp.result_type(float))
            check_finite(name, arr)
            if arr.shape != self.shape + (knots,):
                raise ValueError(
                    f"argument {name!r} must have shape {self.shape + (knots,)}, got {arr.shape}."
                )
            if bool(jnp.any(arr <= 0)):
                raise ValueError(f"argument {name!r} must be strictly positive (bin sizes).")
            return jnp.log(arr / arr.sum(-1, keepdims=True))

        self.unnormalised_widths = _bins("widths", widths)
        self.unnormalised_heights = _bins("heights", heights)
        if derivatives is None:
            # no float(): the spline must also build inside a traced function
            self.unnormalised_derivatives = jnp.full(
                self.shape + (knots - 1,), softplus_inverse(1.0 - _MIN_DERIVATIVE)
            )
        else:
            d = jnp.asarray(derivatives, dtype=jnp.result_type(float))
            check_finite("derivatives", d)
            if d.shape != self.shape + (knots - 1,):
                raise ValueError(
                    f"argument 'derivatives' must have shape {self.shape + (knots - 1,)} (interior "
                    f"knots), got {d.shape}."
                )
            if bool(jnp.any(d <= _MIN_DERIVATIVE)):
                raise ValueError(f"argument 'derivatives' must be > {_MIN_DERIVATIVE}.")
            self.unnormalised_derivatives = softplus_inverse(d - _MIN_DERIVATIVE)

    @property
    def knots(self) -> int:
        return self.unnormalised_widths.shape[-1]

    def _apply(self, x, inverse: bool):
        n, k = max(1, int(jnp.size(x))), self.knots
        params = jnp.concatenate(
            [
                self.unnormalised_widths.reshape(n, k),
                self.unnormalised_heights.reshape(n, k),
                self.unnormalised_derivatives.reshape(n, k - 1),
            ],
            axis=1,
        )
        out, ld = rqs_blocked(x.reshape(n), params.T, k, *self.interval, inverse)
        return out.reshape(x.shape), jnp.sum(ld)

    def _transform_and_log_det(self, x, condition):
        return self._apply(x, inverse=False)

    def _inverse_and_log_det(self, y, condition):
        return self._apply(y, inverse=True)


__all__ = ["RationalQuadraticSpline", "rqs_blocked", "rqs_blocked_biased"]

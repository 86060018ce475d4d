"""Elementwise rational-quadratic spline (Durkan et al. 2019) with identity tails."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._custom_types import Shape
from ._base import AbstractBijector, _as_shape, check_finite
from ._utils import softplus_inverse

_MIN_BIN = 1e-3
_MIN_DERIVATIVE = 1e-3


def _knots(unnormalised: Array, lo: float, hi: float) -> Array:
    """Knot positions (..., K+1) from unnormalised bin sizes (..., K); cumsum as a matmul."""
    k = unnormalised.shape[-1]
    widths = _MIN_BIN + (1 - _MIN_BIN * k) * jax.nn.softmax(unnormalised, axis=-1)
    upper = jnp.asarray(np.triu(np.ones((k, k + 1)), 1), widths.dtype)  # [i, j] = 1 if i < j
    return lo + (hi - lo) * (widths @ upper)


def _derivatives(unnormalised: Array) -> Array:
    one = jnp.ones(unnormalised.shape[:-1] + (1,), unnormalised.dtype)
    inner = _MIN_DERIVATIVE + jax.nn.softplus(unnormalised)
    return jnp.concatenate([one, inner, one], axis=-1)


def _spline(x, xk, yk, dk, lo, hi, inverse: bool):
    """Elements ``x`` (n,) through their splines (knots (n, K+1)); identity outside [lo, hi].

    Returns the outputs and the elementwise log|dy/dx| (or log|dx/dy| when ``inverse``).
    """
    inside = (x > lo) & (x < hi)
    xc = jnp.clip(x, lo, hi)
    knots_in = yk if inverse else xk
    k = xk.shape[-1] - 1
    idx = jnp.sum(xc[..., None] >= knots_in[..., 1:k], axis=-1)[..., None]

    def at(arr, offset):
        return jnp.take_along_axis(arr, idx + offset, axis=-1)[..., 0]

    x0, x1, y0, y1, d0, d1 = at(xk, 0), at(xk, 1), at(yk, 0), at(yk, 1), at(dk, 0), at(dk, 1)
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
        lo, hi = (float(v) for v in interval)
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
            self.unnormalised_derivatives = jnp.full(
                self.shape + (knots - 1,), float(softplus_inverse(1.0 - _MIN_DERIVATIVE))
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
        lo, hi = self.interval
        xk = _knots(self.unnormalised_widths, lo, hi)
        yk = _knots(self.unnormalised_heights, lo, hi)
        dk = _derivatives(self.unnormalised_derivatives)
        n = max(1, int(jnp.size(x)))
        out, ld = _spline(
            x.reshape(n), xk.reshape(n, -1), yk.reshape(n, -1), dk.reshape(n, -1), lo, hi, inverse
        )
        return out.reshape(x.shape), jnp.sum(ld)

    def _transform_and_log_det(self, x, condition):
        return self._apply(x, inverse=False)

    def _inverse_and_log_det(self, y, condition):
        return self._apply(y, inverse=True)


__all__ = ["RationalQuadraticSpline"]

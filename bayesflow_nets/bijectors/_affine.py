"""Affine bijectors: Loc, Scale, Affine, TriangularAffine, LowRankAffine."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from .._custom_types import Shape
from ._base import AbstractBijector
from ._utils import as_float_array, broadcast_shape, positive_param, softplus_inverse


class Loc(AbstractBijector):
    """y = x + loc."""

    loc: Array
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, loc: ArrayLike):
        self.loc = as_float_array("loc", loc)
        self.shape = self.loc.shape

    def _transform_and_log_det(self, x, condition):
        return x + self.loc, jnp.zeros((), x.dtype)

    def _inverse_and_log_det(self, y, condition):
        return y - self.loc, jnp.zeros((), y.dtype)


class Scale(AbstractBijector):
    """y = scale ⊙ x with scale > 0 (softplus-parametrised field)."""

    scale_unconstrained: Array
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, scale: ArrayLike):
        self.scale_unconstrained = positive_param("scale", as_float_array("scale", scale))
        self.shape = self.scale_unconstrained.shape

    @property
    def scale(self) -> Array:
        return jax.nn.softplus(self.scale_unconstrained)

    def _transform_and_log_det(self, x, condition):
        s = self.scale
        return x * s, jnp.sum(jnp.log(s))

    def _inverse_and_log_det(self, y, condition):
        s = self.scale
        return y / s, -jnp.sum(jnp.log(s))


_LOG_SCALE_BOUNDS = (-5.0, 3.0)


class Affine(AbstractBijector):
    """y = loc + scale ⊙ x with scale > 0; loc and scale broadcast.

    ``positivity="softplus"`` (default) stores softplus⁻¹(scale). ``positivity="exp"`` stores
    log(scale), clipped to [−5, 3] as NumPyro's IAF does: one ``exp`` per element and the log-det
    is the clipped log-scale itself, the cheaper choice inside autoregressive flows.
    """

    loc: Array
    scale_unconstrained: Array
    positivity: str = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(
        self, loc: ArrayLike = 0.0, scale: ArrayLike = 1.0, *, positivity: str = "softplus"
    ):
        loc = as_float_array("loc", loc)
        scale = as_float_array("scale", scale)
        shape = broadcast_shape(loc=loc, scale=scale)
        if positivity == "softplus":
            unconstrained = positive_param("scale", scale)
        elif positivity == "exp":
            positive_param("scale", scale)  # validation only
            unconstrained = jnp.log(scale)
            lo, hi = _LOG_SCALE_BOUNDS
            if not isinstance(scale, jax.core.Tracer) and bool(
                jnp.any((unconstrained < lo) | (unconstrained > hi))
            ):
                raise ValueError(
                    f"argument 'scale' must lie in [exp({lo}), exp({hi})] with positivity='exp'."
                )
        else:
            raise ValueError(
                f"argument 'positivity' must be 'softplus' or 'exp', got {positivity!r}."
            )
        self.loc = jnp.broadcast_to(loc, shape)
        self.scale_unconstrained = jnp.broadcast_to(unconstrained, shape)
        self.positivity = positivity
        self.shape = shape

    def _log_scale(self) -> Array:
        if self.positivity == "exp":
            return jnp.clip(self.scale_unconstrained, *_LOG_SCALE_BOUNDS)
        return jnp.log(jax.nn.softplus(self.scale_unconstrained))

    @property
    def scale(self) -> Array:
        if self.positivity == "exp":
            return jnp.exp(self._log_scale())
        return jax.nn.softplus(self.scale_unconstrained)

    def _transform_and_log_det(self, x, condition):
        if self.positivity == "exp":
            log_s = self._log_scale()
            return self.loc + jnp.exp(log_s) * x, jnp.sum(log_s)
        s = self.scale
        return self.loc + s * x, jnp.sum(jnp.log(s))

    def _inverse_and_log_det(self, y, condition):
        if self.positivity == "exp":
            log_s = self._log_scale()
            return (y - self.loc) * jnp.exp(-log_s), -jnp.sum(log_s)
        s = self.scale
        return (y - self.loc) / s, -jnp.sum(jnp.log(s))


class TriangularAffine(AbstractBijector):
    """y = loc + L x with L triangular, positive diagonal (softplus-parametrised), full rank.

    ``arr`` is a square matrix; only its lower (or upper) triangle is used.
    """

    loc: Array
    off_diagonal: Array
    diag_unconstrained: Array
    lower: bool = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, loc: ArrayLike, arr: ArrayLike, *, lower: bool = True):
        loc = as_float_array("loc", loc)
        arr = as_float_array("arr", arr)
        if loc.ndim != 1:
            raise ValueError(f"argument 'loc' must be 1-D, got shape {loc.shape}.")
        d = loc.shape[0]
        if arr.shape != (d, d):
            raise ValueError(
                f"argument 'arr' must have shape {(d, d)} to match 'loc', got {arr.shape}."
            )
        self.loc = loc
        tri = jnp.tril if lower else jnp.triu
        self.off_diagonal = tri(arr, -1 if lower else 1)
        self.diag_unconstrained = positive_param("arr (diagonal)", jnp.diag(arr))
        self.lower = lower
        self.shape = (d,)

    @property
    def matrix(self) -> Array:
        tri = jnp.tril if self.lower else jnp.triu
        off = tri(self.off_diagonal, -1 if self.lower else 1)
        return off + jnp.diag(jax.nn.softplus(self.diag_unconstrained))

    def _transform_and_log_det(self, x, condition):
        diag = jax.nn.softplus(self.diag_unconstrained)
        return self.loc + self.matrix @ x, jnp.sum(jnp.log(diag))

    def _inverse_and_log_det(self, y, condition):
        diag = jax.nn.softplus(self.diag_unconstrained)
        x = jax.scipy.linalg.solve_triangular(self.matrix, y - self.loc, lower=self.lower)
        return x, -jnp.sum(jnp.log(diag))


class LowRankAffine(AbstractBijector):
    """y = loc + s ⊙ (x + U Vᵀ x) with s > 0 (softplus-parametrised), U, V of shape (d, r).

    O(d r) parameters and work: log|det| = Σ log s + log|det(I_r + Vᵀ U)| (matrix determinant
    lemma), inverse by the Woodbury identity. At ``U = 0`` it is diagonal and V's random start
    gives U a non-zero gradient; the log-det term keeps a fitted map away from singular
    I + U Vᵀ.
    """

    loc: Array
    scale_unconstrained: Array
    u: Array
    v: Array
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, loc: ArrayLike, scale: ArrayLike, u: ArrayLike, v: ArrayLike):
        loc = as_float_array("loc", loc)
        if loc.ndim != 1:
            raise ValueError(f"argument 'loc' must be 1-D, got shape {loc.shape}.")
        d = loc.shape[0]
        scale = jnp.broadcast_to(as_float_array("scale", scale), (d,))
        u = as_float_array("u", u)
        v = as_float_array("v", v)
        if u.ndim != 2 or u.shape[0] != d or v.shape != u.shape:
            raise ValueError(
                f"arguments 'u' and 'v' must both have shape ({d}, rank) to match 'loc', got "
                f"{u.shape} and {v.shape}."
            )
        self.loc = loc
        self.scale_unconstrained = positive_param("scale", scale)
        self.u = u
        self.v = v
        self.shape = (d,)

    def _core(self) -> Array:
        return jnp.eye(self.u.shape[1], dtype=self.u.dtype) + self.v.T @ self.u

    def _transform_and_log_det(self, x, condition):
        s = jax.nn.softplus(self.scale_unconstrained)
        y = self.loc + s * (x + self.u @ (self.v.T @ x))
        return y, jnp.sum(jnp.log(s)) + jnp.linalg.slogdet(self._core())[1]

    def _inverse_and_log_det(self, y, condition):
        s = jax.nn.softplus(self.scale_unconstrained)
        z = (y - self.loc) / s
        core = self._core()
        x = z - self.u @ jnp.linalg.solve(core, self.v.T @ z)
        return x, -jnp.sum(jnp.log(s)) - jnp.linalg.slogdet(core)[1]


__all__ = ["Loc", "Scale", "Affine", "TriangularAffine", "LowRankAffine", "softplus_inverse"]

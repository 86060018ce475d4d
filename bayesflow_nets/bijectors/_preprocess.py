"""Image preprocessing bijectors (MATH.md §2): affine squash, logit and ActNorm, with log-dets.

Dequantisation (adding uniform noise) is not a bijection and lives in ``aef.dequantise``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._custom_types import Shape
from ._base import AbstractBijector, _as_shape
from ._structure import Chain
from ._utils import as_float_array, positive_param


class AffineSquash(AbstractBijector):
    """y = α + (1 − 2α) x: maps [0, 1] into [α, 1 − α] so a following logit stays finite.

    ``alpha`` is a fixed (static) constant in [0, 0.5); log|det| = D log(1 − 2α).
    """

    alpha: float = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, alpha: float, shape: Shape = ()):
        if not (isinstance(alpha, int | float) and 0.0 <= float(alpha) < 0.5):
            raise ValueError(f"argument 'alpha' must be a float in [0, 0.5), got {alpha!r}.")
        self.alpha = float(alpha)
        self.shape = _as_shape(shape, "shape")

    def _log_det(self, x):
        return jnp.asarray(x.size * np.log1p(-2.0 * self.alpha), x.dtype)

    def _transform_and_log_det(self, x, condition):
        return self.alpha + (1.0 - 2.0 * self.alpha) * x, self._log_det(x)

    def _inverse_and_log_det(self, y, condition):
        return (y - self.alpha) / (1.0 - 2.0 * self.alpha), -self._log_det(y)


class Logit(AbstractBijector):
    """y = log x − log(1 − x): (0, 1) → R; log|det| = −Σ [log x + log(1 − x)]."""

    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(self, shape: Shape = ()):
        self.shape = _as_shape(shape, "shape")

    def _transform_and_log_det(self, x, condition):
        log_x, log_1mx = jnp.log(x), jnp.log1p(-x)
        return log_x - log_1mx, -jnp.sum(log_x + log_1mx)

    def _inverse_and_log_det(self, y, condition):
        log_x, log_1mx = jax.nn.log_sigmoid(y), jax.nn.log_sigmoid(-y)
        return jax.nn.sigmoid(y), jnp.sum(log_x + log_1mx)


class ActNorm(AbstractBijector):
    """Glow's ActNorm: y = loc + scale ⊙ x, scale > 0 (softplus-parametrised).

    ``loc`` and ``scale`` have ``param_shape`` (broadcast against the event ``shape``): e.g.
    ``(C, 1, 1)`` for per-channel parameters on ``(C, H, W)`` images. :meth:`from_data` sets them
    so that the output has zero mean and unit variance per parameter entry (data-dependent init).
    """

    loc: Array
    scale_unconstrained: Array
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True, default=None)

    def __init__(
        self, shape: Shape, param_shape: Shape | None = None, *, loc: ArrayLike | None = None,
        scale: ArrayLike | None = None,
    ):
        shape = _as_shape(shape, "shape")
        param_shape = shape if param_shape is None else _as_shape(param_shape, "param_shape")
        try:
            if jnp.broadcast_shapes(param_shape, shape) != shape:
                raise ValueError
        except ValueError as err:
            raise ValueError(
                f"argument 'param_shape' {param_shape} must broadcast to the event shape {shape}."
            ) from err
        loc = jnp.zeros(param_shape) if loc is None else as_float_array("loc", loc)
        scale = jnp.ones(param_shape) if scale is None else as_float_array("scale", scale)
        if loc.shape != param_shape or scale.shape != param_shape:
            raise ValueError(
                f"arguments 'loc' {loc.shape} and 'scale' {scale.shape} must have param_shape "
                f"{param_shape}."
            )
        self.loc = loc
        self.scale_unconstrained = positive_param("scale", scale)
        self.shape = shape

    @property
    def scale(self) -> Array:
        return jax.nn.softplus(self.scale_unconstrained)

    def _log_det(self):
        log_s = jnp.broadcast_to(jnp.log(self.scale), self.shape)
        return jnp.sum(log_s)

    def _transform_and_log_det(self, x, condition):
        return self.loc + self.scale * x, self._log_det()

    def _inverse_and_log_det(self, y, condition):
        return (y - self.loc) / self.scale, -self._log_det()

    def from_data(self, x: ArrayLike, eps: float = 1e-6) -> ActNorm:
        """Return a copy initialised on a batch ``x`` of shape ``(n,) + shape``: outputs standardised."""
        x = jnp.asarray(x)
        if x.ndim != len(self.shape) + 1 or x.shape[1:] != self.shape:
            raise ValueError(
                f"argument 'x' must have shape (n,) + {self.shape}, got {x.shape}."
            )
        pshape = self.loc.shape
        # Reduce over the batch axis and every event axis the parameters broadcast over.
        full = (1,) * (len(self.shape) - len(pshape)) + pshape
        axes = (0,) + tuple(i + 1 for i, p in enumerate(full) if p == 1)
        mean = jnp.mean(x, axis=axes).reshape(pshape)
        std = jnp.std(x, axis=axes).reshape(pshape) + eps
        scale = (1.0 / std).astype(self.loc.dtype)
        return eqx.tree_at(
            lambda a: (a.loc, a.scale_unconstrained),
            self,
            (-mean * scale, positive_param("scale", scale)),
        )


def init_actnorm(bijector: AbstractBijector, x: ArrayLike) -> AbstractBijector:
    """Data-dependent init of every ActNorm in ``bijector`` (an ActNorm or a Chain of layers).

    ``x`` is a batch ``(n,) + shape`` of inputs; it is pushed through the earlier layers so each
    ActNorm standardises its own input.
    """
    x = jnp.asarray(x)
    if isinstance(bijector, ActNorm):
        return bijector.from_data(x)
    if not isinstance(bijector, Chain):
        return bijector
    layers = []
    for b in bijector.bijectors:
        if isinstance(b, ActNorm | Chain):
            b = init_actnorm(b, x)
        layers.append(b)
        x = eqx.filter_vmap(b.transform)(x)
    return Chain(layers)


def logit_preprocessing(
    shape: Shape, alpha: float = 0.05, *, actnorm: bool = True, param_shape: Shape | None = None
) -> AbstractBijector:
    """The AEF preprocessing chain on [0, 1] data: affine squash α → logit → (ActNorm).

    ``param_shape`` is the ActNorm parameter shape (default: per channel, ``(C, 1, 1)`` for
    ``(C, H, W)`` images, else a single scalar broadcast over the event).
    """
    shape = _as_shape(shape, "shape")
    layers: list[AbstractBijector] = [AffineSquash(alpha, shape), Logit(shape)]
    if actnorm:
        if param_shape is None:
            param_shape = (shape[0],) + (1,) * (len(shape) - 1) if len(shape) == 3 else ()
        layers.append(ActNorm(shape, param_shape))
    return Chain(layers)


__all__ = ["AffineSquash", "Logit", "ActNorm", "init_actnorm", "logit_preprocessing"]

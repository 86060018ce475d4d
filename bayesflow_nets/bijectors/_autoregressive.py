"""Masked autoregressive bijector (MADE conditioner, affine or spline transformer)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, PRNGKeyArray

from .._custom_types import Shape
from ._base import AbstractBijector
from ._nn import MaskedMLP, made_degrees
from ._transformer import TransformerSpec


class MaskedAutoregressive(AbstractBijector):
    """y_i = τ(x_i; θ_i(x_<i, condition)): forward is parallel, inverse is sequential (D passes).

    ``order`` (a permutation of 0..dim−1; default the identity) makes the layer autoregressive in
    that order: input i comes at position order[i]. Flows use it instead of ``Permute`` layers, so
    no data moves between layers.

    Use ``Invert`` (as ``masked_autoregressive_flow`` does) to make density evaluation the
    parallel direction; ``inverse_autoregressive_flow`` keeps sampling parallel.
    """

    spec: TransformerSpec
    made: MaskedMLP
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        transformer: AbstractBijector,
        dim: int,
        *,
        cond_dim: int | None = None,
        nn_width: int = 64,
        nn_depth: int = 2,
        nn_activation: Callable = jax.nn.relu,
        order: ArrayLike | None = None,
    ):
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"argument 'dim' must be an int >= 1, got {dim!r}.")
        if order is not None:
            order = _check_order(order, dim)
        if cond_dim is not None and not (isinstance(cond_dim, int) and cond_dim >= 1):
            raise ValueError(f"argument 'cond_dim' must be None or an int >= 1, got {cond_dim!r}.")
        self.spec = TransformerSpec(transformer)
        n = self.spec.num_params
        degrees = made_degrees(dim, cond_dim or 0, nn_width, nn_depth, n, order)
        head = jnp.repeat(TransformerSpec.initial_params(transformer), dim)
        self.made = MaskedMLP(key, degrees, head, activation=nn_activation, masked=True)
        self.shape = (dim,)
        self.cond_shape = None if cond_dim is None else (cond_dim,)

    def _params(self, x, condition):
        inp = x if condition is None else jnp.concatenate([condition, x])
        return self.made(inp).reshape(self.spec.num_params, self.shape[0])

    def _transform_and_log_det(self, x, condition):
        return self.spec.apply(x, self._params(x, condition), inverse=False)

    def _inverse_and_log_det(self, y, condition):
        def body(_, x):
            x_new, _ = self.spec.apply(y, self._params(x, condition), inverse=True)
            return x_new

        # After i passes the first i coordinates are exact; the last pass gives x and log-det.
        x = jax.lax.fori_loop(0, self.shape[0] - 1, body, jnp.zeros_like(y))
        x, ld = self.spec.apply(y, self._params(x, condition), inverse=True)
        return x, ld


def _check_order(order, dim):
    if isinstance(order, jax.core.Tracer):  # built under eqx.filter_vmap (stacked layers)
        if order.shape != (dim,) or not jnp.issubdtype(order.dtype, jnp.integer):
            raise ValueError(f"argument 'order' must be an integer array of shape ({dim},).")
        return order
    arr = np.asarray(order)
    if arr.dtype.kind not in "iu" or sorted(arr.ravel().tolist()) != list(range(dim)):
        raise ValueError(f"argument 'order' must be a permutation of 0..{dim - 1}, got {arr!r}.")
    return arr


__all__ = ["MaskedAutoregressive"]

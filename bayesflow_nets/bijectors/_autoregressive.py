"""Masked autoregressive bijector (MADE conditioner, affine or spline transformer)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._custom_types import Shape
from ._base import AbstractBijector
from ._nn import MaskedMLP, made_degrees
from ._transformer import TransformerSpec
from ._utils import check_conditioner, check_key


class MaskedAutoregressive(AbstractBijector):
    """y_i = τ(x_i; θ_i(x_<i, condition)): forward is parallel, inverse is sequential (D passes).

    ``order`` (a permutation of 0..dim−1; default the identity) makes the layer autoregressive in
    that order: input i comes at position order[i]. Flows use it instead of ``Permute`` layers, so
    no data moves between layers.

    The inverse solves one coordinate per pass, in order: the first layer's pre-activation is
    updated by one rank-1 term per solved coordinate and the output layer computes only that
    coordinate's parameters, so a pass costs the hidden-to-hidden layers (MADE 64 → 128 → 128:
    2.4× fewer flops than re-running the whole network each pass).

    Use ``Invert`` (as ``masked_autoregressive_flow`` does) to make density evaluation the
    parallel direction; ``inverse_autoregressive_flow`` keeps sampling parallel.
    """

    spec: TransformerSpec
    made: MaskedMLP
    positions: Array  # positions[k]: the coordinate solved at pass k (argsort of ``order``)
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
        check_conditioner(nn_width, nn_depth, nn_activation, min_depth=1)
        check_key(key)
        self.spec = TransformerSpec(transformer)
        n = self.spec.num_params
        degrees = made_degrees(dim, cond_dim or 0, nn_width, nn_depth, n, order)
        head = jnp.repeat(TransformerSpec.initial_params(transformer), dim)
        self.made = MaskedMLP(key, degrees, head, activation=nn_activation, masked=True)
        if order is None:
            self.positions = jnp.arange(dim, dtype=jnp.int32)
        else:
            self.positions = jnp.argsort(jnp.asarray(order)).astype(jnp.int32)
        self.shape = (dim,)
        self.cond_shape = None if cond_dim is None else (cond_dim,)

    def _params(self, x, condition):
        inp = x if condition is None else jnp.concatenate([condition, x])
        return self.made(inp).reshape(self.spec.num_params, self.shape[0])

    def _transform_and_log_det(self, x, condition):
        return self.spec.apply(x, self._params(x, condition), inverse=False)

    def _inverse_and_log_det(self, y, condition):
        dim, n = self.shape[0], self.spec.num_params
        made = self.made
        ws = made.masked_weights()
        w_in, w_hidden, w_out = ws[0], ws[1:-1], ws[-1].reshape(-1, n, dim)
        b_out = made.biases[-1].reshape(n, dim)
        offset = 0 if condition is None else condition.shape[0]
        pre = made.biases[0] if condition is None else condition @ w_in[:offset] + made.biases[0]

        def body(k, carry):
            x, pre, ld = carry
            j = self.positions[k]
            h = made.activation(pre)
            for w, b in zip(w_hidden, made.biases[1:-1]):
                h = made.activation(h @ w + b)
            theta = h @ jax.lax.dynamic_index_in_dim(w_out, j, 2, keepdims=False)
            theta = theta + jax.lax.dynamic_index_in_dim(b_out, j, 1, keepdims=False)
            y_j = jax.lax.dynamic_slice_in_dim(y, j, 1)
            x_j, ld_j = self.spec.apply(y_j, theta[:, None], inverse=True)
            # coordinate j was 0 in the first layer's input until now: one rank-1 update
            pre = pre + x_j[0] * jax.lax.dynamic_index_in_dim(w_in, offset + j, 0, keepdims=False)
            return jax.lax.dynamic_update_slice_in_dim(x, x_j, j, 0), pre, ld + ld_j

        zero = jnp.zeros((), y.dtype)
        x, _, ld = jax.lax.fori_loop(0, dim, body, (jnp.zeros_like(y), pre, zero))
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

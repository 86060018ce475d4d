"""Coupling layer: an elementwise transformer on one part conditioned by an MLP on the other."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from .._custom_types import Shape
from ._base import AbstractBijector
from ._nn import MaskedMLP, plain_degrees
from ._transformer import TransformerSpec
from ._utils import check_conditioner, check_key


class Coupling(AbstractBijector):
    """y[:k] = x[:k];  y[k:] = τ(x[k:]; θ(x[:k], condition)) with τ any scalar bijector."""

    spec: TransformerSpec
    conditioner: MaskedMLP
    untransformed_dim: int = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        transformer: AbstractBijector,
        untransformed_dim: int,
        dim: int,
        *,
        cond_dim: int | None = None,
        nn_width: int = 64,
        nn_depth: int = 2,
        nn_activation: Callable = jax.nn.relu,
    ):
        if not (isinstance(dim, int) and dim >= 2):
            raise ValueError(f"argument 'dim' must be an int >= 2, got {dim!r}.")
        if not (isinstance(untransformed_dim, int) and 0 < untransformed_dim < dim):
            raise ValueError(
                f"argument 'untransformed_dim' must be in 1..{dim - 1}, got {untransformed_dim!r}."
            )
        if cond_dim is not None and not (isinstance(cond_dim, int) and cond_dim >= 1):
            raise ValueError(f"argument 'cond_dim' must be None or an int >= 1, got {cond_dim!r}.")
        check_conditioner(nn_width, nn_depth, nn_activation, min_depth=0)
        check_key(key)
        self.spec = TransformerSpec(transformer)
        n_out = (dim - untransformed_dim) * self.spec.num_params
        n_in = untransformed_dim + (cond_dim or 0)
        head = jnp.repeat(TransformerSpec.initial_params(transformer), dim - untransformed_dim)
        self.conditioner = MaskedMLP(
            key,
            plain_degrees(n_in, nn_width, nn_depth, n_out),
            head,
            activation=nn_activation,
            masked=False,
        )
        self.untransformed_dim = untransformed_dim
        self.shape = (dim,)
        self.cond_shape = None if cond_dim is None else (cond_dim,)

    def _params(self, x_cond, condition):
        """The conditioner's output before its head bias, and that bias, in blocked layout."""
        inp = x_cond if condition is None else jnp.concatenate([x_cond, condition])
        out, bias = self.conditioner.without_head_bias(inp)
        shape = (self.spec.num_params, self.shape[0] - self.untransformed_dim)
        return out.reshape(shape), bias.reshape(shape)

    def _transform_and_log_det(self, x, condition):
        k = self.untransformed_dim
        x_cond, x_trans = x[:k], x[k:]
        params, bias = self._params(x_cond, condition)
        y_trans, ld = self.spec.apply(x_trans, params, inverse=False, bias=bias)
        return jnp.concatenate([x_cond, y_trans]), ld

    def _inverse_and_log_det(self, y, condition):
        k = self.untransformed_dim
        y_cond, y_trans = y[:k], y[k:]
        params, bias = self._params(y_cond, condition)
        x_trans, ld = self.spec.apply(y_trans, params, inverse=True, bias=bias)
        return jnp.concatenate([y_cond, x_trans]), ld


__all__ = ["Coupling"]

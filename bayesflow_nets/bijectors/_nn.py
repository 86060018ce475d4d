"""Conditioner networks: a plain MLP and a MADE (masked) MLP, with zero-initialised heads."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray


def _linear_init(key, n_in, n_out, dtype=float):
    lim = 1.0 / np.sqrt(max(n_in, 1))
    kw, kb = jax.random.split(key)
    w = jax.random.uniform(kw, (n_in, n_out), minval=-lim, maxval=lim)
    b = jax.random.uniform(kb, (n_out,), minval=-lim, maxval=lim)
    return w, b


class MaskedMLP(eqx.Module):
    """MLP with fixed binary masks on its weights (all-ones masks give a plain MLP).

    The last layer starts at zero weights with bias ``head_bias``, so a conditioner initially
    outputs the transformer's own initial parameters (an identity-like layer).
    """

    weights: tuple[Array, ...]
    biases: tuple[Array, ...]
    masks: tuple[Array, ...] | None
    activation: Callable = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        degrees: list[ArrayLike],
        head_bias: Array,
        *,
        activation: Callable = jax.nn.relu,
        masked: bool = True,
    ):
        keys = jax.random.split(key, len(degrees) - 1)
        ws, bs, ms = [], [], []
        n_layers = len(degrees) - 1
        for i in range(n_layers):
            d_in, d_out = degrees[i], degrees[i + 1]
            w, b = _linear_init(keys[i], len(d_in), len(d_out))  # w: (n_in, n_out)
            if i == n_layers - 1:
                m = d_in[:, None] < d_out[None, :]
                w = jnp.zeros_like(w)
                b = jnp.asarray(head_bias, dtype=w.dtype)
            else:
                m = d_in[:, None] <= d_out[None, :]
            ws.append(w)
            bs.append(b)
            ms.append(jnp.asarray(m, dtype=bool))
        self.weights = tuple(ws)
        self.biases = tuple(bs)
        self.masks = tuple(ms) if masked else None
        self.activation = activation

    def masked_weights(self) -> tuple[Array, ...]:
        """The weights with their masks applied (the weights themselves when unmasked)."""
        if self.masks is None:
            return self.weights
        return tuple(
            jnp.where(m, w, jnp.zeros((), w.dtype)) for w, m in zip(self.weights, self.masks)
        )

    def without_head_bias(self, x: Array) -> tuple[Array, Array]:
        """The output before the last layer's bias, and that bias (the output is their sum)."""
        ws, n = self.masked_weights(), len(self.weights)
        for i in range(n - 1):
            x = self.activation(x @ ws[i] + self.biases[i])
        return x @ ws[-1], self.biases[-1]

    def __call__(self, x: Array) -> Array:
        out, bias = self.without_head_bias(x)
        return out + bias


def made_degrees(
    dim: int, cond_dim: int, width: int, depth: int, n_params: int, order=None
) -> list:
    """MADE degrees: inputs 1..dim (condition 0), hidden in 1..dim−1, outputs (n_params, dim) rows.

    ``order`` (a permutation of 0..dim−1, possibly traced) gives input i the degree order[i]+1, so
    a layer is autoregressive in that order without moving any data.
    """
    d_hidden = np.arange(width) % (dim - 1) + 1 if dim > 1 else np.zeros(width, int)
    if order is None:
        d_in = np.concatenate([np.zeros(cond_dim, int), np.arange(1, dim + 1)])
        d_out = np.tile(np.arange(1, dim + 1), n_params)  # blocked: (n_params, dim)
    else:
        rank = jnp.asarray(order, dtype=jnp.int32) + 1
        d_in = jnp.concatenate([jnp.zeros(cond_dim, jnp.int32), rank])
        d_out = jnp.tile(rank, n_params)
    return [d_in] + [d_hidden] * depth + [d_out]


def plain_degrees(n_in: int, width: int, depth: int, n_out: int) -> list[np.ndarray]:
    """Degrees for an unmasked MLP (masks all ones)."""
    return [np.zeros(n_in, int)] + [np.zeros(width, int)] * depth + [np.zeros(n_out, int)]


__all__ = ["MaskedMLP", "made_degrees", "plain_degrees"]

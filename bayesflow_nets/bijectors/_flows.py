"""Flow builders: stacked identical layers (eqx.filter_vmap) applied with lax.scan."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from ._affine import Affine
from ._autoregressive import MaskedAutoregressive
from ._base import AbstractBijector
from ._coupling import Coupling
from ._distributions import AbstractDistribution, Transformed
from ._rqs import RationalQuadraticSpline
from ._structure import Chain, Invert, Permute, Scan
from ._utils import check_key


def _check_base(base_dist, arg="base_dist") -> int:
    if not isinstance(base_dist, AbstractDistribution):
        raise TypeError(f"argument {arg!r} must be an AbstractDistribution, got {type(base_dist)}.")
    if len(base_dist.shape) != 1:
        raise ValueError(
            f"argument {arg!r} must have a 1-D event shape (dim,), got {base_dist.shape}."
        )
    return base_dist.shape[0]


def _check_layers(flow_layers):
    if not (isinstance(flow_layers, int) and flow_layers >= 1):
        raise ValueError(f"argument 'flow_layers' must be an int >= 1, got {flow_layers!r}.")


def _stack(key, flow_layers, make_layer: Callable[[PRNGKeyArray], AbstractBijector], invert):
    keys = jax.random.split(key, flow_layers)

    def one(k):
        layer = make_layer(k)
        return Invert(layer) if invert else layer

    return Scan(eqx.filter_vmap(one)(keys))


def _permutation(key, dim):
    return Permute(jax.random.permutation(key, jnp.arange(dim, dtype=jnp.int32)))


def masked_autoregressive_flow(
    key: PRNGKeyArray,
    *,
    base_dist: AbstractDistribution,
    transformer: AbstractBijector | None = None,
    cond_dim: int | None = None,
    flow_layers: int = 8,
    nn_width: int = 64,
    nn_depth: int = 2,
    nn_activation: Callable = jax.nn.relu,
    invert: bool = True,
) -> Transformed:
    """MAF: MADE layers, each in a random autoregressive order. ``invert=True`` makes ``log_prob`` parallel."""
    check_key(key)
    dim = _check_base(base_dist)
    _check_layers(flow_layers)
    transformer = Affine(positivity="exp") if transformer is None else transformer

    def make_layer(k):
        k1, k2 = jax.random.split(k)
        # A random autoregressive order per layer, folded into the MADE masks (no Permute layer).
        order = None if dim == 1 else jax.random.permutation(k2, jnp.arange(dim, dtype=jnp.int32))
        return MaskedAutoregressive(
            k1,
            transformer,
            dim,
            cond_dim=cond_dim,
            nn_width=nn_width,
            nn_depth=nn_depth,
            nn_activation=nn_activation,
            order=order,
        )

    return Transformed(base_dist, _stack(key, flow_layers, make_layer, invert))


def inverse_autoregressive_flow(
    key: PRNGKeyArray,
    *,
    base_dist: AbstractDistribution,
    transformer: AbstractBijector | None = None,
    cond_dim: int | None = None,
    flow_layers: int = 8,
    nn_width: int = 64,
    nn_depth: int = 2,
    nn_activation: Callable = jax.nn.relu,
) -> Transformed:
    """IAF: the MAF layers un-inverted, so sampling (and sample_and_log_prob) is parallel."""
    return masked_autoregressive_flow(
        key,
        base_dist=base_dist,
        transformer=transformer,
        cond_dim=cond_dim,
        flow_layers=flow_layers,
        nn_width=nn_width,
        nn_depth=nn_depth,
        nn_activation=nn_activation,
        invert=False,
    )


def coupling_flow(
    key: PRNGKeyArray,
    *,
    base_dist: AbstractDistribution,
    transformer: AbstractBijector | None = None,
    cond_dim: int | None = None,
    flow_layers: int = 8,
    nn_width: int = 64,
    nn_depth: int = 2,
    nn_activation: Callable = jax.nn.relu,
    invert: bool = True,
    knots: int = 8,
    interval: float = 4.0,
) -> Transformed:
    """Coupling flow, by default with rational-quadratic spline transformers (Durkan et al.)."""
    check_key(key)
    dim = _check_base(base_dist)
    if dim < 2:
        raise ValueError(f"argument 'base_dist': coupling_flow needs dim >= 2, got {dim}.")
    _check_layers(flow_layers)
    transformer = RationalQuadraticSpline(knots, interval) if transformer is None else transformer

    def make_layer(k):
        k1, k2 = jax.random.split(k)
        coupling = Coupling(
            k1,
            transformer,
            untransformed_dim=dim // 2,
            dim=dim,
            cond_dim=cond_dim,
            nn_width=nn_width,
            nn_depth=nn_depth,
            nn_activation=nn_activation,
        )
        return Chain([coupling, _permutation(k2, dim)])

    return Transformed(base_dist, _stack(key, flow_layers, make_layer, invert))


__all__ = ["masked_autoregressive_flow", "inverse_autoregressive_flow", "coupling_flow"]

"""One registry of bijector cases driving the contract tests (plus a meta-test for coverage)."""

import equinox as eqx
import jax
import jax.numpy as jnp

import bayesflow_nets.bijectors as bj

DIM = 4
COND = 3


def perturb(module, key, scale=0.1):
    """Move every floating leaf off its (often identity) initial value."""
    leaves, treedef = jax.tree_util.tree_flatten(module)
    keys = jax.random.split(key, len(leaves))
    new = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        if eqx.is_inexact_array(leaf)
        else leaf
        for leaf, k in zip(leaves, keys)
    ]
    return jax.tree_util.tree_unflatten(treedef, new)


def _real(key, shape):
    return jax.random.normal(key, shape)


def _positive(key, shape):
    return jnp.exp(0.5 * jax.random.normal(key, shape))


def _unit(key, shape):
    return jax.nn.sigmoid(jax.random.normal(key, shape))


def _stacked_affine(k, unroll=None):
    return bj.Scan(
        eqx.filter_vmap(lambda kk: perturb(bj.Affine(jnp.zeros(DIM), 1.0), kk))(
            jax.random.split(k, 3)
        ),
        unroll=unroll,
    )


# name -> (factory(key) -> bijector, sampler of inputs x in the forward domain)
CASES = {
    "Loc": (lambda k: bj.Loc(jax.random.normal(k, (DIM,))), _real),
    "Scale": (lambda k: bj.Scale(_positive(k, (DIM,))), _real),
    "Affine": (lambda k: bj.Affine(jax.random.normal(k, (DIM,)), _positive(k, (DIM,))), _real),
    "Affine_scalar": (lambda k: bj.Affine(0.3, 2.0), _real),
    "Affine_exp": (
        lambda k: bj.Affine(jax.random.normal(k, (DIM,)), _positive(k, (DIM,)), positivity="exp"),
        _real,
    ),
    "LowRankAffine": (
        lambda k: bj.LowRankAffine(
            jax.random.normal(k, (DIM,)),
            _positive(k, (DIM,)),
            0.3 * jax.random.normal(jax.random.fold_in(k, 1), (DIM, 2)),
            0.3 * jax.random.normal(jax.random.fold_in(k, 2), (DIM, 2)),
        ),
        _real,
    ),
    "TriangularAffine": (
        lambda k: bj.TriangularAffine(
            jax.random.normal(k, (DIM,)), jax.random.normal(k, (DIM, DIM)) + 3 * jnp.eye(DIM)
        ),
        _real,
    ),
    "TriangularAffine_upper": (
        lambda k: bj.TriangularAffine(
            jnp.zeros(DIM), jax.random.normal(k, (DIM, DIM)) + 3 * jnp.eye(DIM), lower=False
        ),
        _real,
    ),
    "Exp": (lambda k: bj.Exp((DIM,)), _real),
    "AffineSquash": (lambda k: bj.AffineSquash(0.05, (DIM,)), _unit),
    "Logit": (lambda k: bj.Logit((DIM,)), _unit),
    "ActNorm": (
        lambda k: bj.ActNorm((2, DIM), (2, 1)).from_data(jax.random.normal(k, (16, 2, DIM)) + 1.0),
        lambda k, s: jax.random.normal(k, s),
    ),
    "Softplus": (lambda k: bj.Softplus((DIM,)), _real),
    "Sigmoid": (lambda k: bj.Sigmoid((DIM,)), _real),
    "Tanh": (lambda k: bj.Tanh((DIM,)), _real),
    "RationalQuadraticSpline": (
        lambda k: perturb(bj.RationalQuadraticSpline(6, 3.0, (DIM,)), k, 0.5),
        lambda k, s: 2.5 * jax.random.normal(k, s),  # covers inside and the identity tails
    ),
    "Coupling_affine": (
        lambda k: perturb(bj.Coupling(k, bj.Affine(), 2, DIM, nn_width=8), k),
        _real,
    ),
    "Coupling_rqs_cond": (
        lambda k: perturb(
            bj.Coupling(k, bj.RationalQuadraticSpline(5, 3.0), 1, DIM, cond_dim=COND, nn_width=8),
            k,
        ),
        _real,
    ),
    "MaskedAutoregressive_affine": (
        lambda k: perturb(bj.MaskedAutoregressive(k, bj.Affine(), DIM, nn_width=8), k),
        _real,
    ),
    "MaskedAutoregressive_affine_order": (
        lambda k: perturb(
            bj.MaskedAutoregressive(k, bj.Affine(), DIM, nn_width=8, order=jnp.array([2, 0, 3, 1])),
            k,
        ),
        _real,
    ),
    "MaskedAutoregressive_rqs_cond": (
        lambda k: perturb(
            bj.MaskedAutoregressive(
                k, bj.RationalQuadraticSpline(5, 3.0), DIM, cond_dim=COND, nn_width=8
            ),
            k,
        ),
        _real,
    ),
    "Permute": (lambda k: bj.Permute(jax.random.permutation(k, DIM)), _real),
    "Reverse": (lambda k: bj.Reverse((DIM,)), _real),
    "Chain": (
        lambda k: bj.Chain([bj.Affine(jnp.ones(DIM), 2.0), bj.Tanh((DIM,)), bj.Reverse((DIM,))]),
        _real,
    ),
    "Invert": (lambda k: bj.Invert(bj.Sigmoid((DIM,))), _unit),
    "Concatenate": (
        lambda k: bj.Concatenate([bj.Exp((1,)), bj.Affine(jnp.zeros(3), 2.0)]),
        _real,
    ),
    "Stack": (
        lambda k: bj.Stack([bj.Tanh((2,)), bj.Affine(jnp.zeros(2), 0.5)], axis=0),
        lambda k, s: jax.random.normal(k, s),
    ),
    "Scan": (_stacked_affine, _real),  # 3 layers: a Python loop over static slices
    "Scan_lax_scan": (lambda k: _stacked_affine(k, unroll=1), _real),
    "maf_flow_cond": (
        lambda k: perturb(
            bj.masked_autoregressive_flow(
                k, base_dist=bj.StandardNormal((DIM,)), cond_dim=COND, flow_layers=2, nn_width=8
            ).bijector,
            k,
            0.05,
        ),
        _real,
    ),
    "iaf_flow": (
        lambda k: perturb(
            bj.inverse_autoregressive_flow(
                k, base_dist=bj.StandardNormal((DIM,)), flow_layers=2, nn_width=8
            ).bijector,
            k,
            0.05,
        ),
        _real,
    ),
    "coupling_flow_cond": (
        lambda k: perturb(
            bj.coupling_flow(
                k,
                base_dist=bj.StandardNormal((DIM,)),
                cond_dim=COND,
                flow_layers=2,
                nn_width=8,
                knots=4,
            ).bijector,
            k,
            0.1,
        ),
        _real,
    ),
}

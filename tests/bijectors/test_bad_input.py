"""Bad input gives clear errors naming the argument."""

import jax
import jax.numpy as jnp
import pytest

import bayesflow_nets.bijectors as bj

KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: bj.Affine(jnp.array([0.0, jnp.nan]), 1.0), "argument 'loc' must be finite"),
        (lambda: bj.Affine(0.0, jnp.array([1.0, jnp.inf])), "argument 'scale' must be finite"),
        (lambda: bj.Affine(0.0, -1.0), "argument 'scale' must be strictly positive"),
        (lambda: bj.Affine(0.0, 100.0, positivity="exp"), "must lie in"),
        (lambda: bj.Affine(0.0, 1.0, positivity="relu"), "argument 'positivity'"),
        (lambda: bj.Scale(jnp.zeros(2)), "argument 'scale' must be strictly positive"),
        (lambda: bj.Loc(jnp.array([jnp.inf])), "argument 'loc' must be finite"),
        (lambda: bj.TriangularAffine(jnp.zeros(2), jnp.eye(3)), "argument 'arr' must have shape"),
        (lambda: bj.TriangularAffine(jnp.zeros(2), -jnp.eye(2)), "strictly positive"),
        (lambda: bj.RationalQuadraticSpline(1), "argument 'knots'"),
        (lambda: bj.RationalQuadraticSpline(4, -1.0), "argument 'interval' must be positive"),
        (
            lambda: bj.RationalQuadraticSpline(3, widths=jnp.array([1.0, 0.0, 1.0])),
            "argument 'widths' must be strictly positive",
        ),
        (
            lambda: bj.RationalQuadraticSpline(3, heights=jnp.array([1.0, jnp.nan, 1.0])),
            "argument 'heights' must be finite",
        ),
        (
            lambda: bj.RationalQuadraticSpline(3, widths=jnp.ones(4)),
            "argument 'widths' must have shape",
        ),
        (lambda: bj.Permute(jnp.array([0, 0, 1])), "argument 'perm' must be a permutation"),
        (lambda: bj.Chain([bj.Exp((2,)), bj.Exp((3,))]), "all shapes must match"),
        (lambda: bj.Coupling(KEY, bj.Exp((2,)), 1, 3), "scalar bijector"),
        (lambda: bj.MaskedAutoregressive(KEY, bj.Affine(), 0), "argument 'dim'"),
        (
            lambda: bj.MaskedAutoregressive(KEY, bj.Affine(), 3, order=jnp.array([0, 0, 2])),
            "argument 'order'",
        ),
        (
            lambda: bj.Transformed(bj.StandardNormal((2,)), bj.Exp((3,))),
            "argument 'bijector' has shape",
        ),
        (
            lambda: bj.masked_autoregressive_flow(KEY, base_dist=bj.StandardNormal((2, 2))),
            "argument 'base_dist' must have a 1-D event shape",
        ),
        (
            lambda: bj.coupling_flow(KEY, base_dist=bj.StandardNormal((3,)), flow_layers=0),
            "argument 'flow_layers'",
        ),
    ],
)
def test_constructor_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_distribution_shape_errors():
    flow = bj.masked_autoregressive_flow(
        KEY,
        base_dist=bj.StandardNormal((3,)),
        cond_dim=2,
        flow_layers=1,
        nn_width=4,
    )
    with pytest.raises(ValueError, match="trailing dimensions must equal the event shape"):
        flow.log_prob(jnp.zeros((5, 4)), jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="'condition' with trailing shape"):
        flow.log_prob(jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="argument 'condition' has shape"):
        flow.log_prob(jnp.zeros((5, 3)), jnp.zeros((5, 4)))

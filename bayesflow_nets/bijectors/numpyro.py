"""NumPyro bridge: bijectors as NumPyro transforms, distributions as NumPyro distributions."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
from numpyro.distributions import Distribution, TransformedDistribution, constraints
from numpyro.distributions.transforms import Transform

from .._compile import run_once_jit
from ._base import AbstractBijector
from ._distributions import AbstractDistribution


def _real_constraint(event_ndim: int):
    return (
        constraints.real
        if event_ndim == 0
        else constraints.independent(constraints.real, event_ndim)
    )


def _batched(fn, x, event_shape):
    """Apply a single-sample fn over any leading batch dims of x."""
    n = len(event_shape)
    batch = x.shape[: x.ndim - n]
    if not batch:
        return fn(x)
    flat = x.reshape((-1,) + tuple(event_shape))
    out = jax.vmap(fn)(flat)
    return jax.tree_util.tree_map(lambda a: a.reshape(batch + a.shape[1:]), out)


# Compiled once per bijector structure: NumPyro calls transforms eagerly (SVI.init, Predictive,
# guide set-up), where op-by-op dispatch of a deep flow would compile hundreds of primitives.
# Inside an outer jit these are ordinary nested calls.
@run_once_jit
def _jit_batched(bijector, method: str, x, condition):
    """``bijector.<method>(x, condition)`` over x's leading batch dims (method is static)."""
    return _batched(lambda v: getattr(bijector, method)(v, condition), x, bijector.shape)


class BijectorTransform(Transform):
    """A :class:`numpyro.distributions.transforms.Transform` wrapping an ``AbstractBijector``.

    ``condition`` (optional) is fixed at construction. Batched inputs are vmapped.
    """

    def __init__(self, bijector: AbstractBijector, condition=None):
        if not isinstance(bijector, AbstractBijector):
            raise TypeError(
                f"argument 'bijector' must be an AbstractBijector, got {type(bijector)}."
            )
        if (bijector.cond_shape is None) != (condition is None):
            raise ValueError(
                "argument 'condition' must be given exactly when the bijector is conditional "
                f"(cond_shape={bijector.cond_shape})."
            )
        self.bijector = bijector
        self.condition = condition

    @property
    def domain(self):
        return _real_constraint(len(self.bijector.shape))

    @property
    def codomain(self):
        return _real_constraint(len(self.bijector.shape))

    def __call__(self, x):
        return _jit_batched(self.bijector, "transform", x, self.condition)

    def _inverse(self, y):
        return _jit_batched(self.bijector, "inverse", y, self.condition)

    def call_with_intermediates(self, x):
        return _jit_batched(self.bijector, "transform_and_log_det", x, self.condition)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        if intermediates is not None:
            return intermediates
        return _jit_batched(self.bijector, "transform_and_log_det", x, self.condition)[1]

    def forward_shape(self, shape):
        return shape

    def inverse_shape(self, shape):
        return shape

    def tree_flatten(self):
        return (self.bijector, self.condition), ()

    @classmethod
    def tree_unflatten(cls, aux_data, params):
        self = cls.__new__(cls)
        self.bijector, self.condition = params
        return self


def to_numpyro(bijector: AbstractBijector, condition=None) -> BijectorTransform:
    """Wrap a bijector as a NumPyro ``Transform`` (usable in ``TransformedDistribution``)."""
    return BijectorTransform(bijector, condition)


class TransformedFlow(TransformedDistribution):
    """``TransformedDistribution(base, BijectorTransform(bijector))`` whose ``log_prob`` without
    intermediates is one inverse pass (``inverse_and_log_det``) instead of NumPyro's inverse
    followed by a forward pass for the log-determinant; with intermediates (values it sampled
    itself) it reuses the forward log-determinant as NumPyro does."""

    def __init__(self, base_distribution, transform, *, validate_args=None):
        if not isinstance(transform, BijectorTransform):
            raise TypeError(
                f"argument 'transform' must be a BijectorTransform, got {type(transform)}."
            )
        super().__init__(base_distribution, transform, validate_args=validate_args)

    def log_prob(self, value, intermediates=None):
        if intermediates is not None or len(self.transforms) != 1:
            return super().log_prob(value, intermediates)
        t = self.transforms[0]
        x, ld = _jit_batched(t.bijector, "inverse_and_log_det", value, t.condition)
        return self.base_dist.log_prob(x) + ld


class FlowDistribution(Distribution):
    """A NumPyro ``Distribution`` backed by one of our distributions (e.g. a flow).

    ``log_prob`` is one inverse pass of the flow; ``sample`` is reparametrised so the adapter
    works as a guide under ``SVI``.
    """

    arg_constraints = {}
    reparametrized_params = []
    pytree_data_fields = ("dist", "condition")
    pytree_aux_fields = ()

    def __init__(self, dist: AbstractDistribution, condition=None, *, validate_args=None):
        if not isinstance(dist, AbstractDistribution):
            raise TypeError(f"argument 'dist' must be an AbstractDistribution, got {type(dist)}.")
        batch_shape = ()
        if dist.cond_shape is not None:
            if condition is None:
                raise ValueError(
                    f"argument 'condition' is required (cond_shape={dist.cond_shape})."
                )
            condition = jnp.asarray(condition)
            nc = len(dist.cond_shape)
            batch_shape = condition.shape[: condition.ndim - nc]
        elif condition is not None:
            raise ValueError("argument 'condition' given but the distribution is unconditional.")
        self.dist = dist
        self.condition = condition
        super().__init__(batch_shape, tuple(dist.shape), validate_args=validate_args)

    @property
    def support(self):
        return _real_constraint(len(self.dist.shape))

    @property
    def has_rsample(self):
        return True

    def rsample(self, key, sample_shape=()):
        return self.sample(key, sample_shape)

    def sample(self, key, sample_shape=()):
        return self.dist.sample(key, tuple(sample_shape), self.condition)

    def sample_with_intermediates(self, key, sample_shape=()):
        return self.sample(key, sample_shape), []

    def log_prob(self, value):
        return self.dist.log_prob(value, self.condition)


def as_numpyro_distribution(dist: AbstractDistribution, condition=None) -> FlowDistribution:
    """Adapter so ``numpyro.sample("x", as_numpyro_distribution(flow))`` works."""
    return FlowDistribution(dist, condition)


def flow_param(name: str, module: eqx.Module) -> eqx.Module:
    """Register a module's floating leaves as one NumPyro ``param`` site and return the module.

    Inside a guide: ``flow = flow_param("flow", flow0)`` makes the flow trainable by ``SVI``.
    """
    params, static = eqx.partition(module, eqx.is_inexact_array)
    params = numpyro.param(name, params)
    return eqx.combine(params, static)


__all__ = [
    "BijectorTransform",
    "FlowDistribution",
    "TransformedFlow",
    "to_numpyro",
    "as_numpyro_distribution",
    "flow_param",
]

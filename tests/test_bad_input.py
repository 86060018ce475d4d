"""Bad input to the public constructors and fitters raises ValueError / TypeError /
NotImplementedError (or FileNotFoundError / IsADirectoryError for paths) with a message naming
the offending argument or NumPyro site.

One table drives the test: each case makes ONE bad call. Under the CI's jaxtyping hook a value
of the wrong type can be refused by the annotation check first, whose message names the
parameter ("parameter 'x'"); the regexes of those cases accept both wordings.
"""

from __future__ import annotations

import functools
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from hypothesis import given, settings, strategies as st
from numpyro import handlers

import bayesflow_nets.aef as aef
import bayesflow_nets.bijectors as bj
import bayesflow_nets.coupling as cp
import bayesflow_nets.diffusion as df
import bayesflow_nets.emf as emf
import bayesflow_nets.gp as gp
import bayesflow_nets.infer as infer
import bayesflow_nets.train as train

from .bijectors.registry import perturb

KEY = jax.random.key(0)
NAN, INF = float("nan"), float("inf")
ARG_ERRORS = (ValueError, TypeError)


class Case(NamedTuple):
    """One bad call: ``call()`` must raise one of ``types`` with a message matching ``match``."""

    id: str
    call: Callable[[], object]
    types: tuple[type[BaseException], ...]
    match: str


def arg(name: str) -> str:
    """Regex naming argument ``name`` as the library ("argument 'x'") or the jaxtyping hook
    ("parameter 'x'") words it."""
    return rf"(argument|parameter) '{re.escape(name)}'"


def or_hook(text: str, name: str) -> str:
    """``text`` (the library's wording) or the jaxtyping hook's "parameter 'name'"."""
    return rf"{text}|parameter '{re.escape(name)}'"


def case(id, call, match, types=ARG_ERRORS):
    """A :class:`Case`; ValueError or TypeError unless ``types`` says otherwise."""
    return Case(id, call, types, match)


# ----------------------------------------------------------------------------- small inputs


def normal_model(y=None):
    """Normal mean with five observations."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", 5):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def positive_model(y=None):
    """Exponential likelihood: observations must be >= 0."""
    rate = numpyro.sample("rate", dist.LogNormal(0.0, 1.0))
    with numpyro.plate("data", 5):
        numpyro.sample("y", dist.Exponential(rate), obs=y)


def discrete_model(y=None):
    """A Bernoulli latent site (not continuous)."""
    k = numpyro.sample("k", dist.Bernoulli(0.5))
    with numpyro.plate("data", 5):
        numpyro.sample("y", dist.Normal(k, 1.0), obs=y)


def program():
    """An embedded program: one latent vector site and a trainable scale."""
    s = numpyro.param("s", 1.0, constraint=dist.constraints.positive)
    numpyro.sample("x", dist.Normal(0.0, s).expand([3]).to_event(1))


def observed_program():
    """A program without latent sites."""
    numpyro.sample("x", dist.Normal(0.0, 1.0), obs=0.5)


Y5 = jnp.array([0.3, -0.2, 1.1, 0.4, -0.7])


def fit_vi(model, *args, **options):
    """``fit_vi`` with an ``AutoEMF`` guide, two steps (the fewest its schedule takes), no
    progress bar."""
    options = {"num_steps": 2, "progress": False, **options}
    return emf.fit_vi(model, emf.AutoEMF(model), *args, **options)


def guide_call(model, *args):
    """The guide's first call (its set-up traces the model)."""
    return handlers.seed(emf.AutoEMF(model), 0)(*args)


X_GP = jnp.linspace(0.0, 1.0, 5)
Y_GP = jnp.sin(3.0 * X_GP)


@functools.cache
def brownian_gp():
    return gp.ImproperGP(gp.Brownian(), X_GP, 0.1)


@functools.cache
def se_gp():
    return gp.ImproperGP(gp.SquaredExponential(), X_GP, 0.1)


SHAPE = (1, 4, 4)


@functools.cache
def nets(latent_dim=2):
    enc = aef.MLPEncoder(KEY, SHAPE, latent_dim, width=8, depth=1)
    dec = aef.MLPDecoder(KEY, SHAPE, latent_dim, width=8, depth=1)
    return enc, dec


def partition_aef(**kw):
    enc, dec = nets()
    return aef.PartitionAEF(enc, dec, SHAPE, 2, **kw)


@functools.cache
def coupling_model():
    return cp.CouplingModel(n_nodes=2, tr=1.0)


def coupling_data(t=80, n=2):
    return np.asarray(jax.random.normal(KEY, (t, n)))


def with_nan(x, index=0):
    x = np.array(x, dtype=float)
    x.flat[index] = np.nan
    return x


def score_fn(x, t):
    return -x


def times_of(*values):
    return jnp.asarray(values)


def quadratic_logp(z, aux, data):
    return -0.5 * jnp.sum(z**2)


def load_mismatched():
    """Save a 2-vector and load it into a 3-vector template."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "module.eqx"
        train.save(path, jnp.zeros(2))
        return train.load(path, jnp.zeros(3))


@functools.cache
def conditional_flow():
    return bj.masked_autoregressive_flow(
        KEY, base_dist=bj.StandardNormal((2,)), cond_dim=1, flow_layers=1, nn_width=4
    )


def nuts_model():
    numpyro.sample("x", dist.Normal(0.0, 1.0))


# ----------------------------------------------------------------------------------- cases

BIJECTORS = [
    case("Loc-nan", lambda: bj.Loc(jnp.array([0.0, NAN])), arg("loc") + " must be finite"),
    case("Scale-negative", lambda: bj.Scale(-1.0), arg("scale") + " must be strictly positive"),
    case("Scale-nan", lambda: bj.Scale(jnp.array([1.0, NAN])), arg("scale") + " must be finite"),
    case(
        "Affine-no-broadcast",
        lambda: bj.Affine(jnp.zeros(2), jnp.ones(3)),
        "arguments 'loc' .* and 'scale' .* do not broadcast",
    ),
    case("Affine-exp-tiny-scale", lambda: bj.Affine(0.0, 1e-4, positivity="exp"), arg("scale")),
    case(
        "TriangularAffine-2d-loc",
        lambda: bj.TriangularAffine(jnp.zeros((2, 2)), jnp.eye(2)),
        arg("loc") + " must be 1-D",
    ),
    case(
        "TriangularAffine-nan",
        lambda: bj.TriangularAffine(jnp.zeros(2), jnp.array([[1.0, 0.0], [NAN, 1.0]])),
        arg("arr") + " must be finite",
    ),
    case(
        "LowRankAffine-uv-shapes",
        lambda: bj.LowRankAffine(jnp.zeros(3), 1.0, jnp.zeros((3, 2)), jnp.zeros((3, 1))),
        "arguments 'u' and 'v'",
    ),
    case(
        "LowRankAffine-zero-scale",
        lambda: bj.LowRankAffine(jnp.zeros(3), 0.0, jnp.zeros((3, 1)), jnp.zeros((3, 1))),
        arg("scale") + " must be strictly positive",
    ),
    case("Exp-negative-size", lambda: bj.Exp((-1,)), arg("shape")),
    case("Softplus-zero-size", lambda: bj.Softplus((2, 0)), arg("shape")),
    case("Sigmoid-int-shape", lambda: bj.Sigmoid(5), arg("shape")),
    case("Tanh-fractional-size", lambda: bj.Tanh((2.5,)), arg("shape")),
    case("Logit-inf-size", lambda: bj.Logit((INF,)), arg("shape")),
    case("StandardNormal-nan-size", lambda: bj.StandardNormal((NAN,)), arg("shape")),
    case("StandardNormal-str-shape", lambda: bj.StandardNormal("ab"), arg("shape")),
    case(
        "Normal-no-broadcast",
        lambda: bj.Normal(jnp.zeros(2), jnp.ones(3)),
        "arguments 'loc' .* and 'scale' .* do not broadcast",
    ),
    case("Normal-zero-scale", lambda: bj.Normal(0.0, 0.0), arg("scale")),
    case("RQS-inf-interval", lambda: bj.RationalQuadraticSpline(4, INF), arg("interval")),
    case("RQS-nan-interval", lambda: bj.RationalQuadraticSpline(4, (NAN, 1.0)), arg("interval")),
    case(
        "RQS-derivatives-shape",
        lambda: bj.RationalQuadraticSpline(4, derivatives=jnp.ones(2)),
        arg("derivatives") + " must have shape",
    ),
    case("Permute-float", lambda: bj.Permute(jnp.array([1.0, 0.0])), arg("perm")),
    case("Permute-shape", lambda: bj.Permute(jnp.arange(4), shape=(3,)), arg("shape")),
    case("Reverse-scalar", lambda: bj.Reverse(()), arg("shape")),
    case("Chain-empty", lambda: bj.Chain([]), arg("bijectors")),
    case("Chain-not-bijector", lambda: bj.Chain(["exp"]), arg("bijectors")),
    case("Invert-not-bijector", lambda: bj.Invert("exp"), arg("bijector")),
    case("Concatenate-scalars", lambda: bj.Concatenate([bj.Exp(), bj.Exp()]), arg("bijectors")),
    case(
        "Stack-shapes",
        lambda: bj.Stack([bj.Exp((2,)), bj.Exp((3,))]),
        re.escape("argument 'bijectors'[1] has shape"),
    ),
    case("Scan-no-arrays", lambda: bj.Scan(bj.Exp((2,))), arg("stacked")),
    case(
        "MAF-layer-cond-dim",
        lambda: bj.MaskedAutoregressive(KEY, bj.Affine(), 3, cond_dim=0),
        arg("cond_dim"),
    ),
    case(
        "MAF-layer-vector-transformer",
        lambda: bj.MaskedAutoregressive(KEY, bj.Exp((2,)), 3),
        arg("transformer"),
    ),
    case(
        "MAF-layer-zero-width",
        lambda: bj.MaskedAutoregressive(KEY, bj.Affine(), 3, nn_width=0),
        arg("nn_width"),
    ),
    case(
        "MAF-layer-no-hidden-layer",
        lambda: bj.MaskedAutoregressive(KEY, bj.Affine(), 3, nn_depth=0),
        arg("nn_depth"),
    ),
    case(
        "Coupling-negative-depth",
        lambda: bj.Coupling(KEY, bj.Affine(), 1, 3, nn_depth=-1),
        arg("nn_depth"),
    ),
    case("MAF-layer-int-key", lambda: bj.MaskedAutoregressive(0, bj.Affine(), 3), arg("key")),
    case(
        "MAF-layer-float-key",
        lambda: bj.MaskedAutoregressive(jnp.zeros(2), bj.Affine(), 3),
        arg("key"),
    ),
    case(
        "Coupling-untransformed",
        lambda: bj.Coupling(KEY, bj.Affine(), 0, 3),
        arg("untransformed_dim"),
    ),
    case("Coupling-dim", lambda: bj.Coupling(KEY, bj.Affine(), 1, 1), arg("dim")),
    case(
        "Coupling-key-batch",
        lambda: bj.Coupling(jax.random.split(KEY, 2), bj.Affine(), 1, 3),
        arg("key"),
    ),
    case(
        "maf-base-not-dist",
        lambda: bj.masked_autoregressive_flow(KEY, base_dist="normal"),
        arg("base_dist"),
    ),
    case(
        "iaf-negative-layers",
        lambda: bj.inverse_autoregressive_flow(
            KEY, base_dist=bj.StandardNormal((3,)), flow_layers=-1
        ),
        arg("flow_layers"),
    ),
    case(
        "coupling-flow-dim-1",
        lambda: bj.coupling_flow(KEY, base_dist=bj.StandardNormal((1,))),
        arg("base_dist"),
    ),
    case(
        "coupling-flow-knots",
        lambda: bj.coupling_flow(KEY, base_dist=bj.StandardNormal((2,)), knots=1),
        arg("knots"),
    ),
    case("Transformed-base", lambda: bj.Transformed("normal", bj.Exp()), arg("base")),
    case("AffineSquash-alpha", lambda: bj.AffineSquash(0.5), arg("alpha")),
    case("ActNorm-param-shape", lambda: bj.ActNorm((2,), (3,)), arg("param_shape")),
    case("ActNorm-zero-scale", lambda: bj.ActNorm((2,), scale=jnp.array([1.0, 0.0])), arg("scale")),
    case("init_actnorm-x", lambda: bj.init_actnorm(bj.ActNorm((2,)), jnp.zeros((4, 3))), arg("x")),
    case(
        "logit_preprocessing-alpha",
        lambda: bj.logit_preprocessing((1, 4, 4), alpha=0.7),
        arg("alpha"),
    ),
    case(
        "to_numpyro-condition",
        lambda: bj.to_numpyro(bj.Exp((2,)), condition=jnp.zeros(2)),
        arg("condition"),
    ),
    case("as_numpyro_distribution-dist", lambda: bj.as_numpyro_distribution("normal"), arg("dist")),
    case(
        "TransformedFlow-transform",
        lambda: bj.TransformedFlow(dist.Normal(0.0, 1.0), dist.transforms.ExpTransform()),
        arg("transform"),
    ),
]

EMF = [
    case("AutoEMF-backbone", lambda: emf.AutoEMF(normal_model, backbone="flow"), arg("backbone")),
    case(
        "AutoEMF-placement", lambda: emf.AutoEMF(normal_model, placement="side"), arg("placement")
    ),
    case(
        "AutoEMF-gate-init-one", lambda: emf.AutoEMF(normal_model, gate_init=1.0), arg("gate_init")
    ),
    case(
        "AutoEMF-gate-init-str",
        lambda: emf.AutoEMF(normal_model, gate_init="0.5"),
        arg("gate_init"),
    ),
    case(
        "AutoEMF-flow-layers", lambda: emf.AutoEMF(normal_model, flow_layers=0), arg("flow_layers")
    ),
    case("AutoEMF-nn-width", lambda: emf.AutoEMF(normal_model, nn_width=0), arg("nn_width")),
    case(
        "AutoEMF-discrete-latent",
        lambda: guide_call(discrete_model, Y5),
        "latent site 'k' is discrete",
    ),
    case(
        "fit_vi-learning-rate",
        lambda: fit_vi(normal_model, Y5, learning_rate=-1.0),
        arg("learning_rate"),
    ),
    case(
        "fit_vi-learning-rate-nan",
        lambda: fit_vi(normal_model, Y5, learning_rate=NAN),
        arg("learning_rate"),
    ),
    case(
        "fit_vi-gate-learning-rate",
        lambda: fit_vi(normal_model, Y5, gate_learning_rate=0.0),
        arg("gate_learning_rate"),
    ),
    case("fit_vi-init", lambda: fit_vi(normal_model, Y5, init="random"), arg("init")),
    case("fit_vi-estimator", lambda: fit_vi(normal_model, Y5, estimator="iwae"), arg("estimator")),
    case(
        "fit_vi-num-particles", lambda: fit_vi(normal_model, Y5, num_particles=0), "'num_particles'"
    ),
    case(
        "fit_vi-checkpoint-every",
        lambda: fit_vi(normal_model, Y5, checkpoint_every=0),
        arg("checkpoint_every"),
    ),
    case("fit_vi-tol-nan", lambda: fit_vi(normal_model, Y5, tol=NAN), arg("tol")),
    case("fit_vi-chunk", lambda: fit_vi(normal_model, Y5, chunk=0), arg("chunk")),
    case(
        "fit_vi-num-steps-float", lambda: fit_vi(normal_model, Y5, num_steps=2.5), arg("num_steps")
    ),
    case("fit_vi-min-steps", lambda: fit_vi(normal_model, Y5, min_steps=-5), arg("min_steps")),
    case(
        "fit_vi-refine-steps",
        lambda: fit_vi(normal_model, Y5, num_steps=100, refine_steps=100),
        arg("refine_steps"),
    ),
    case(
        "fit_vi-refine-alpha",
        lambda: fit_vi(normal_model, Y5, refine_alpha=1.0),
        arg("refine_alpha"),
    ),
    case(
        "fit_vi-refine-alpha-type",
        lambda: fit_vi(normal_model, Y5, refine_alpha="half"),
        arg("refine_alpha"),
    ),
    case("RenyiELBO-alpha", lambda: emf.RenyiELBO(num_particles=4, alpha=-0.5), arg("alpha")),
    case("fit_vi-rng-key", lambda: fit_vi(normal_model, Y5, rng_key=3), arg("rng_key")),
    case(
        "fit_vi-nan-observation",
        lambda: fit_vi(normal_model, with_nan(Y5, 2)),
        "observed site 'y' has 1 non-finite",
    ),
    case(
        "fit_vi-out-of-support",
        lambda: fit_vi(positive_model, Y5),
        "observed site 'y' has 2 value.* outside the support",
    ),
    case(
        "fit_vi-plate-mismatch",
        lambda: fit_vi(normal_model, Y5[:4]),
        "observed site 'y': .* do not broadcast",
    ),
    case(
        "fit_vi-scored-twice",
        lambda: fit_vi(normal_model, Y5[:, None]),
        "observed site 'y': .* scored more than once",
    ),
    case(
        "fit_vi-discrete-latent", lambda: fit_vi(discrete_model, Y5), "latent site 'k' is discrete"
    ),
    case("EMFDensity-model", lambda: emf.EMFDensity("program"), arg("model")),
    case(
        "EMFDensity-backbone", lambda: emf.EMFDensity(program, backbone="lowrank"), arg("backbone")
    ),
    case("EMFDensity-site-type", lambda: emf.EMFDensity(program, site=0), arg("site")),
    case("EMFDensity-site-name", lambda: emf.EMFDensity(program, site="z"), arg("site")),
    case("EMFDensity-no-latent", lambda: emf.EMFDensity(observed_program), arg("model")),
    case("EMFDensity-gate-init", lambda: emf.EMFDensity(program, gate_init=0.0), arg("gate_init")),
    case(
        "EMFDensity-gate-scale", lambda: emf.EMFDensity(program, gate_scale=-1.0), arg("gate_scale")
    ),
    case(
        "EMFDensity-reserved-kwarg",
        lambda: emf.EMFDensity(program, model_kwargs={"__emf_params__": {}}),
        arg("model_kwargs"),
    ),
    case(
        "EMFDensity-flow-layers", lambda: emf.EMFDensity(program, flow_layers=0), arg("flow_layers")
    ),
    case("EMFDensity-key", lambda: emf.EMFDensity(program, key=1), arg("key")),
    case("resolve_backbone", lambda: emf.resolve_backbone("flow", 3), arg("backbone")),
    case(
        "make_backbone-rqs-1d",
        lambda: emf.make_backbone(KEY, "rqs", 1),
        arg("dim") + " must be >= 2 for backbone 'rqs'",
    ),
]

GP = [
    case(
        "SquaredExponential-zero-lengthscale",
        lambda: gp.SquaredExponential(lengthscale=0.0),
        "lengthscale must be positive",
    ),
    case(
        "Matern12-negative-variance",
        lambda: gp.Matern12(variance=-1.0),
        "variance must be positive",
    ),
    case(
        "Matern32-nan-lengthscale",
        lambda: gp.Matern32(lengthscale=NAN),
        "lengthscale must be positive and finite",
    ),
    case(
        "Matern52-inf-variance",
        lambda: gp.Matern52(variance=INF),
        "variance must be positive and finite",
    ),
    case("Periodic-zero-period", lambda: gp.Periodic(period=0.0), "period must be positive"),
    case("Brownian-vector-variance", lambda: gp.Brownian(jnp.ones(2)), "variance must be a scalar"),
    case(
        "SmoothWalk-str-lengthscale",
        lambda: gp.SmoothWalk(lengthscale="long"),
        or_hook("lengthscale must be a positive real", "lengthscale"),
    ),
    case("MaternWalk-integer-nu", lambda: gp.MaternWalk(nu=1.0), "nu must be a half-integer"),
    case("MaternWalk-large-nu", lambda: gp.MaternWalk(nu=7.5), "nu must be a half-integer"),
    case("Scaled-negative", lambda: gp.Scaled(gp.Brownian(), -2.0), "scale must be positive"),
    case(
        "Product-improper", lambda: gp.Product(gp.Brownian(), gp.Matern12()), "kernel1 is improper"
    ),
    case(
        "Sum-not-kernel",
        lambda: gp.Sum(gp.Brownian(), 3.0),
        or_hook("kernel2 must be a kernel", "kernel2"),
    ),
    case(
        "matern_correlation-nu",
        lambda: gp.matern_correlation(1.0, 1.0, nu=3.0),
        "nu must be a half-integer",
    ),
    case(
        "ImproperGP-kernel",
        lambda: gp.ImproperGP("brownian", X_GP, 0.1),
        or_hook("kernel must be a kernel", "kernel"),
    ),
    case(
        "ImproperGP-X-3d",
        lambda: gp.ImproperGP(gp.Brownian(), jnp.zeros((5, 1, 1)), 0.1),
        or_hook("X must have shape", "X"),
    ),
    case(
        "ImproperGP-X-one-point",
        lambda: gp.ImproperGP(gp.Brownian(), jnp.zeros(1), 0.1),
        "X must have shape",
    ),
    case(
        "ImproperGP-X-empty",
        lambda: gp.ImproperGP(gp.Brownian(), jnp.zeros(0), 0.1),
        or_hook("X must have shape", "X"),
    ),
    case(
        "ImproperGP-X-nan",
        lambda: gp.ImproperGP(gp.Brownian(), with_nan(X_GP), 0.1),
        "X contains NaN",
    ),
    case(
        "ImproperGP-zero-noise",
        lambda: gp.ImproperGP(gp.Brownian(), X_GP, 0.0),
        "noise .* must be positive",
    ),
    case(
        "ImproperGP-inf-noise",
        lambda: gp.ImproperGP(gp.Brownian(), X_GP, INF),
        "noise .* must be positive and finite",
    ),
    case(
        "ImproperGP-noise-shape",
        lambda: gp.ImproperGP(gp.Brownian(), X_GP, jnp.ones(4)),
        "noise must be a scalar or have shape",
    ),
    case(
        "ImproperGP-improper-no-flat-mean",
        lambda: gp.ImproperGP(gp.Brownian(), X_GP, 0.1, flat_mean=False),
        "flat_mean=True",
    ),
    case(
        "lml-y-nan",
        lambda: brownian_gp().log_marginal_likelihood(with_nan(Y_GP)),
        "y contains 1 NaN",
    ),
    case(
        "lml-y-shape",
        lambda: brownian_gp().log_marginal_likelihood(Y_GP[:4]),
        or_hook("y must have shape", "y"),
    ),
    case(
        "predict-X_test-point-shape",
        lambda: brownian_gp().predict(Y_GP, jnp.zeros((3, 2))),
        or_hook("X_test must have point shape", "X_test"),
    ),
    case(
        "predict-X_test-nan",
        lambda: brownian_gp().predict(Y_GP, with_nan(jnp.linspace(0, 1, 3))),
        "X_test contains 1 NaN",
    ),
    case(
        "predict-method",
        lambda: brownian_gp().predict(Y_GP, X_GP, method="exact"),
        "method must be one of",
    ),
    case(
        "predict-state-space-full-cov",
        lambda: brownian_gp().predict(Y_GP, X_GP, method="state_space", full_cov=True),
        "full_cov=True is not available",
    ),
    case(
        "predict-state-space-se",
        lambda: gp.ImproperGP(gp.SquaredExponential(), X_GP, 0.1, flat_mean=True).predict(
            Y_GP, X_GP, method="state_space"
        ),
        "method='state_space' supports",
        (NotImplementedError,),
    ),
    case(
        "predict-bordered-proper",
        lambda: se_gp().predict(Y_GP, X_GP, method="bordered"),
        "method='bordered'",
    ),
    case(
        "state-space-2d-inputs",
        lambda: gp.ImproperGP(
            gp.Brownian(), jnp.ones((5, 2)) * X_GP[:, None], 0.1
        ).log_marginal_likelihood(Y_GP, method="state_space"),
        "method='state_space' needs 1-D inputs",
    ),
    case(
        "sample_prior-pin-index",
        lambda: brownian_gp().sample_prior(KEY, pin_index=5),
        "pin_index must index",
    ),
    case(
        "numpyro_dist-method",
        lambda: brownian_gp().numpyro_dist(method="bordered"),
        "method must be one of",
    ),
    case("fit_reml-steps", lambda: gp.fit_reml(brownian_gp(), Y_GP, steps=0), arg("steps")),
    case("fit_reml-steps-str", lambda: gp.fit_reml(brownian_gp(), Y_GP, steps="10"), arg("steps")),
    case("fit_reml-gtol", lambda: gp.fit_reml(brownian_gp(), Y_GP, gtol=NAN), arg("gtol")),
    case(
        "fit_reml-optimizer",
        lambda: gp.fit_reml(brownian_gp(), Y_GP, optimizer="adam"),
        arg("optimizer"),
    ),
    case("fit_reml-gp", lambda: gp.fit_reml("gp", Y_GP), or_hook("gp must be an ImproperGP", "gp")),
    case(
        "fit_reml-method",
        lambda: gp.fit_reml(brownian_gp(), Y_GP, method="bordered"),
        "method must be one of",
    ),
    case(
        "fit_reml-y-inf",
        lambda: gp.fit_reml(brownian_gp(), jnp.where(X_GP > 0.5, INF, Y_GP)),
        "y contains 2 NaN/inf",
    ),
    case(
        "kernel-X1-3d",
        lambda: gp.Brownian()(jnp.zeros((2, 1, 1))),
        or_hook("X1 must have shape", "X1"),
    ),
    case(
        "plot_gp-num-sd",
        lambda: gp.plot_gp(brownian_gp(), Y_GP, X_GP, num_sd=-1.0),
        "num_sd must be positive",
    ),
]

AEF = [
    case("MLPEncoder-latent-dim", lambda: aef.MLPEncoder(KEY, SHAPE, 0), arg("latent_dim")),
    case("MLPEncoder-zero-size", lambda: aef.MLPEncoder(KEY, (0, 4), 2), arg("shape")),
    case(
        "MLPDecoder-negative-width", lambda: aef.MLPDecoder(KEY, SHAPE, 2, width=-1), arg("width")
    ),
    case("ConvEncoder-size", lambda: aef.ConvEncoder(KEY, (1, 5, 5), 2), arg("shape")),
    case("ConvDecoder-2d-shape", lambda: aef.ConvDecoder(KEY, (4, 4), 2), arg("shape")),
    case(
        "PartitionAEF-latent-dim", lambda: aef.PartitionAEF(*nets(), SHAPE, 16), arg("latent_dim")
    ),
    case("PartitionAEF-mask-kind", lambda: partition_aef(mask="random"), arg("mask")),
    case("PartitionAEF-mask-dtype", lambda: partition_aef(mask=np.ones(SHAPE)), arg("mask")),
    case(
        "PartitionAEF-preprocess",
        lambda: partition_aef(preprocess="standardise"),
        arg("preprocess"),
    ),
    case(
        "PartitionAEF-encoder-latent",
        lambda: aef.PartitionAEF(*nets(3)[:1], nets()[1], SHAPE, 2),
        arg("encoder"),
    ),
    case(
        "ExpansionAEF-latent-dim",
        lambda: aef.ExpansionAEF(*nets(), SHAPE, 0, key=KEY),
        arg("latent_dim"),
    ),
    case(
        "VAE-prior-flow",
        lambda: aef.VAE(*nets(), SHAPE, 2, prior_flow=bj.Exp((3,))),
        arg("prior_flow"),
    ),
    case("VAE-decoder", lambda: aef.VAE(nets()[0], "decoder", SHAPE, 2), arg("decoder")),
    case("dequantise-levels", lambda: aef.dequantise(KEY, jnp.zeros((2, 3)), 1), arg("levels")),
    case("dequantise-x-range", lambda: aef.dequantise(KEY, jnp.array([0.0, 20.0]), 17), arg("x")),
    case("bits_per_dim-num-dims", lambda: aef.bits_per_dim(-10.0, 0, 256), arg("num_dims")),
    case(
        "load_npz_images-missing",
        lambda: aef.load_npz_images("/nonexistent/images.npz"),
        arg("path"),
        (FileNotFoundError,),
    ),
    case("load_digits-test-prop", lambda: aef.load_digits(test_prop=1.5), arg("test_prop")),
    case(
        "core_indices-mask-count",
        lambda: aef.core_indices(SHAPE, 3, np.zeros(SHAPE, bool)),
        arg("mask"),
    ),
    case("core_mask-latent-dim", lambda: aef.core_mask(SHAPE, 0), arg("latent_dim")),
    case(
        "select_is_scale-model",
        lambda: aef.select_is_scale("model", KEY, jnp.zeros((1, *SHAPE))),
        arg("model"),
    ),
    case("dequantised_loss-levels", lambda: aef.dequantised_loss(0), arg("levels")),
    case(
        "fit_dequantised-images-shape",
        lambda: aef.fit_dequantised(KEY, partition_aef(), np.zeros((4, 2, 4, 4)), 17),
        arg("images"),
    ),
    case(
        "fit_dequantised-images-levels",
        lambda: aef.fit_dequantised(KEY, partition_aef(), np.full((4, *SHAPE), 17.0), 17),
        arg("images"),
    ),
    case(
        "fit_dequantised-loss-fn",
        lambda: aef.fit_dequantised(KEY, partition_aef(), np.zeros((4, *SHAPE)), 17, loss_fn=None),
        arg("loss_fn"),
    ),
]

COUPLING = [
    case("CouplingModel-n-nodes", lambda: cp.CouplingModel(n_nodes=0, tr=1.0), arg("n_nodes")),
    case("CouplingModel-tr", lambda: cp.CouplingModel(n_nodes=2, tr=0.0), arg("tr")),
    case(
        "CouplingModel-max-delay",
        lambda: cp.CouplingModel(n_nodes=2, tr=1.0, max_delay=-1.0),
        arg("max_delay"),
    ),
    case(
        "CouplingModel-burn-in",
        lambda: cp.CouplingModel(n_nodes=2, tr=1.0, burn_in=-3),
        arg("burn_in"),
    ),
    case(
        "CouplingModel-noise-sd-nan",
        lambda: cp.CouplingModel(n_nodes=2, tr=1.0, noise_sd=NAN),
        arg("noise_sd"),
    ),
    case(
        "check_data-nan",
        lambda: cp.check_data(with_nan(coupling_data(), 5), 1.0),
        arg("Y") + " contains NaN",
    ),
    case("check_data-1d", lambda: cp.check_data(np.zeros(20), 1.0), arg("Y") + " must be a 2-D"),
    case("check_data-tr", lambda: cp.check_data(coupling_data(), -1.0), arg("TR")),
    case(
        "check_data-columns",
        lambda: cp.check_data(coupling_data(n=3), 1.0, coupling_model()),
        arg("Y") + " has 3 nodes",
    ),
    case(
        "check_data-short",
        lambda: cp.check_data(coupling_data(t=20), 1.0, coupling_model()),
        arg("Y") + " has T=20",
    ),
    case(
        "rdcm-hrf-threshold",
        lambda: cp.rdcm(coupling_data(), 1.0, hrf_threshold=1.5),
        arg("hrf_threshold"),
    ),
    case("rdcm-U-shape", lambda: cp.rdcm(coupling_data(), 1.0, U=np.zeros((10, 1))), arg("U")),
    case("rdcm-max-iter", lambda: cp.rdcm(coupling_data(), 1.0, max_iter=0), arg("max_iter")),
    case("rdcm-prior-shape", lambda: cp.rdcm(coupling_data(), 1.0, a0=-1.0), arg("a0")),
    case("HybridVI-model", lambda: cp.HybridVI(model="model"), arg("model")),
    case(
        "HybridVI-likelihood",
        lambda: cp.HybridVI(coupling_model(), likelihood="exact"),
        arg("likelihood"),
    ),
    case("HybridVI-vi-steps", lambda: cp.HybridVI(coupling_model(), vi_steps=-1), arg("vi_steps")),
    case("HybridVI-n-mc", lambda: cp.HybridVI(coupling_model(), n_mc=0), arg("n_mc")),
    case(
        "HybridVI-rows-prior",
        lambda: cp.HybridVI(coupling_model(), covariance="rows", init="prior"),
        arg("covariance"),
    ),
    case(
        "train_measurement_posterior-n-time",
        lambda: cp.train_measurement_posterior(KEY, coupling_model(), 5),
        arg("n_time"),
    ),
    case(
        "train_measurement_posterior-steps",
        lambda: cp.train_measurement_posterior(KEY, coupling_model(), 100, steps=0),
        arg("steps"),
    ),
    case(
        "train_measurement_posterior-learning-rate",
        lambda: cp.train_measurement_posterior(KEY, coupling_model(), 100, learning_rate=NAN),
        arg("learning_rate"),
    ),
    case(
        "train_measurement_posterior-checkpoint-every",
        lambda: cp.train_measurement_posterior(KEY, coupling_model(), 100, checkpoint_every=0),
        arg("checkpoint_every"),
    ),
    case("MeasurementPosterior-model", lambda: cp.MeasurementPosterior(KEY, "model"), arg("model")),
    case(
        "laplace_gaussian-maxiter",
        lambda: cp.laplace_gaussian(quadratic_logp, None, jnp.zeros(2), maxiter=0),
        arg("maxiter"),
    ),
    case(
        "laplace_gaussian-step-size",
        lambda: cp.laplace_gaussian(quadratic_logp, None, jnp.zeros(2), step_size=INF),
        arg("step_size"),
    ),
    case(
        "fit_gaussian_vi-steps",
        lambda: cp.fit_gaussian_vi(KEY, quadratic_logp, None, jnp.zeros(2), steps=-1),
        arg("steps"),
    ),
    case(
        "reverse_kl_vi-likelihood",
        lambda: cp.reverse_kl_vi(KEY, coupling_model(), coupling_data(), 1.0, likelihood="exact"),
        arg("likelihood"),
    ),
    case(
        "CouplingPosterior-level",
        lambda: cp.CouplingPosterior(np.zeros((4, 2, 2)), "x", ("a", "b")).interval(1.5),
        arg("level"),
    ),
    case(
        "CouplingPosterior-num-chains",
        lambda: cp.CouplingPosterior(np.zeros((4, 2, 2)), "x", ("a", "b")).to_arviz(3),
        arg("num_chains"),
    ),
]

DIFFUSION = [
    case(
        "VESchedule-sigma-min", lambda: df.VESchedule(sigma_min=0.0), "sigma_min must be positive"
    ),
    case(
        "VESchedule-order",
        lambda: df.VESchedule(sigma_min=2.0, sigma_max=1.0),
        "sigma_min < sigma_max",
    ),
    case("VPSchedule-kind", lambda: df.VPSchedule(kind="quadratic"), "kind must be one of"),
    case("VPSchedule-times", lambda: df.VPSchedule(t_min=0.5, t_max=0.1), "t_min < t_max"),
    case("VPSchedule-cosine-t-max", lambda: df.VPSchedule(kind="cosine", t_max=1.0), "t_max < 1"),
    case(
        "VPSchedule-beta-nan",
        lambda: df.VPSchedule(beta_max=NAN),
        "beta_max must be positive and finite",
    ),
    case(
        "DDPMSchedule-num-steps", lambda: df.DDPMSchedule(num_steps=0), "num_steps must be an int"
    ),
    case("DDPMSchedule-beta-end", lambda: df.DDPMSchedule(beta_end=1.5), "beta_end < 1"),
    case("time_grid-n", lambda: df.time_grid(1.0, 0), or_hook("n must be an int", "n")),
    case("time_grid-start", lambda: df.time_grid(0.0, 10), "t_start > t_end"),
    case("time_grid-spacing", lambda: df.time_grid(1.0, 10, spacing="log"), "spacing must be"),
    case(
        "ddim-times-shape",
        lambda: df.ddim_sample(score_fn, df.VESchedule(), jnp.zeros(2), times_of(1.0)),
        "times must be a 1-D grid",
    ),
    case(
        "ddim-times-increasing",
        lambda: df.ddim_sample(score_fn, df.VESchedule(), jnp.zeros(2), times_of(0.1, 1.0)),
        "times must be strictly decreasing",
    ),
    case(
        "ddim-times-negative",
        lambda: df.ddim_sample(score_fn, df.VESchedule(), jnp.zeros(2), times_of(1.0, -0.5)),
        "times must be",
    ),
    case(
        "pndm-times-nan",
        lambda: df.pndm_sample(score_fn, df.VESchedule(), jnp.zeros(2), times_of(1.0, NAN, 0.0)),
        "times must be",
    ),
    case(
        "ddim-eta-without-key",
        lambda: df.ddim_sample(
            score_fn, df.VESchedule(), jnp.zeros(2), times_of(1.0, 0.0), eta=0.5
        ),
        "pass key=",
    ),
    case(
        "probability_flow-method",
        lambda: df.probability_flow_sample(
            score_fn, df.VESchedule(), jnp.zeros(2), times_of(1.0, 0.0), method="rk4"
        ),
        "method must be",
    ),
    case(
        "euler_maruyama-schedule",
        lambda: df.euler_maruyama_sample(score_fn, "ve", jnp.zeros(2), times_of(1.0, 0.0), key=KEY),
        or_hook("schedule must be", "schedule"),
    ),
    case("ScoreMLP-dim", lambda: df.ScoreMLP(KEY, 0), "dim must be an int"),
    case(
        "ScoreMLP-time-dim", lambda: df.ScoreMLP(KEY, 2, time_dim=3), "time_dim must be an even int"
    ),
    case("ScoreUNet-shape", lambda: df.ScoreUNet(KEY, (1, 6, 6)), "H and W must be divisible by 4"),
    case(
        "sinusoidal_embedding-dim",
        lambda: df.sinusoidal_embedding(1.0, 3),
        "dim must be an even int",
    ),
    case(
        "dsm_loss-parametrisation",
        lambda: df.dsm_loss(score_fn, df.VESchedule(), jnp.zeros((4, 2)), KEY, parametrisation="v"),
        "parametrisation must be one of",
    ),
    case(
        "dsm_loss-x0-unbatched",
        lambda: df.dsm_loss(score_fn, df.VESchedule(), jnp.zeros(2), KEY),
        "x0 must be a batch",
    ),
    case(
        "dsm_loss-t-range",
        lambda: df.dsm_loss(
            score_fn, df.VESchedule(), jnp.zeros((4, 2)), KEY, t_min=2.0, t_max=1.0
        ),
        "t_min < t_max",
    ),
    case(
        "streaming_moments-one-sample",
        lambda: df.streaming_moments(jnp.zeros((1, 2))),
        "need at least 2 samples",
    ),
    case(
        "gaussian_late_start-ridge",
        lambda: df.gaussian_late_start(jnp.zeros((4, 2)), df.VESchedule(), 1.0, ridge=-1.0),
        "ridge must be >= 0",
    ),
    case(
        "gaussian_late_start-rank",
        lambda: df.gaussian_late_start(jnp.ones((4, 2)), df.VESchedule(), 1.0, rank=3),
        "rank must be None or an int",
    ),
    case(
        "critical_start_time-order",
        lambda: df.critical_start_time(np.array([1.0, 3.0, 2.0]), np.zeros(3)),
        "start_times must be strictly increasing",
    ),
    case(
        "corrupt-flip-fraction",
        lambda: df.corrupt(KEY, jnp.ones((2, 4)), 0.5),
        "flip_fraction must be in",
    ),
    case(
        "capacity_curve-t-start",
        lambda: df.capacity_curve(
            KEY, lambda k, p: score_fn, dim=4, pattern_counts=[2], t_start=-1.0
        ),
        "t_start must be > 0",
    ),
    case("lanczos_eigh-k", lambda: df.lanczos_eigh(lambda v: v, 4, KEY, 0), "k must be an int in"),
    case("spectral_gap-one-value", lambda: df.spectral_gap(jnp.ones(1)), "need at least 2 values"),
    case(
        "empirical_score-data-1d",
        lambda: df.empirical_score(df.VESchedule(), jnp.zeros(3), jnp.zeros(3), 1.0),
        or_hook("data must have shape", "data"),
    ),
    case(
        "empirical_score-x-shape",
        lambda: df.empirical_score(df.VESchedule(), jnp.zeros((3, 2)), jnp.zeros(3), 1.0),
        or_hook("x has shape", "x"),
    ),
    case(
        "equal_norm_critical_variance-norms",
        lambda: df.equal_norm_critical_variance(np.array([[1.0, 0.0], [2.0, 0.0]])),
        "data rows must have equal norms",
    ),
    case(
        "symmetric_eigvalsh-solver",
        lambda: df.symmetric_eigvalsh(jnp.eye(2), solver="magma"),
        arg("solver"),
    ),
    case(
        "linear_manifold_spectrum-m",
        lambda: df.linear_manifold_spectrum(jnp.ones(3), 2, 1.0),
        "need m <= d",
    ),
    case(
        "convert-parametrisation",
        lambda: df.convert(
            df.VESchedule(), jnp.zeros(2), jnp.zeros(2), 1.0, source="v", target="eps"
        ),
        "source must be one of",
    ),
]

INFER = [
    case(
        "fit_to_data-learning-rate-inf",
        lambda: infer.fit_to_data(
            KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((10, 2)), learning_rate=INF
        ),
        arg("learning_rate"),
    ),
    case(
        "fit_to_data-max-patience",
        lambda: infer.fit_to_data(
            KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((10, 2)), max_patience=-1
        ),
        arg("max_patience"),
    ),
    case(
        "fit_to_loss-loss-fn",
        lambda: infer.fit_to_loss(KEY, bj.Normal(jnp.zeros(2)), "nll", 2),
        arg("loss_fn"),
    ),
    case(
        "fit_to_data-dist",
        lambda: infer.fit_to_data(KEY, "normal", jnp.zeros((10, 2))),
        arg("dist"),
    ),
    case(
        "fit_to_data-event-shape",
        lambda: infer.fit_to_data(KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((10, 3))),
        arg("data"),
    ),
    case(
        "fit_to_data-nan",
        lambda: infer.fit_to_data(KEY, bj.Normal(jnp.zeros(2)), with_nan(np.zeros((10, 2)), 3)),
        arg("data") + " contains non-finite",
    ),
    case(
        "fit_to_data-val-prop",
        lambda: infer.fit_to_data(KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((10, 2)), val_prop=0.0),
        arg("val_prop"),
    ),
    case(
        "fit_to_data-too-few-rows",
        lambda: infer.fit_to_data(KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((1, 2))),
        arg("data") + " has too few rows",
    ),
    case(
        "fit_to_data-batch-size",
        lambda: infer.fit_to_data(KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((10, 2)), batch_size=0),
        arg("batch_size"),
    ),
    case(
        "fit_to_data-max-epochs",
        lambda: infer.fit_to_data(KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((10, 2)), max_epochs=0),
        arg("max_epochs"),
    ),
    case(
        "fit_to_data-learning-rate",
        lambda: infer.fit_to_data(
            KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((10, 2)), learning_rate=-1e-3
        ),
        arg("learning_rate"),
    ),
    case(
        "fit_to_data-optimizer",
        lambda: infer.fit_to_data(
            KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((10, 2)), optimizer="adam"
        ),
        arg("optimizer"),
    ),
    case(
        "fit_to_data-condition-missing",
        lambda: infer.fit_to_data(KEY, conditional_flow(), jnp.zeros((10, 2))),
        arg("condition") + " is required",
    ),
    case(
        "fit_to_data-condition-rows",
        lambda: infer.fit_to_data(
            KEY, conditional_flow(), jnp.zeros((10, 2)), condition=jnp.zeros((9, 1))
        ),
        arg("condition") + " has 9 rows",
    ),
    case(
        "fit_to_data-checkpoint-dir",
        lambda: infer.fit_to_data(
            KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((10, 2)), checkpoint_path=tempfile.gettempdir()
        ),
        arg("checkpoint_path"),
    ),
    case(
        "fit_to_data-mesh-size",
        lambda: infer.fit_to_data(KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((10, 2)), mesh=99),
        arg("mesh"),
    ),
    case(
        "fit_to_data-mesh-type",
        lambda: infer.fit_to_data(KEY, bj.Normal(jnp.zeros(2)), jnp.zeros((10, 2)), mesh="cpu"),
        arg("mesh"),
    ),
    case(
        "fit_to_loss-steps",
        lambda: infer.fit_to_loss(KEY, bj.Normal(jnp.zeros(2)), lambda m, k: 0.0, 0),
        arg("steps"),
    ),
    case(
        "fit_to_loss-chunk-size",
        lambda: infer.fit_to_loss(KEY, bj.Normal(jnp.zeros(2)), lambda m, k: 0.0, 2, chunk_size=0),
        arg("chunk_size"),
    ),
    case(
        "fit_to_loss-checkpoint-every",
        lambda: infer.fit_to_loss(
            KEY, bj.Normal(jnp.zeros(2)), lambda m, k: 0.0, 2, checkpoint_every=0
        ),
        arg("checkpoint_every"),
    ),
    case(
        "fit_to_loss-checkpoint-options",
        lambda: infer.fit_to_loss(
            KEY, bj.Normal(jnp.zeros(2)), lambda m, k: 0.0, 2, checkpoint_options={"batch": NAN}
        ),
        arg("checkpoint_options"),
    ),
    case(
        "nuts-num-chains",
        lambda: infer.nuts(nuts_model, rng_key=KEY, num_chains=0),
        arg("num_chains"),
    ),
    case(
        "nuts-num-warmup",
        lambda: infer.nuts(nuts_model, rng_key=KEY, num_warmup=0),
        arg("num_warmup"),
    ),
    case("nuts-model", lambda: infer.nuts("model", rng_key=KEY), arg("model")),
    case(
        "nuts-acceptance",
        lambda: infer.nuts(nuts_model, rng_key=KEY, target_acceptance_rate=1.5),
        arg("target_acceptance_rate"),
    ),
    case(
        "nuts-doublings",
        lambda: infer.nuts(nuts_model, rng_key=KEY, max_num_doublings=0),
        arg("max_num_doublings"),
    ),
    case(
        "nuts-nan-observation",
        lambda: infer.nuts(normal_model, with_nan(Y5), rng_key=KEY),
        "observed site 'y'",
    ),
    case(
        "neutra-guide",
        lambda: infer.neutra(normal_model, "guide", {}, Y5, rng_key=KEY),
        arg("guide"),
    ),
    case(
        "fit_vi_restarts-num-restarts",
        lambda: infer.fit_vi_restarts(normal_model, emf.AutoEMF, Y5, num_restarts=0),
        arg("num_restarts"),
    ),
    case(
        "fit_vi_restarts-factory",
        lambda: infer.fit_vi_restarts(normal_model, "AutoEMF", Y5),
        arg("guide_factory"),
    ),
    case("batch_mesh-devices", lambda: infer.batch_mesh(0), arg("devices")),
    case("sharded_svi-svi", lambda: infer.sharded_svi("svi", 1), arg("svi")),
]

TRAIN = [
    case("to_inference_data-empty", lambda: train.to_inference_data({}), arg("draws")),
    case(
        "to_inference_data-not-mapping",
        lambda: train.to_inference_data(np.zeros((2, 3))),
        arg("draws"),
    ),
    case(
        "to_inference_data-no-chain-axis",
        lambda: train.to_inference_data({"a": np.zeros(3)}),
        "draws of site 'a'",
    ),
    case(
        "to_inference_data-leading-shapes",
        lambda: train.to_inference_data({"a": np.zeros((2, 3)), "b": np.zeros((2, 4))}),
        "draws of site 'b'",
    ),
    case(
        "to_inference_data-sample-stats",
        lambda: train.to_inference_data(
            {"a": np.zeros((2, 3))}, sample_stats={"lp": np.zeros((1, 3))}
        ),
        "sample_stats 'lp'",
    ),
    case(
        "to_inference_data-dims",
        lambda: train.to_inference_data({"a": np.zeros((2, 3, 4))}, dims={"a": ["x", "y"]}),
        arg("dims"),
    ),
    case(
        "density_to_inference_data-samples",
        lambda: train.density_to_inference_data(np.zeros((0, 2)), np.zeros(3), np.zeros((3, 2))),
        arg("samples"),
    ),
    case(
        "density_to_inference_data-observed",
        lambda: train.density_to_inference_data(np.zeros((4, 2)), np.zeros(3), np.zeros((3, 5))),
        arg("observed"),
    ),
    case(
        "density_to_inference_data-ll-shape",
        lambda: train.density_to_inference_data(np.zeros((4, 2)), np.zeros(2), np.zeros((3, 2))),
        arg("log_likelihood"),
    ),
    case(
        "density_to_inference_data-ll-inf",
        lambda: train.density_to_inference_data(
            np.zeros((4, 2)), np.array([0.0, -INF, 0.0]), np.zeros((3, 2))
        ),
        arg("log_likelihood"),
    ),
    case(
        "density_to_inference_data-event-dims",
        lambda: train.density_to_inference_data(
            np.zeros((4, 2)), np.zeros(3), np.zeros((3, 2)), event_dims=["a", "b"]
        ),
        arg("event_dims"),
    ),
    case(
        "save-directory",
        lambda: train.save(tempfile.gettempdir(), jnp.zeros(2)),
        arg("path"),
        (IsADirectoryError,),
    ),
    case(
        "load-missing",
        lambda: train.load("/nonexistent/module.eqx", jnp.zeros(2)),
        arg("path"),
        (FileNotFoundError,),
    ),
    case("load-mismatch", load_mismatched, "does not match the template module 'like'"),
    case("psis_khat-str", lambda: train.psis_khat(["a", "b"]), arg("log_weights")),
]

CASES = BIJECTORS + EMF + GP + AEF + COUPLING + DIFFUSION + INFER + TRAIN
SUBPACKAGES = {"bijectors": BIJECTORS, "emf": EMF, "gp": GP, "aef": AEF, "coupling": COUPLING}
SUBPACKAGES |= {"diffusion": DIFFUSION, "infer": INFER, "train": TRAIN}


def test_table_covers_every_subpackage_with_distinct_cases():
    """At least 8 cases per public subpackage, 110 in all, with distinct ids."""
    assert {k: len(v) >= 8 for k, v in SUBPACKAGES.items()} == dict.fromkeys(SUBPACKAGES, True)
    assert len(CASES) >= 110
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_raises_naming_the_argument(c):
    """The one bad call raises one of the expected types, naming the argument or site."""
    with pytest.raises(c.types, match=c.match):
        c.call()


# ------------------------------------------------------------- generated bijector arguments

_SPECIAL = st.sampled_from([NAN, INF, -INF, 0.0, -1.0])
_BAD_SIZES = st.one_of(st.integers(-2, 0), st.sampled_from([NAN, INF, 2.5]))


def _round_trip(b, x):
    y, ld = b.transform_and_log_det(x)
    return y, ld, *b.inverse_and_log_det(y)


def _check_round_trip(b, x, jit=False):
    """``b`` maps ``x`` to finite values and back (``jit``: as one compiled program)."""
    y, ld, xr, ild = (eqx.filter_jit(_round_trip) if jit else _round_trip)(b, x)
    assert np.all(np.isfinite(y)) and np.isfinite(ld) and np.isfinite(ild)
    np.testing.assert_allclose(xr, x, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(ld, -ild, rtol=1e-3, atol=1e-3)


@settings(max_examples=30, deadline=None)
@given(
    cls=st.sampled_from([bj.Exp, bj.Softplus, bj.Sigmoid, bj.Tanh, bj.Logit, bj.Reverse]),
    shape=st.one_of(
        st.lists(st.integers(1, 3), max_size=3),
        st.lists(st.one_of(st.integers(1, 3), _BAD_SIZES), min_size=1, max_size=3),
    ).map(tuple),
)
def test_generated_shapes_build_a_bijector_or_name_the_shape(cls, shape):
    """Any generated event shape (NaN, inf, fractional, zero or negative sizes included) either
    builds a bijector that round-trips or is refused naming 'shape'."""
    valid = all(isinstance(s, int) and s >= 1 for s in shape) and (shape or cls is not bj.Reverse)
    if not valid:
        # the jaxtyping hook (CI) samples one entry of a tuple[int, ...] when it re-checks each
        # parameter, so it may refuse a mixed tuple without naming the parameter
        hook = "Type-check error whilst checking the parameters of"
        with pytest.raises(ARG_ERRORS, match=f"{arg('shape')}|{hook}"):
            cls(shape)
        return
    x = jnp.full(shape, 0.5 if cls is bj.Logit else 0.3)
    _check_round_trip(cls(shape), x)


def _pairs(good):
    """Two-element lists of ``good`` values, or of anything (NaN, inf, zero, negative)."""
    anything = st.one_of(st.floats(-100.0, 100.0, width=32), _SPECIAL)
    return st.one_of(
        st.lists(good, min_size=2, max_size=2), st.lists(anything, min_size=2, max_size=2)
    )


@settings(max_examples=30, deadline=None)
@given(
    loc=_pairs(st.floats(-100.0, 100.0, width=32)),
    scale=_pairs(st.floats(0.01, 20.0)),
    positivity=st.sampled_from(["softplus", "exp"]),
)
def test_generated_affine_parameters_build_a_bijector_or_name_the_argument(loc, scale, positivity):
    """Affine with generated loc and scale (NaN, inf, zero, negative included) round-trips or is
    refused with a ValueError naming 'loc' or 'scale'."""
    loc, scale = np.asarray(loc, np.float32), np.asarray(scale, np.float32)
    lo, hi = (np.exp(-5.0), np.exp(3.0)) if positivity == "exp" else (1e-30, INF)
    bad = [
        name
        for name, ok in (
            ("loc", np.all(np.isfinite(loc))),
            ("scale", np.all(np.isfinite(scale) & (scale >= lo) & (scale <= hi))),
        )
        if not ok
    ]
    if bad:
        with pytest.raises(ValueError, match="|".join(arg(name) for name in bad)):
            bj.Affine(loc, scale, positivity=positivity)
        return
    _check_round_trip(bj.Affine(loc, scale, positivity=positivity), jnp.array([0.5, -1.0]))


_BAD_LAYER_OPTIONS = {
    "dim": st.one_of(st.integers(-1, 0), st.just(2.5)),
    "knots": st.one_of(st.integers(-1, 1), st.just(2.5)),
    "interval": st.one_of(st.floats(-1.0, 0.0), _SPECIAL),
    "nn_width": st.integers(-2, 0),
    "nn_depth": st.integers(-3, -1),
    "key": st.sampled_from(["int", "float", "batch"]),
}


@settings(max_examples=16, deadline=None)
@given(
    data=st.data(),
    layer=st.sampled_from(["autoregressive", "coupling"]),
    spoilt=st.sampled_from([None, *_BAD_LAYER_OPTIONS]),
)
def test_generated_layer_options_build_a_layer_or_name_the_argument(data, layer, spoilt):
    """Spline coupling / autoregressive layers with generated sizes, intervals and keys (one of
    them possibly bad) round-trip or are refused naming the bad argument."""
    # few valid structures (each compiles its own programs)
    options = {
        "dim": data.draw(st.integers(2, 3)),
        "knots": 3,
        "interval": data.draw(st.sampled_from([1.0, 3.0])),
        "nn_width": 4,
        "nn_depth": 1,
        "key": data.draw(st.sampled_from(["typed", "raw"])),
    }
    if spoilt is not None:
        bad = _BAD_LAYER_OPTIONS[spoilt]
        if spoilt == "nn_depth" and layer == "autoregressive":
            bad = st.integers(-3, 0)  # its inverse needs a hidden layer
        options[spoilt] = data.draw(bad)
    keys = {
        "typed": KEY,
        "raw": jax.random.PRNGKey(0),
        "int": 0,
        "float": jnp.zeros(2),
        "batch": jax.random.split(KEY, 2),
    }
    dim = options["dim"]

    def build():
        transformer = bj.RationalQuadraticSpline(options["knots"], options["interval"])
        nn = {"nn_width": options["nn_width"], "nn_depth": options["nn_depth"]}
        if layer == "coupling":
            return bj.Coupling(keys[options["key"]], transformer, 1, dim, **nn)
        return bj.MaskedAutoregressive(keys[options["key"]], transformer, dim, **nn)

    if spoilt is not None:
        # a coupling layer with dim < 2 leaves no valid 'untransformed_dim' either
        names = [spoilt] + (["untransformed_dim"] if spoilt == "dim" else [])
        with pytest.raises(ARG_ERRORS, match="|".join(arg(name) for name in names)):
            build()
        return
    _check_round_trip(
        perturb(build(), KEY), 0.5 * jnp.arange(dim, dtype=jnp.float32) - 0.7, jit=True
    )

"""Boundary checks of a NumPyro model's inputs: every error names the site, good models pass."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.contrib.control_flow import scan

from bayesflow_nets.emf._checks import check_learning_rate, check_model_inputs

N = 5


def hierarchical(y, group):
    """Eight-schools style: group effects in one plate, a (group × replicate) plate at dim -2."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("groups", 3):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
    sigma = numpyro.sample("sigma", dist.Exponential(1.0))
    with numpyro.plate("reps", 2, dim=-2), numpyro.plate("obs", y.shape[-1], dim=-1):
        numpyro.sample("y", dist.Normal(theta[group], sigma), obs=y)


def ar1(y):
    """AR(1) time series through ``scan`` with an observation and a deterministic per step."""
    phi = numpyro.sample("phi", dist.Uniform(-1.0, 1.0))
    s = numpyro.sample("s", dist.HalfNormal(1.0))

    def step(x_prev, y_t):
        x = numpyro.sample("x", dist.Normal(phi * x_prev, s))
        numpyro.deterministic("x2", x**2)
        numpyro.sample("y", dist.Normal(x, 0.5), obs=y_t)
        return x, None

    scan(step, 0.0, y)


def subsampled(y):
    """Mini-batch likelihood: ``plate(..., subsample_size=...)`` with ``obs=y[idx]``."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", y.shape[0], subsample_size=4) as idx:
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y[idx])


def masked(y, mask):
    """Missing data via ``obs_mask``: NaN where the mask is False is not observed."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)


def handler_masked(y, mask):
    """Missing data hidden with ``handlers.mask``."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", y.shape[0]), handlers.mask(mask=mask):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def simplex_and_cholesky(y, counts):
    """A Dirichlet and an LKJCholesky latent; observed simplices and a correlated Gaussian."""
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    chol = numpyro.sample("chol", dist.LKJCholesky(2, 2.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.MultivariateNormal(jnp.zeros(2), scale_tril=chol), obs=y)
        numpyro.sample("p", dist.Dirichlet(10.0 * w), obs=counts)


def with_factor(y):
    """``numpyro.factor`` terms, one scalar and one inside a plate."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.factor("prior_penalty", -(mu**2))
    with numpyro.plate("data", y.shape[0]):
        numpyro.factor("lik", dist.Normal(mu, 1.0).log_prob(y))


def uniform_scale(y):
    """Support of the observed site moves with a latent: data beyond the start is not an error."""
    theta = numpyro.sample("theta", dist.LogNormal(0.0, 1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Uniform(0.0, theta), obs=y)


def scalar_normal(y):
    """A batch-() distribution against vector data, with no plate: NumPyro broadcasts it."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def good_cases():
    y2 = jnp.arange(12.0).reshape(2, 6) / 6.0
    missing = jnp.array([0.3, jnp.nan, -1.0, jnp.nan])
    present = jnp.array([True, False, True, False])
    points = jnp.array([[0.1, -0.2], [1.0, 0.5], [0.0, 0.3]])
    simplices = jnp.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    return {
        "hierarchical": (hierarchical, (y2, jnp.array([0, 0, 1, 1, 2, 2]))),
        "scan": (ar1, (jnp.sin(jnp.arange(8.0)),)),
        "subsample": (subsampled, (jnp.arange(10.0),)),
        "obs_mask": (masked, (missing, present)),
        "handlers.mask": (handler_masked, (missing, present)),
        "simplex_cholesky": (simplex_and_cholesky, (points, simplices)),
        "factor": (with_factor, (jnp.arange(4.0),)),
        "latent_support": (uniform_scale, (jnp.array([3.0, 40.0]),)),
        "broadcast_batch_scalar": (scalar_normal, (jnp.arange(3.0),)),
    }


@pytest.mark.parametrize("case", sorted(good_cases()))
def test_good_models_pass(case):
    model, args = good_cases()[case]
    check_model_inputs(model, args, {})


def test_good_model_passes_strict_and_x64(strict_jax, x64):
    check_model_inputs(hierarchical, good_cases()["hierarchical"][1], {})


def test_under_jit_shapes_still_checked():
    def run(y):
        check_model_inputs(scalar_normal, (y,), {})
        return y

    jax.jit(run)(jnp.array([0.0, jnp.nan]))  # values are not known under jit
    with pytest.raises(ValueError, match="observed site 'y'"):
        jax.jit(lambda y: check_model_inputs(col_param, (y,), {}))(jnp.zeros(N))


def test_kwargs_reach_the_model():
    with pytest.raises(ValueError, match=re.escape("site 'y' has 1 non-finite")):
        check_model_inputs(scalar_normal, (), {"y": jnp.array([0.0, jnp.inf])})


# ---- discrete latent sites


def discrete_latent():
    z = numpyro.sample("z", dist.Categorical(jnp.ones(3) / 3))
    numpyro.sample("y", dist.Normal(z, 1.0), obs=1.0)


def discrete_in_scan(y):
    def step(c, y_t):
        k = numpyro.sample("k", dist.Bernoulli(0.3))
        numpyro.sample("y", dist.Normal(k, 1.0), obs=y_t)
        return c, None

    scan(step, 0.0, y)


def poisson_missing(y, mask):
    rate = numpyro.sample("rate", dist.Gamma(2.0, 1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Poisson(rate), obs=y, obs_mask=mask)


def test_discrete_latent():
    msg = r"latent site 'z' is discrete \(support IntegerInterval.*marginalise it out"
    with pytest.raises(ValueError, match=msg):
        check_model_inputs(discrete_latent, (), {})


def test_discrete_latent_in_scan():
    with pytest.raises(ValueError, match="latent site 'k' is discrete"):
        check_model_inputs(discrete_in_scan, (jnp.zeros(4),), {})


def test_discrete_missing_values_name_obs_mask_site():
    y, mask = jnp.array([1.0, 0.0, 3.0]), jnp.array([True, False, True])
    with pytest.raises(ValueError, match="'y_unobserved' .*obs_mask site 'y'.* is discrete"):
        check_model_inputs(poisson_missing, (y, mask), {})


# ---- non-finite observations


def test_nan_observation_named_with_index_and_count():
    y = jnp.zeros((2, 6)).at[1, 2].set(jnp.nan).at[1, 4].set(-jnp.inf)
    msg = "observed site 'y' has 2 non-finite value(s) (NaN or ±inf), the first at index (1, 2)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        check_model_inputs(hierarchical, (y, jnp.array([0, 0, 1, 1, 2, 2])), {})


def test_nan_in_scan_observation():
    with pytest.raises(ValueError, match=re.escape("'y' has 1 non-finite value(s)")):
        check_model_inputs(ar1, (jnp.zeros(6).at[3].set(jnp.nan),), {})


@pytest.mark.parametrize("model", [masked, handler_masked])
def test_nan_where_unmasked_is_an_error(model):
    y = jnp.array([0.3, jnp.nan, jnp.inf, jnp.nan])
    present = jnp.array([True, False, True, False])
    with pytest.raises(ValueError, match=r"has 1 non-finite .* at index \(2,\) \(inf\)"):
        check_model_inputs(model, (y, present), {})


# ---- observations outside the support


def poisson(y):
    rate = numpyro.sample("rate", dist.Gamma(2.0, 1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("counts", dist.Poisson(rate), obs=y)


def binomial(y, trials):
    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("k", dist.Binomial(trials, p), obs=y)


def test_negative_count():
    y = jnp.array([1, 0, 4, -1, 2, -3])
    msg = "observed site 'counts' has 2 value(s) outside the support IntegerNonnegative"
    with pytest.raises(ValueError, match=re.escape(msg) + r".*first at index \(3,\): -1"):
        check_model_inputs(poisson, (y,), {})


def test_fractional_count():
    with pytest.raises(ValueError, match=r"'counts' has 1 value.* index \(1,\): 2\.5"):
        check_model_inputs(poisson, (jnp.array([1.0, 2.5]),), {})


def test_count_above_fixed_trials():
    y, trials = jnp.array([1, 7, 3]), jnp.array([5, 5, 5])
    with pytest.raises(ValueError, match=r"site 'k' has 1 value.*IntegerInterval.*\(1,\): 7"):
        check_model_inputs(binomial, (y, trials), {})


def test_fixed_interval_is_checked():
    def model(y):
        numpyro.sample("s", dist.HalfNormal(1.0))
        numpyro.sample("u", dist.Uniform(0.0, 5.0), obs=y)

    with pytest.raises(ValueError, match=r"site 'u' has 1 value.*Interval.*\(2,\): 20\.0"):
        check_model_inputs(model, (jnp.array([1.0, 2.0, 20.0]),), {})


def test_bad_simplex_names_the_event():
    _, (points, simplices) = good_cases()["simplex_cholesky"]
    bad = simplices.at[2].set(jnp.array([0.5, 0.6, 0.1]))
    with pytest.raises(ValueError, match=r"site 'p' has 1 value.*Simplex.*\(2,\): \[0\.5, 0\.6"):
        check_model_inputs(simplex_and_cholesky, (points, bad), {})


def test_masked_entries_outside_support_are_ignored():
    y, mask = jnp.array([1.0, -4.0]), jnp.array([True, False])

    def model(y):
        rate = numpyro.sample("rate", dist.Gamma(2.0, 1.0))
        with numpyro.plate("data", 2), handlers.mask(mask=mask):
            numpyro.sample("counts", dist.Poisson(rate), obs=y)

    check_model_inputs(model, (y,), {})


# ---- shapes


def col_param(y):
    """Parameters of shape (n, 1) against data of shape (n,) inside a plate: broadcast to (n, n)."""
    mu = numpyro.sample("mu", dist.Normal(jnp.zeros((N, 1)), 1.0).to_event(2))
    with numpyro.plate("data", N):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_column_parameter_in_plate():
    msg = "observed site 'y': value shape (5,), distribution shape (5, 5)"
    with pytest.raises(ValueError, match=re.escape(msg) + ".*scored more than once"):
        check_model_inputs(col_param, (jnp.zeros(N),), {})


def test_column_parameter_without_plate():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(jnp.zeros((N, 1)), 1.0).to_event(2))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    msg = "observed site 'y': value shape (5,), distribution shape (5, 1) (event shape ())"
    with pytest.raises(ValueError, match=re.escape(msg) + r" broadcast to \(5, 5\)"):
        check_model_inputs(model, (jnp.zeros(N),), {})


def test_data_at_wrong_plate_dim():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", N, dim=-2):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(ValueError, match=re.escape("value shape (5,), distribution shape (5, 1)")):
        check_model_inputs(model, (jnp.zeros(N),), {})


def test_parameter_does_not_match_plate_raised_while_tracing():
    # NumPyro itself raises "Incompatible shapes for broadcasting" here, without the site
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(jnp.zeros(3), 1.0).to_event(1))
        with numpyro.plate("data", N):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    msg = "site 'y': distribution shape (3,) (batch (3,), event (), observed value shape (5,))"
    with pytest.raises(ValueError, match=re.escape(msg) + r".*plate shape \(5,\) of plates 'data'"):
        check_model_inputs(model, (jnp.zeros(N),), {})


def test_plate_mismatch_inside_scan():
    def model(y):
        def step(c, y_t):
            with numpyro.plate("k", 3):
                numpyro.sample("x", dist.Normal(jnp.zeros(2), 1.0))
            return c, None

        scan(step, 0.0, y)

    with pytest.raises(
        ValueError, match=r"site 'x': distribution shape \(2,\).*plate shape \(3,\)"
    ):
        check_model_inputs(model, (jnp.zeros(4),), {})


def test_full_data_in_subsampled_plate():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", y.shape[0], subsample_size=4):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    msg = "observed site 'y': value shape (10,), distribution shape (4,) (event shape ()) do not"
    with pytest.raises(ValueError, match=re.escape(msg)):
        check_model_inputs(model, (jnp.arange(10.0),), {})


def test_event_shape_mismatch():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(jnp.zeros(3), 1.0).to_event(1))
        numpyro.sample("y", dist.MultivariateNormal(mu, jnp.eye(3)), obs=y)

    msg = "observed site 'y': value shape (4, 2), distribution shape (3,) (event shape (3,))"
    with pytest.raises(ValueError, match=re.escape(msg)):
        check_model_inputs(model, (jnp.zeros((4, 2)),), {})


def test_other_tracing_error_names_the_last_site():
    def model():
        numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(jnp.zeros(3), jnp.ones(4)), obs=0.0)

    with pytest.raises(ValueError, match="tracing the model failed after site 'mu'"):
        check_model_inputs(model, (), {})


# ---- learning rate


@pytest.mark.parametrize(
    "value", [0.0, -1e-3, float("nan"), float("inf"), "0.01", True, None, np.array([1e-3])]
)
def test_bad_learning_rate(value):
    with pytest.raises(ValueError, match=r"argument 'learning_rate' must be a finite number > 0"):
        check_learning_rate(value)


def test_bad_learning_rate_names_the_argument():
    with pytest.raises(ValueError, match=r"argument 'gate_learning_rate' .* got -0\.5"):
        check_learning_rate(-0.5, "gate_learning_rate")


@pytest.mark.parametrize("value", [1e-3, 1, np.float32(0.1), jnp.asarray(0.01), np.asarray(2e-3)])
def test_good_learning_rate(value):
    check_learning_rate(value)

"""``to_inference_data``: dims/coords from plates, groups, attributes; every fitter's to_arviz."""

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDiagonalNormal

from bayesflow_nets.emf import AutoEMF, VIResult, fit_vi
from bayesflow_nets.infer import model_dims, to_inference_data

matplotlib.use("Agg")

SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])


def plated(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(5.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    with numpyro.plate("school", len(sigma)):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(theta + jnp.sum(beta), sigma), obs=y)


def nested():
    with numpyro.plate("group", 2, dim=-2):
        with numpyro.plate("item", 3, dim=-1):
            numpyro.sample("z", dist.Normal(0.0, 1.0))


def _draws(shapes, chains=2, draws=50, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=(chains, draws) + s) for k, s in shapes.items()}


def test_dims_and_coords_from_plates():
    draws = _draws({"mu": (), "tau": (), "beta": (3,), "theta_trans": (8,), "theta": (8,)})
    draws["tau"] = np.abs(draws["tau"])
    idata = to_inference_data(
        draws, plated, (SIGMA,), {"y": Y}, sample_stats={"lp": np.zeros((2, 50))}
    )
    assert set(idata.groups()) == {"posterior", "sample_stats", "observed_data"}
    post = idata.posterior
    assert post["theta"].dims == ("chain", "draw", "school")
    assert post["theta_trans"].dims == ("chain", "draw", "school")
    assert post["beta"].dims == ("chain", "draw", "beta_dim_0")
    assert post["mu"].dims == ("chain", "draw")
    np.testing.assert_array_equal(post.coords["school"].values, np.arange(8))
    np.testing.assert_array_equal(post["theta"].values, draws["theta"])
    assert idata.observed_data["y"].dims == ("school",)
    np.testing.assert_array_equal(idata.observed_data["y"].values, Y)
    assert idata.sample_stats["lp"].shape == (2, 50)


def test_nested_plates_and_user_coords():
    draws = _draws({"z": (2, 3)})
    dims, coords, observed = model_dims(nested, draws)
    assert dims == {"z": ["group", "item"]} and observed == {}
    names = ["a", "b", "c"]
    idata = to_inference_data(draws, nested, coords={"item": names})
    assert idata.posterior["z"].dims == ("chain", "draw", "group", "item")
    assert list(idata.posterior.coords["item"].values) == names
    # explicit dims win over plate names
    idata = to_inference_data(draws, nested, dims={"z": ["g", "i"]})
    assert idata.posterior["z"].dims == ("chain", "draw", "g", "i")


def test_without_model_uses_arviz_default_dims():
    idata = to_inference_data(_draws({"w": (4,)}), attrs={"khat": 0.3, "note": None})
    assert idata.posterior["w"].dims == ("chain", "draw", "w_dim_0")
    assert idata.posterior.attrs["khat"] == 0.3 and "note" not in idata.posterior.attrs


def test_bad_draws_are_rejected():
    with pytest.raises(TypeError, match="'draws' must be a non-empty mapping"):
        to_inference_data({})
    with pytest.raises(ValueError, match="site 'w' must have shape \\(chain, draw, ...\\)"):
        to_inference_data({"w": np.zeros(5)})
    with pytest.raises(ValueError, match="site 'b' have leading shape"):
        to_inference_data({"a": np.zeros((2, 5)), "b": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="sample_stats 'lp' must have leading shape"):
        to_inference_data({"a": np.zeros((2, 5))}, sample_stats={"lp": np.zeros((1, 5))})


def _check_vi_idata(idata, res):
    assert set(idata.groups()) == {"posterior", "sample_stats", "observed_data"}
    post = idata.posterior
    assert set(post.data_vars) == {"mu", "tau", "beta", "theta_trans", "theta"}
    assert post["theta"].shape == (2, 100, 8) and post["theta"].dims[2] == "school"
    assert post["beta"].dims[2] == "beta_dim_0"
    for v in post.data_vars.values():
        assert np.all(np.isfinite(v.values))
    # the deterministic site agrees with its definition draw by draw
    np.testing.assert_allclose(
        post["theta"].values,
        post["mu"].values[..., None] + post["tau"].values[..., None] * post["theta_trans"].values,
        rtol=1e-5,
        atol=1e-5,
    )
    lw = idata.sample_stats["log_weight"].values
    assert lw.shape == (2, 100) and np.all(np.isfinite(lw))
    np.testing.assert_allclose(post.attrs["elbo"], res.elbo)
    np.testing.assert_allclose(post.attrs["khat"], res.khat)


def test_vi_result_to_arviz_and_plots():
    # VIResult.to_arviz on guide parameters at initialisation (fit_vi itself: slow test below)
    guide = AutoDiagonalNormal(plated)
    svi = SVI(plated, guide, numpyro.optim.Adam(1e-3), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.key(0), SIGMA, y=Y))
    res = VIResult(
        plated, guide, params, np.zeros(1), -40.0, 0.1, 0.5, "test", 0, 0.0, (SIGMA,), {"y": Y}
    )
    idata = res.to_arviz(jax.random.key(1), 100, num_chains=2)
    _check_vi_idata(idata, res)
    summary = az.summary(idata, var_names=["mu", "theta"])
    assert list(summary.index[:2]) == ["mu", "theta[0]"]
    assert np.all(np.isfinite(summary["mean"].values))
    import matplotlib.pyplot as plt

    az.plot_trace(idata, var_names=["mu", "tau"])
    az.plot_posterior(idata, var_names=["mu"])
    plt.close("all")
    with pytest.raises(ValueError, match="'n' and 'num_chains' must be >= 1"):
        res.to_arviz(n=0)


@pytest.mark.slow
def test_fit_vi_autoemf_to_arviz():
    res = fit_vi(
        plated,
        AutoEMF(plated),
        SIGMA,
        y=Y,
        rng_key=jax.random.key(0),
        progress=False,
        num_steps=1000,
        min_steps=500,
    )
    idata = res.to_arviz(jax.random.key(1), 100, num_chains=2)
    _check_vi_idata(idata, res)
    # importance log-weights of a fitted guide average to about the reported ELBO
    lw = idata.sample_stats["log_weight"].values
    np.testing.assert_allclose(lw.mean(), res.elbo, atol=6 * lw.std() / np.sqrt(lw.size) + 0.05)


def test_coupling_posterior_to_arviz_groups_and_coords():
    from bayesflow_nets.coupling import CouplingPosterior

    draws = np.random.default_rng(0).normal(size=(300, 3, 3))
    idata = CouplingPosterior(draws, "hybrid", ("a", "b", "c")).to_arviz()
    assert idata.groups() == ["posterior"]
    assert idata.posterior["A"].dims == ("chain", "draw", "target", "source")
    assert list(idata.posterior.coords["source"].values) == ["a", "b", "c"]
    assert np.all(np.isfinite(idata.posterior["A"].values))


@pytest.mark.slow
def test_hybrid_vi_fit_to_arviz():
    from bayesflow_nets.coupling import (
        CouplingModel,
        HybridVI,
        MeasurementPosterior,
        sample_prior,
        simulate,
    )

    model = CouplingModel(n_nodes=2, tr=2.0, max_delay=3.0)
    post = MeasurementPosterior(jax.random.key(0), model, flow_layers=2, nn_width=16)
    p = sample_prior(jax.random.key(1), model)
    _, Y2 = simulate(jax.random.key(2), p, model, 64)
    hv = HybridVI(model, post, n_hp_draws=2, vi_steps=20, draws_per_component=100)
    res = hv.fit(np.asarray(Y2), 2.0, key=jax.random.key(3), node_names=["v1", "mt"])
    idata = res.to_arviz()
    assert idata.posterior["A"].shape == (1, 200, 2, 2)
    assert list(idata.posterior.coords["target"].values) == ["v1", "mt"]
    assert np.all(np.isfinite(idata.posterior["A"].values))
    assert az.summary(idata).shape[0] == 4

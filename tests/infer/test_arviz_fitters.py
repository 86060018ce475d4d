"""``.to_arviz()`` of every fitter not covered in test_arviz.py: density models (EMF density,
AEF, VAE), REML hyperparameters (Laplace, NUTS), HybridVI results, VI restarts as chains."""

import warnings

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from numpyro.infer.autoguide import AutoDiagonalNormal

from bayesflow_nets import aef
from bayesflow_nets.data import eight_schools, eight_schools_noncentered
from bayesflow_nets.emf import EMFDensity
from bayesflow_nets.gp import Brownian, ImproperGP, REMLFitResult, fit_reml
from bayesflow_nets.infer import density_to_inference_data, fit_vi_restarts, nuts

matplotlib.use("Agg")


def _netcdf_round_trip(idata, path):
    idata.to_netcdf(path)
    back = az.from_netcdf(path)
    assert set(back.groups()) == set(idata.groups())
    for group in idata.groups():
        for name, v in getattr(idata, group).data_vars.items():
            np.testing.assert_array_equal(getattr(back, group)[name].values, v.values)


def _no_nan(ds):
    for name, v in ds.data_vars.items():
        assert np.all(np.isfinite(v.values)), name


# --------------------------------------------------------------------------- density models
def test_density_converter_groups_dims_and_waic():
    rng = np.random.default_rng(0)
    ll = rng.normal(size=7) - 3.0
    idata = density_to_inference_data(
        rng.normal(size=(40, 3)),
        ll,
        rng.normal(size=(7, 3)),
        coords={"x_dim_0": ["a", "b", "c"]},
        constant_data={"step": np.array(0.25)},
        attrs={"model": "test", "skipped": None},
    )
    assert set(idata.groups()) == {
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "constant_data",
    }
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "x_dim_0")
    assert idata.posterior_predictive["x"].shape == (1, 40, 3)
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "obs")
    assert idata.observed_data["x"].dims == ("obs", "x_dim_0")
    assert list(idata.observed_data.coords["x_dim_0"].values) == ["a", "b", "c"]
    assert idata.constant_data["step"].shape == ()
    attrs = idata.log_likelihood.attrs
    assert attrs["model"] == "test" and "skipped" not in attrs
    np.testing.assert_allclose(attrs["elpd"], ll.sum())
    # one draw: WAIC's elpd is the held-out log-likelihood, with no effective-parameter penalty
    waic = az.waic(idata)
    np.testing.assert_allclose(waic.elpd_waic, ll.sum(), rtol=1e-10)
    np.testing.assert_allclose(waic.p_waic, 0.0, atol=1e-12)
    az.plot_ppc(idata, num_pp_samples=10)
    plt.close("all")
    with pytest.raises(ValueError, match="'log_likelihood' must have shape \\(7,\\)"):
        density_to_inference_data(np.zeros((4, 3)), np.zeros(6), np.zeros((7, 3)))
    with pytest.raises(ValueError, match="'observed' must have shape"):
        density_to_inference_data(np.zeros((4, 3)), np.zeros(7), np.zeros((7, 2)))
    with pytest.raises(ValueError, match="1 non-finite value"):
        density_to_inference_data(np.zeros((4, 3)), np.r_[np.zeros(6), np.nan], np.zeros((7, 3)))


def _program():
    step = numpyro.param("step", 0.5, constraint=constraints.positive)
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    numpyro.sample("b", dist.Normal(a, step).expand([2]).to_event(1))


def test_emf_density_to_arviz(tmp_path):
    model = EMFDensity(_program, "normal", key=jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(12, 3)), dtype=jnp.float32)
    idata = model.to_arviz(x, jax.random.key(2), 50)
    assert set(idata.groups()) == {
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "constant_data",
    }
    pp = idata.posterior_predictive["x"]
    assert pp.dims == ("chain", "draw", "element") and pp.shape == (1, 50, 3)
    assert list(pp.coords["element"].values) == ["a", "b[0]", "b[1]"]
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0, 0], model.log_prob(x), rtol=1e-5)
    np.testing.assert_allclose(idata.observed_data["x"].values, x)
    np.testing.assert_allclose(idata.constant_data["step"].values, 0.5, rtol=1e-6)
    for group in ("posterior_predictive", "log_likelihood", "observed_data"):
        _no_nan(getattr(idata, group))
    np.testing.assert_allclose(
        az.waic(idata).elpd_waic, float(jnp.sum(model.log_prob(x))), rtol=1e-5
    )
    _netcdf_round_trip(idata, tmp_path / "emf.nc")
    with pytest.raises(ValueError, match="'x' must be held-out data of shape \\(n_obs, 3\\)"):
        model.to_arviz(x[:, :2])
    with pytest.raises(ValueError, match="'n' must be an int >= 1"):
        model.to_arviz(x, n=0)


SHAPE, LATENT = (1, 4, 4), 2


@eqx.filter_jit
def _aef_models(key):
    k = jax.random.split(key, 7)

    def nets(i):
        return (
            aef.MLPEncoder(k[i], SHAPE, LATENT, width=8, depth=1),
            aef.MLPDecoder(k[i + 1], SHAPE, LATENT, width=8, depth=1),
        )

    partition = aef.PartitionAEF(*nets(0), SHAPE, LATENT, preprocess=None)
    expansion = aef.ExpansionAEF(*nets(2), SHAPE, LATENT, key=k[6], preprocess=None)
    vae = aef.VAE(*nets(4), SHAPE, LATENT, preprocess=None)
    return partition, expansion, vae


def test_aef_and_vae_to_arviz():
    partition, expansion, vae = _aef_models(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(3).uniform(0.05, 0.95, (5,) + SHAPE), jnp.float32)
    key = jax.random.key(4)

    @eqx.filter_jit
    def references(models, x, k):  # one compilation for the three reference log-likelihoods
        p, e, v = models
        return p.log_prob(x), e.log_prob_is(x, k, 16, 0.1), v.log_prob_iwae(x, k, 16)

    refs = references((partition, expansion, vae), x, jax.random.split(key)[0])
    expected = {
        "PartitionAEF": (partition, refs[0]),
        "ExpansionAEF": (expansion, refs[1]),
        "VAE": (vae, refs[2]),
    }
    for name, (model, ll) in expected.items():
        kw = {} if name == "PartitionAEF" else {"num_samples": 16}
        idata = model.to_arviz(x, key, 6, **kw)
        assert set(idata.groups()) == {"posterior_predictive", "log_likelihood", "observed_data"}
        pp = idata.posterior_predictive["x"]
        assert pp.dims == ("chain", "draw", "channel", "row", "col") and pp.shape == (1, 6, 1, 4, 4)
        assert idata.observed_data["x"].dims == ("obs", "channel", "row", "col")
        np.testing.assert_array_equal(idata.log_likelihood.coords["obs"].values, np.arange(5))
        np.testing.assert_allclose(
            idata.log_likelihood["x"].values[0, 0], ll, rtol=1e-5, err_msg=name
        )
        assert idata.log_likelihood.attrs["model"] == name
        for group in idata.groups():
            _no_nan(getattr(idata, group))
    assert "K=16" in idata.log_likelihood.attrs["log_likelihood_estimator"]
    with pytest.raises(ValueError, match="'x' must be held-out images of shape"):
        partition.to_arviz(x[0])


# --------------------------------------------------------------------------- improper GP
def _walk_data(n=80, seed=5):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 20, n))
    f = np.cumsum(np.sqrt(np.diff(np.concatenate([[0.0], x])) * 0.5) * rng.normal(size=n))
    return jnp.asarray(x), jnp.asarray(f + 0.2 * rng.normal(size=n))


def test_reml_to_arviz_laplace(x64, tmp_path):
    x, y = _walk_data()
    res = fit_reml(ImproperGP(Brownian(2.0), x, 0.3), y, steps=60)
    point = res.hyperparameters()
    assert set(point) == {"variance", "noise"}
    np.testing.assert_allclose(point["variance"], res.gp.kernel.variance)
    idata = res.to_arviz(jax.random.key(0), 4000)
    assert set(idata.groups()) == {"posterior", "sample_stats"}
    post = idata.posterior
    assert post["variance"].dims == ("chain", "draw") and post["variance"].shape == (1, 4000)
    assert post["noise"].shape == (1, 4000)  # a scalar noise leaf
    _no_nan(post)
    _no_nan(idata.sample_stats)
    attrs = post.attrs
    assert attrs["hessian_positive_definite"] and attrs["point_estimate"] == "REML"
    np.testing.assert_allclose(attrs["reml_variance"], point["variance"])
    np.testing.assert_allclose(
        attrs["log_marginal_likelihood"], res.gp.log_marginal_likelihood(y), rtol=1e-10
    )
    assert attrs["khat"] < 0.7  # two well-identified hyperparameters: near-Gaussian in log space
    # independent check of the covariance: central finite differences of the REML surface
    theta0 = np.log([float(point["variance"]), float(point["noise"])])

    def reml(t):
        return float(ImproperGP(Brownian(np.exp(t[0])), x, np.exp(t[1])).log_marginal_likelihood(y))

    h, H = 1e-3, np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h, np.eye(2)[j] * h
            H[i, j] = -(
                reml(theta0 + ei + ej)
                - reml(theta0 + ei - ej)
                - reml(theta0 - ei + ej)
                + reml(theta0 - ei - ej)
            ) / (4 * h * h)
    logs = np.stack([np.log(post["variance"].values[0]), np.log(post["noise"].values[0])])
    np.testing.assert_allclose(np.cov(logs), np.linalg.inv(H), rtol=0.1, atol=1e-4)
    se = np.sqrt(np.diag(np.linalg.inv(H)) / 4000)
    np.testing.assert_allclose(logs.mean(axis=1), theta0, atol=4 * float(se.max()))
    # lp is the REML at each draw
    v, s2 = post["variance"].values[0, 0], post["noise"].values[0, 0]
    np.testing.assert_allclose(
        idata.sample_stats["lp"].values[0, 0], reml(np.log([v, s2])), rtol=1e-8
    )
    summary = az.summary(idata, kind="stats")
    assert list(summary.index) == ["variance", "noise"]
    az.plot_trace(idata)
    az.plot_posterior(idata)
    plt.close("all")
    _netcdf_round_trip(idata, tmp_path / "gp.nc")
    # the point estimate alone
    one = res.to_arviz(laplace=False)
    np.testing.assert_allclose(one.posterior["variance"].values, [[point["variance"]]])
    with pytest.raises(ValueError, match="needs the data"):
        REMLFitResult(res.gp, res.losses, res.status, 0).to_arviz()
    with pytest.raises(ValueError, match="'num_draws' must be an int >= 1"):
        res.to_arviz(num_draws=0)


def _gp_model(x, y=None):
    """Hyperparameters sampled (log-normal priors), REML likelihood from ``numpyro_dist``."""
    variance = numpyro.sample("variance", dist.LogNormal(0.0, 1.0))
    noise = numpyro.sample("noise", dist.LogNormal(-2.0, 1.0))
    gp = ImproperGP(Brownian(variance), x, noise)
    numpyro.sample("y", gp.numpyro_dist(), obs=y)


@pytest.mark.slow
def test_gp_hyperparameters_with_nuts(x64):
    x, y = _walk_data(n=40)
    idata = nuts(_gp_model, x, y=y, rng_key=jax.random.key(1), num_chains=2, num_warmup=150,
                 num_samples=150)
    assert set(idata.groups()) == {"posterior", "sample_stats", "observed_data"}
    assert idata.observed_data["y"].shape == (40,)
    _no_nan(idata.posterior)
    summary = az.summary(idata, var_names=["variance", "noise"])
    assert np.all(summary["r_hat"] < 1.1)
    # the NUTS posterior sits around the REML point (weak priors, 40 points)
    reml = fit_reml(ImproperGP(Brownian(1.0), x, 0.1), y, steps=60).hyperparameters()
    for name in ("variance", "noise"):
        med = float(idata.posterior[name].median())
        assert 0.4 < med / float(np.ravel(reml[name])[0]) < 2.5, name


# --------------------------------------------------------------------------- HybridVI result
def test_coupling_posterior_uses_the_shared_converter():
    from bayesflow_nets.coupling import CouplingPosterior

    rng = np.random.default_rng(0)
    draws = rng.normal(size=(400, 2, 2))
    post = CouplingPosterior(draws, "hybrid", ("v1", "mt"), rng.uniform(size=(4, 2)))
    idata = post.to_arviz(num_chains=2)
    A = idata.posterior["A"]
    assert A.dims == ("chain", "draw", "target", "source") and A.shape == (2, 200, 2, 2)
    np.testing.assert_array_equal(A.values.reshape(400, 2, 2), draws)
    assert list(A.coords["source"].values) == ["v1", "mt"]
    attrs = idata.posterior.attrs
    assert attrs["method"] == "hybrid" and attrs["num_components"] == 4
    assert attrs["inference_library"] == "bayesflow_nets.coupling"
    assert az.summary(idata, kind="stats").shape[0] == 4
    with pytest.raises(ValueError, match="'num_chains' must be an int >= 1 dividing the 400"):
        post.to_arviz(num_chains=3)


# --------------------------------------------------------------------------- VI restarts
def test_fit_vi_restarts_form_chains(tmp_path):
    d = eight_schools()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # k̂ warnings of the short fits
        idata = fit_vi_restarts(
            eight_schools_noncentered,
            AutoDiagonalNormal,
            d["sigma"],
            y=d["y"],
            num_restarts=2,
            rng_key=jax.random.key(0),
            num_draws=200,
            num_steps=400,
            chunk=100,
            min_steps=400,
            learning_rate=0.05,
            num_particles=4,
            num_eval=200,
            init="default",
            progress=False,
        )
    assert set(idata.groups()) == {"posterior", "sample_stats", "observed_data"}
    post = idata.posterior
    assert post["theta"].dims == ("chain", "draw", "school") and post["theta"].shape == (2, 200, 8)
    _no_nan(post)
    _no_nan(idata.sample_stats)
    attrs = post.attrs
    assert attrs["num_restarts"] == 2 and len(attrs["khat"]) == 2 and len(attrs["elbo"]) == 2
    assert not any(k.startswith("combined_") for k in attrs)
    # restarts are independent fits (different keys), not copies
    assert attrs["elbo"][0] != attrs["elbo"][1]
    np.testing.assert_allclose(
        idata.sample_stats["restart_elbo"].values[:, 0], attrs["elbo"], rtol=1e-12
    )
    # converged mean-field fits agree: between-restart R̂ ≈ 1
    summary = az.summary(idata, var_names=["mu", "tau"])
    assert np.all(summary["r_hat"] < 1.05), summary
    az.plot_trace(idata, var_names=["mu", "tau"])
    plt.close("all")
    _netcdf_round_trip(idata, tmp_path / "restarts.nc")
    with pytest.raises(ValueError, match="'num_restarts' must be an int >= 1"):
        fit_vi_restarts(eight_schools_noncentered, AutoDiagonalNormal, d["sigma"], num_restarts=0)
    with pytest.raises(TypeError, match="guide_factory"):
        fit_vi_restarts(eight_schools_noncentered, "AutoEMF", d["sigma"])

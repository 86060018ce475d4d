"""Training loops and checkpoints."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bayesflow_nets.bijectors as bj
from bayesflow_nets.infer import fit_to_data, fit_to_loss, load, save

from ..helpers import copy_checkpoint_at


def test_fit_to_data_recovers_gaussian_mle():
    key = jax.random.key(0)
    loc, scale = jnp.array([1.0, -0.5]), jnp.array([2.0, 0.5])
    x = loc + scale * jax.random.normal(key, (4000, 2))
    dist = bj.Normal(jnp.zeros(2), 1.0)
    res = fit_to_data(
        key, dist, x, learning_rate=5e-2, max_epochs=60, batch_size=200, progress=False
    )
    # MLE of a Gaussian = sample moments of the training split (close to the full-sample moments).
    np.testing.assert_allclose(res.model.loc, x.mean(0), atol=0.05)
    np.testing.assert_allclose(res.model.scale, x.std(0), rtol=0.03)
    assert res.losses["train"].shape == res.losses["val"].shape
    assert res.status in {"converged", "max_steps"}
    assert np.all(np.isfinite(res.losses["val"]))
    nll = float(-res.model.log_prob(x).mean())
    exact = float(-jax.scipy.stats.norm.logpdf(x, x.mean(0), x.std(0)).sum(-1).mean())
    assert exact <= nll < exact + 0.01


def test_fit_to_data_conditional_flow():
    key = jax.random.key(1)
    c = jax.random.uniform(key, (3000, 1), minval=-2, maxval=2)
    x = 2.0 * c + 0.3 * jax.random.normal(jax.random.key(2), (3000, 1))
    flow = bj.masked_autoregressive_flow(
        key, base_dist=bj.StandardNormal((1,)), cond_dim=1, flow_layers=2, nn_width=16
    )
    res = fit_to_data(key, flow, x, condition=c, learning_rate=5e-3, max_epochs=40, progress=False)
    nll = float(-res.model.log_prob(x, c).mean())
    exact = float(-jax.scipy.stats.norm.logpdf(x, 2.0 * c, 0.3).mean())
    assert nll < exact + 0.1


def test_fit_to_data_bad_input():
    dist = bj.Normal(jnp.zeros(2), 1.0)
    with pytest.raises(ValueError, match="argument 'data' must have shape"):
        fit_to_data(jax.random.key(0), dist, jnp.zeros((10, 3)), progress=False)
    with pytest.raises(ValueError, match="argument 'data' contains non-finite"):
        fit_to_data(jax.random.key(0), dist, jnp.full((10, 2), jnp.nan), progress=False)
    with pytest.raises(ValueError, match="argument 'val_prop'"):
        fit_to_data(jax.random.key(0), dist, jnp.zeros((10, 2)), val_prop=1.5, progress=False)


def test_fit_to_loss_minimises():
    target = jnp.array([3.0, -1.0])

    def loss(m, key):
        eps = jax.random.normal(key, (64, 2))
        return jnp.mean(jnp.sum((m.loc + eps - target) ** 2, -1))

    opt = optax.adam(optax.exponential_decay(0.05, 600, 0.01))
    res = fit_to_loss(
        jax.random.key(0), bj.Normal(jnp.zeros(2)), loss, 600, optimizer=opt, progress=False
    )
    np.testing.assert_allclose(res.model.loc, target, atol=0.05)
    assert res.status == "max_steps" and res.losses["train"].shape == (600,)


def test_nonfinite_loss_stops_and_keeps_last_finite_params():
    def loss(m, key):
        # Finite while loc > 0.5; gradient steps push loc down until the loss becomes NaN.
        val = jnp.sum(m.loc**2)
        return jnp.where(jnp.all(m.loc > 0.5), val, jnp.nan)

    res = fit_to_loss(
        jax.random.key(0),
        bj.Normal(jnp.ones(2)),
        loss,
        500,
        learning_rate=0.01,
        chunk_size=64,
        progress=False,
    )
    assert res.status == "nonfinite"
    assert 0 < res.stopped_at < 500
    assert "step" in res.message
    assert bool(jnp.all(res.model.loc > 0.5)) and bool(jnp.all(jnp.isfinite(res.model.loc)))
    assert res.losses["train"].shape == (res.stopped_at,)
    assert np.all(np.isfinite(res.losses["train"]))


def test_save_load_round_trip_and_mismatch(tmp_path):
    flow = bj.masked_autoregressive_flow(
        jax.random.key(0), base_dist=bj.StandardNormal((3,)), flow_layers=2, nn_width=8
    )
    flow = jax.tree_util.tree_map(lambda a: a + 0.1 if eqx.is_inexact_array(a) else a, flow)
    path = save(tmp_path / "flow.eqx", flow)
    like = bj.masked_autoregressive_flow(
        jax.random.key(1), base_dist=bj.StandardNormal((3,)), flow_layers=2, nn_width=8
    )
    loaded = load(path, like)
    x = jnp.ones((4, 3))
    np.testing.assert_allclose(loaded.log_prob(x), flow.log_prob(x), rtol=1e-6)
    assert not list(tmp_path.glob("*.tmp"))
    wrong = bj.masked_autoregressive_flow(
        jax.random.key(1), base_dist=bj.StandardNormal((3,)), flow_layers=2, nn_width=16
    )
    before = open(path, "rb").read()
    with pytest.raises(ValueError, match="does not match the template module"):
        load(path, wrong)
    fewer = bj.Normal(jnp.zeros(3))
    with pytest.raises(ValueError, match="does not match the template module"):
        load(path, fewer)
    assert open(path, "rb").read() == before
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load(tmp_path / "missing.eqx", like)


def _copy_at(monkeypatch, call: int, dest):
    """Copy the checkpoint to ``dest`` after its ``call``-th write; returns the undo."""
    import bayesflow_nets.infer._fit as fit_module

    original = fit_module.save_progress
    copy_checkpoint_at(monkeypatch, fit_module, call, dest)
    return lambda: monkeypatch.setattr(fit_module, "save_progress", original)


def test_fit_to_loss_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    def loss(m, key):
        return jnp.sum((m.loc - 3.0) ** 2) + 0.1 * jnp.sum(jax.random.normal(key, (3,)) * m.loc)

    module = bj.Affine(jnp.zeros(3), jnp.ones(3))
    key, path, midway = jax.random.key(0), tmp_path / "a.ckpt", tmp_path / "mid.ckpt"
    restore = _copy_at(monkeypatch, 3, midway)
    opts = dict(steps=1000, chunk_size=100, progress=False)
    full = fit_to_loss(key, module, loss, checkpoint=path, **opts)
    restore()
    resumed = fit_to_loss(key, module, loss, checkpoint=midway, **opts)
    np.testing.assert_array_equal(resumed.losses["train"], full.losses["train"])
    np.testing.assert_array_equal(resumed.model.loc, full.model.loc)
    assert resumed.status == full.status == "max_steps"
    with pytest.raises(ValueError, match="other options.*steps"):
        fit_to_loss(key, module, loss, checkpoint=path, **{**opts, "steps": 900})


def test_fit_to_data_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)) * np.array([0.5, 2.0]) + np.array([1.0, -1.0])
    flow = bj.Transformed(bj.StandardNormal((2,)), bj.Affine(jnp.zeros(2), jnp.ones(2)))
    key, path, midway = jax.random.PRNGKey(1), tmp_path / "a.ckpt", tmp_path / "mid.ckpt"
    restore = _copy_at(monkeypatch, 4, midway)
    opts = dict(max_epochs=12, batch_size=50, learning_rate=0.05, progress=False)
    full = fit_to_data(key, flow, x, checkpoint=path, **opts)
    restore()
    resumed = fit_to_data(key, flow, x, checkpoint=midway, **opts)
    for name in ("train", "val"):
        np.testing.assert_array_equal(resumed.losses[name], full.losses[name])
    np.testing.assert_array_equal(resumed.model.bijector.loc, full.model.bijector.loc)
    assert resumed.status == full.status and resumed.message == full.message
    again = fit_to_data(key, flow, x, checkpoint=path, **opts)  # finished: no training
    np.testing.assert_array_equal(again.model.bijector.loc, full.model.bijector.loc)
    with pytest.raises(ValueError, match="other options.*max_epochs"):
        fit_to_data(key, flow, x, checkpoint=path, **{**opts, "max_epochs": 13})

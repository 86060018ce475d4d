"""Stage-1 training checkpoints: a run resumed midway ends where the uninterrupted run ends."""

import equinox as eqx
import jax
import numpy as np
import pytest

import bayesflow_nets.infer._fit as fit_module
from bayesflow_nets.coupling import (
    CouplingModel,
    MeasurementPosterior,
    train_measurement_posterior,
)
from bayesflow_nets.train import save

from ..helpers import assert_same_arrays, copy_checkpoint_at


def _copy_at(monkeypatch, write: int, dest) -> list:
    return copy_checkpoint_at(monkeypatch, fit_module, write, dest)


def _assert_same(a, b):
    assert_same_arrays(a, b)


def test_stage1_training_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    model = CouplingModel(n_nodes=2, tr=2.0, max_delay=2.0, hrf_length=8.0, burn_in=3)
    small = dict(summary_width=8, context_dim=4, flow_layers=1, nn_width=8, chain_dim=4)
    post = MeasurementPosterior(jax.random.key(1), model, **small)
    opts = dict(steps=6, batch_size=4, chunk_size=2, posterior=post, progress=False)
    key, n_time = jax.random.key(0), 16
    path, midway = tmp_path / "run.ckpt", tmp_path / "midway.ckpt"
    with monkeypatch.context() as m:
        writes = _copy_at(m, 1, midway)  # after the first of three chunks
        full, full_losses = train_measurement_posterior(key, model, n_time, checkpoint=path, **opts)
    with monkeypatch.context() as m:
        resumed_writes = _copy_at(m, 0, None)
        resumed, losses = train_measurement_posterior(key, model, n_time, checkpoint=midway, **opts)
    assert (len(writes), len(resumed_writes)) == (4, 3)  # resumed midway
    assert losses.shape == (6,) and np.all(np.isfinite(losses))
    np.testing.assert_array_equal(losses, full_losses)
    _assert_same(resumed, full)
    again, _ = train_measurement_posterior(key, model, n_time, checkpoint=path, **opts)
    _assert_same(again, full)  # a finished file: no more training

    for name, value in (("steps", 4), ("batch_size", 2), ("chunk_size", 3), ("n_time", 20)):
        other = {"n_time": n_time, **opts, name: value}
        with pytest.raises(ValueError, match=f"other options.*'{name}'"):
            train_measurement_posterior(key, model, checkpoint=path, **other)
    params_only = tmp_path / "params_only.ckpt"  # what earlier versions wrote
    save(params_only, post)
    with pytest.raises(ValueError, match="does not match the template"):
        train_measurement_posterior(key, model, n_time, checkpoint=params_only, **opts)


def test_stage1_training_stops_with_a_warning_at_a_nonfinite_loss():
    model = CouplingModel(n_nodes=2, tr=2.0, max_delay=2.0, hrf_length=8.0, burn_in=3)
    small = dict(summary_width=8, context_dim=4, flow_layers=1, nn_width=8, chain_dim=4)
    post = MeasurementPosterior(jax.random.key(1), model, **small)
    bias = post.cond_net.layers[0].bias
    poisoned = eqx.tree_at(lambda p: p.cond_net.layers[0].bias, post, bias.at[0].set(np.nan))
    with pytest.warns(RuntimeWarning, match="stopped at step 0 of 2: non-finite loss"):
        trained, losses = train_measurement_posterior(
            jax.random.key(0), model, 16, steps=2, batch_size=2, posterior=poisoned, progress=False
        )
    assert losses.shape == (0,)
    _assert_same(trained, poisoned)  # the last finite parameters: the start

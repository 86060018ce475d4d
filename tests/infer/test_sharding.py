"""Data-parallel training (fit_to_data(mesh=...), sharded_svi) and fit checkpoints.

JAX fixes its device count at start-up, so the 4-device comparisons run in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=4, or in this process when it already has 4
devices (the multi-device CI job).
"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesflow_nets.bijectors as bj
from bayesflow_nets.infer import batch_mesh, fit_to_data, load

from . import _multidevice

SCRIPT = Path(_multidevice.__file__)
FLAG = f"--xla_force_host_platform_device_count={_multidevice.N_DEVICES}"


def _run_script(tmp_path: Path, *extra: str) -> dict[str, np.ndarray]:
    out = tmp_path / "runs.npz"
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FLAG}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(np.load(out))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, np.ndarray]:
    if jax.device_count() >= _multidevice.N_DEVICES:
        return {**_multidevice.fit_runs(), **_multidevice.svi_runs()}
    return _run_script(tmp_path_factory.mktemp("multidevice"))


def test_fit_to_data_mesh_matches_one_device(runs):
    np.testing.assert_allclose(runs["train_n"], runs["train_1"], rtol=1e-5)
    np.testing.assert_allclose(runs["val_n"], runs["val_1"], rtol=1e-5)
    assert runs["train_1"].shape == (3,)
    np.testing.assert_allclose(runs["params_n"], runs["params_1"], rtol=1e-5, atol=1e-6)
    # The trained parameters live (replicated) on all 4 devices: the run really was multi-device.
    np.testing.assert_array_equal(runs["param_devices_n"], _multidevice.N_DEVICES)


def test_fit_to_data_bad_batch_size_for_mesh(runs):
    msg = str(runs["bad_batch_message"])
    assert "argument 'batch_size' (66" in msg and "number of devices in 'mesh' (4)" in msg


def test_sharded_svi_matches_one_device_subsampled_plate(runs):
    np.testing.assert_allclose(runs["elbo_sub_n"], runs["elbo_sub_1"], rtol=1e-5)
    np.testing.assert_allclose(runs["params_sub_n"], runs["params_sub_1"], rtol=1e-5, atol=1e-6)
    assert runs["elbo_sub_1"][-5:].mean() < 0.75 * runs["elbo_sub_1"][:5].mean()  # it trained
    assert int(runs["data_devices_sub"]) == 4 and int(runs["data_shard_rows_sub"]) == 64
    assert "leading (plate) axis of length 254" in str(runs["bad_rows_message"])


@pytest.mark.slow
def test_sharded_svi_matches_one_device_full_plate(tmp_path):
    if jax.device_count() >= _multidevice.N_DEVICES:
        got = _multidevice.svi_runs(full_plate=True)
    else:
        got = _run_script(tmp_path, "--full-plate")
    np.testing.assert_allclose(got["elbo_full_n"], got["elbo_full_1"], rtol=1e-5)
    np.testing.assert_allclose(got["params_full_n"], got["params_full_1"], rtol=1e-5, atol=1e-6)


def test_mesh_argument_validation():
    dist = bj.Normal(jnp.zeros(2), 1.0)
    x = jnp.zeros((20, 2))
    too_many = jax.device_count() + 1
    with pytest.raises(ValueError, match=f"argument 'mesh' asks for {too_many} devices"):
        fit_to_data(jax.random.key(0), dist, x, mesh=too_many, progress=False)
    with pytest.raises(TypeError, match="mesh"):  # beartype (under pytest) or our own check
        fit_to_data(jax.random.key(0), dist, x, mesh="batch", progress=False)
    with pytest.raises(ValueError, match="argument 'devices' must be an int"):
        batch_mesh(0)


def test_fit_to_data_checkpoint_written_and_loads_back(tmp_path):
    key = jax.random.key(7)
    dist = bj.Normal(jnp.zeros(2), 1.0)
    x = jnp.array([1.0, -2.0]) + jnp.array([0.5, 2.0]) * jax.random.normal(key, (400, 2))
    path = tmp_path / "ckpt" / "best.eqx"
    # A one-device mesh runs the sharded code path (device_put + sharding constraints) in-process.
    res = fit_to_data(
        key,
        dist,
        x,
        learning_rate=5e-2,
        max_epochs=4,
        batch_size=40,
        progress=False,
        mesh=batch_mesh(1),
        checkpoint_path=path,
    )
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    with pytest.raises(ValueError, match="argument 'checkpoint_path' must be a file path"):
        fit_to_data(key, dist, x, checkpoint_path=tmp_path, progress=False)
    restored = load(path, like=dist)
    # return_best=True: the checkpoint holds the best-validation module that fit returned.
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(res.model)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(restored.loc), 0.0)  # trained, not the initial module
    # Resume = pass the restored module as `dist`; it scores data exactly like the fitted one.
    np.testing.assert_allclose(restored.log_prob(x[:5]), res.model.log_prob(x[:5]), rtol=1e-6)


def test_checkpoint_from_multi_device_fit(runs):
    # Saved from replicated 4-device arrays, loaded back on one device: identical parameters.
    np.testing.assert_array_equal(runs["ckpt_params_n"], runs["params_n"])

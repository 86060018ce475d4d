"""AEF training checkpoints: a run resumed midway ends where the uninterrupted run ends."""

import equinox as eqx
import jax
import numpy as np

import bayesflow_nets.infer._fit as fit_module
from bayesflow_nets import aef

from ..helpers import copy_checkpoint_at

SHAPE = (1, 4, 4)


def _copy_at(monkeypatch, write: int, dest) -> list:
    return copy_checkpoint_at(monkeypatch, fit_module, write, dest)


@eqx.filter_jit
def _model(key):  # built inside one jit: a single compilation instead of one per eager op
    k1, k2 = jax.random.split(key)
    encoder = aef.MLPEncoder(k1, SHAPE, 2, width=8, depth=1)
    return aef.PartitionAEF(encoder, aef.MLPDecoder(k2, SHAPE, 2, width=8, depth=1), SHAPE, 2)


def test_fit_dequantised_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    model = _model(jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 17, (60,) + SHAPE)
    opts = dict(max_epochs=4, max_patience=10, batch_size=18, learning_rate=1e-2, progress=False)
    key, path, midway = jax.random.key(1), tmp_path / "run.ckpt", tmp_path / "midway.ckpt"
    with monkeypatch.context() as m:
        writes = _copy_at(m, 2, midway)  # after the second of four epochs
        full = aef.fit_dequantised(key, model, images, 17, checkpoint=path, **opts)
    with monkeypatch.context() as m:
        resumed_writes = _copy_at(m, 0, None)
        resumed = aef.fit_dequantised(key, model, images, 17, checkpoint=midway, **opts)
    assert (len(writes), len(resumed_writes)) == (5, 3)  # resumed midway
    assert full.status == resumed.status == "max_steps"
    assert np.all(np.isfinite(full.losses["train"])) and full.losses["val"].shape == (4,)
    for name in ("train", "val"):
        np.testing.assert_array_equal(resumed.losses[name], full.losses[name])
    leaves = (jax.tree_util.tree_leaves(eqx.filter(r.model, eqx.is_array)) for r in (full, resumed))
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_array_equal(a, b)

"""Score-network (DSM) training checkpoints: a resumed run ends where the uninterrupted run ends."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import bayesflow_nets.infer._fit as fit_module
from bayesflow_nets import diffusion as D
from bayesflow_nets.infer import fit_to_loss

from ..helpers import copy_checkpoint_at


def _copy_at(monkeypatch, write: int, dest) -> list:
    return copy_checkpoint_at(monkeypatch, fit_module, write, dest)


def test_dsm_training_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    schedule = D.VPSchedule()
    data = jnp.asarray(np.random.default_rng(0).normal(size=(64, 2)) * [1.0, 0.3] + [1.0, -1.0])
    net = D.ScoreMLP(jax.random.key(0), 2, width=16, depth=2, time_dim=8)

    def loss_fn(model, key):
        k1, k2 = jax.random.split(key)
        idx = jax.random.randint(k1, (32,), 0, data.shape[0])
        return D.dsm_loss(model, schedule, data[idx], k2)

    steps = 60
    opts = dict(
        optimizer=optax.adam(optax.cosine_decay_schedule(1e-2, steps)),
        chunk_size=20,
        progress=False,
    )
    key, path, midway = jax.random.key(1), tmp_path / "run.ckpt", tmp_path / "midway.ckpt"
    with monkeypatch.context() as m:
        writes = _copy_at(m, 1, midway)  # after the first of three chunks
        full = fit_to_loss(key, net, loss_fn, steps, checkpoint=path, **opts)
    with monkeypatch.context() as m:
        resumed_writes = _copy_at(m, 0, None)
        resumed = fit_to_loss(key, net, loss_fn, steps, checkpoint=midway, **opts)
    assert (len(writes), len(resumed_writes)) == (4, 3)  # resumed midway
    assert full.status == resumed.status == "max_steps"
    assert np.all(np.isfinite(full.losses["train"]))
    np.testing.assert_array_equal(resumed.losses["train"], full.losses["train"])
    leaves = (jax.tree_util.tree_leaves(eqx.filter(r.model, eqx.is_array)) for r in (full, resumed))
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_array_equal(a, b)

"""Multi-device vs one-device runs, shared by tests/infer/test_sharding.py.

Run as a script (``python _multidevice.py OUT.npz [--full-plate]``) in a subprocess whose environment sets
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (JAX reads it once, at start-up), or call
the functions directly when the current process already has 4 devices.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

N_DEVICES = 4


def fit_runs(n_devices: int = N_DEVICES) -> dict[str, np.ndarray]:
    """fit_to_data on a small MAF, 4-D correlated Gaussian: mesh=None vs mesh=n_devices."""
    import bayesflow_nets.bijectors as bj
    from bayesflow_nets.infer import fit_to_data, load

    key = jax.random.key(0)
    chol = jnp.array(
        [[1.0, 0.0, 0.0, 0.0], [0.8, 0.6, 0.0, 0.0], [-0.5, 0.3, 0.7, 0.0], [0.2, -0.4, 0.1, 0.5]]
    )
    x = jax.random.normal(key, (560, 4)) @ chol.T + jnp.array([1.0, -1.0, 0.5, 0.0])
    flow = bj.masked_autoregressive_flow(
        jax.random.key(1), base_dist=bj.StandardNormal((4,)), flow_layers=2, nn_width=8, nn_depth=1
    )
    kw = dict(learning_rate=1e-2, max_epochs=3, max_patience=100, batch_size=64, progress=False)
    one = fit_to_data(jax.random.key(2), flow, x, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best.eqx"
        many = fit_to_data(jax.random.key(2), flow, x, mesh=n_devices, checkpoint_path=path, **kw)
        restored = load(path, like=flow)
    out = {
        "train_1": one.losses["train"],
        "val_1": one.losses["val"],
        "train_n": many.losses["train"],
        "val_n": many.losses["val"],
    }
    leaves_1 = [np.asarray(a) for a in jax.tree_util.tree_leaves(one.model) if _is_float_array(a)]
    leaves_n = jax.tree_util.tree_leaves(many.model)
    leaves_n = [a for a in leaves_n if _is_float_array(a)]
    out["params_1"] = np.concatenate([a.ravel() for a in leaves_1])
    out["params_n"] = np.concatenate([np.asarray(a).ravel() for a in leaves_n])
    leaves_ckpt = [
        np.asarray(a).ravel() for a in jax.tree_util.tree_leaves(restored) if _is_float_array(a)
    ]
    out["ckpt_params_n"] = np.concatenate(leaves_ckpt)
    out["param_devices_n"] = np.array([len(a.sharding.device_set) for a in leaves_n])
    try:
        fit_to_data(jax.random.key(2), flow, x, mesh=n_devices, **{**kw, "batch_size": 66})
        out["bad_batch_message"] = np.array("no error")
    except ValueError as err:
        out["bad_batch_message"] = np.array(str(err))
    return out


def _is_float_array(a) -> bool:
    return isinstance(a, jax.Array | np.ndarray) and np.issubdtype(a.dtype, np.inexact)


def _logistic_model(X, y=None, subsample_size=None):
    import numpyro
    import numpyro.distributions as dist

    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    with numpyro.plate("rows", X.shape[0], subsample_size=subsample_size):
        xb = numpyro.subsample(X, event_dim=1)
        yb = numpyro.subsample(y, event_dim=0)
        numpyro.sample("y", dist.Bernoulli(logits=xb @ w + b), obs=yb)


def _logistic_guide(X, y=None, subsample_size=None):
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    w_loc = numpyro.param("w_loc", jnp.zeros(X.shape[1]))
    w_scale = numpyro.param("w_scale", jnp.full(X.shape[1], 0.1), constraint=constraints.positive)
    numpyro.sample("w", dist.Normal(w_loc, w_scale).to_event(1))
    b_loc = numpyro.param("b_loc", jnp.zeros(()))
    b_scale = numpyro.param("b_scale", jnp.full((), 0.1), constraint=constraints.positive)
    numpyro.sample("b", dist.Normal(b_loc, b_scale))


def svi_runs(
    n_devices: int = N_DEVICES, steps: int = 40, full_plate: bool = False
) -> dict[str, np.ndarray]:
    """Logistic regression, plate over N=256 rows: one device vs sharded_svi on n_devices.

    The plate is subsampled (64 rows per step); ``full_plate`` adds the unsubsampled plate.
    """
    import numpyro
    from numpyro.infer import SVI, Trace_ELBO

    from bayesflow_nets.infer import sharded_svi

    key = jax.random.key(3)
    X = jax.random.normal(key, (256, 3))
    logits = X @ jnp.array([1.5, -2.0, 0.5]) - 0.3
    y = jax.random.bernoulli(jax.random.key(4), jax.nn.sigmoid(logits)).astype(jnp.float32)
    out = {}
    variants = (("sub", 64), ("full", None)) if full_plate else (("sub", 64),)
    for label, m in variants:
        svi = SVI(_logistic_model, _logistic_guide, numpyro.optim.Adam(0.05), Trace_ELBO())
        update = jax.jit(lambda s: svi.update(s, X, y, subsample_size=m))  # noqa: B023
        # Jitted init (fine for this hand-written guide; autoguides need eager init).
        state = eqx.filter_jit(svi.init)(jax.random.key(5), X, y, subsample_size=m)
        hist = []
        for _ in range(steps):
            state, loss = update(state)
            hist.append(float(loss))
        out[f"elbo_{label}_1"] = np.asarray(hist)
        out[f"params_{label}_1"] = np.asarray(svi.get_params(state)["w_loc"])

        sharded = sharded_svi(svi, n_devices, X, y, subsample_size=m)
        state = sharded.init(jax.random.key(5))
        hist = []
        for _ in range(steps):
            state, loss = sharded.update(state)
            hist.append(float(loss))
        out[f"elbo_{label}_n"] = np.asarray(hist)
        out[f"params_{label}_n"] = np.asarray(svi.get_params(state)["w_loc"])
        out[f"data_devices_{label}"] = np.array(len(sharded.args[0].sharding.device_set))
        out[f"data_shard_rows_{label}"] = np.array(
            sharded.args[0].addressable_shards[0].data.shape[0]
        )
    try:
        sharded_svi(svi, n_devices, X[:254], y[:254], subsample_size=64)
        out["bad_rows_message"] = np.array("no error")
    except ValueError as err:
        out["bad_rows_message"] = np.array(str(err))
    return out


if __name__ == "__main__":
    if jax.device_count() < N_DEVICES:
        sys.exit(f"need {N_DEVICES} devices, have {jax.device_count()}: set XLA_FLAGS")
    if "--full-plate" in sys.argv:
        np.savez(sys.argv[1], **svi_runs(full_plate=True))
    else:
        np.savez(sys.argv[1], **fit_runs(), **svi_runs())

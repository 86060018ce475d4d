"""fit_to_loss / fit_to_data killed with SIGKILL mid-run resume to the uninterrupted result.

A subprocess runs the fit with ``checkpoint=``; once the checkpoint has been written at least
twice the subprocess is killed, the file is checked to hold an unfinished run, and the same call
in this process continues from it to the result of a run without a checkpoint, bit for bit.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesflow_nets.bijectors as bj
from bayesflow_nets.infer import fit_to_data, fit_to_loss

from ..helpers import assert_same_arrays

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# the leading scalars of each loop's progress file (see _fit.py: ``progress_names``)
LOSS_SCALARS = ("done", "status", "stopped_at", "steps", "chunk_size")
DATA_SCALARS = ("epoch", "best_val", "patience", "status", "stopped_at", "max_epochs", "batch_size")
RUNNING = 0  # index of "running" in _fit._STATUSES


# --- the runs: built the same way here and in the subprocess ---------------------------------


def loss_problem():
    """A tiny MLP regressed on fresh random inputs each step: (key, module, loss)."""
    module = eqx.nn.MLP(2, 1, width_size=16, depth=2, key=jax.random.key(3))

    def loss(m, key):
        x = jax.random.normal(key, (32, 2))
        y = jnp.sin(x[:, :1]) * x[:, 1:]
        return jnp.mean((jax.vmap(m)(x) - y) ** 2)

    return jax.random.key(0), module, loss


def data_problem():
    """An affine-Gaussian flow and 400 rows of data: (key, flow, data)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)) * np.array([0.5, 2.0]) + np.array([1.0, -1.0])
    flow = bj.Transformed(bj.StandardNormal((2,)), bj.Affine(jnp.zeros(2), jnp.ones(2)))
    return jax.random.key(1), flow, x


def run_loss(path, opts):
    key, module, loss = loss_problem()
    return fit_to_loss(key, module, loss, checkpoint=path, progress=False, **opts)


def run_data(path, opts):
    key, flow, x = data_problem()
    return fit_to_data(key, flow, x, checkpoint=path, progress=False, **opts)


# --- kill helper -------------------------------------------------------------------------------


def _progress(path, names: tuple[str, ...]) -> dict[str, float]:
    """The leading scalars of a progress checkpoint, by name."""
    with open(path, "rb") as f:
        head = eqx.tree_deserialise_leaves(f, np.zeros(len(names)))
    return dict(zip(names, np.asarray(head).tolist(), strict=True))


def _stamp(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _kill_mid_run(tmp_path, runner: str, path, opts, names: tuple[str, ...]) -> bool:
    """Run ``runner(path, opts)`` in a subprocess and SIGKILL it after its checkpoint has been
    written twice. True when it was killed with an unfinished run in ``path``; False when it
    finished first (``path`` is then removed)."""
    script = textwrap.dedent(
        f"""
        import jax
        jax.config.update("jax_enable_x64", {jax.config.jax_enable_x64})
        from tests.infer.test_kill_resume import {runner}
        {runner}({str(path)!r}, {opts!r})
        """
    )
    log = tmp_path / f"{runner}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, env=dict(os.environ), stderr=err
        )
        try:
            deadline, first = time.time() + 120, None
            while time.time() < deadline and proc.poll() is None:
                stamp = _stamp(path)
                if first is None:
                    first = stamp  # the first write
                elif stamp != first:  # a later one (atomic rename): the loop is under way
                    break
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode in (0, -signal.SIGKILL), log.read_text()[-4000:]
    assert path.exists(), f"no checkpoint was written\n{log.read_text()[-4000:]}"
    head = _progress(path, names)
    if proc.returncode == 0 or head["status"] != RUNNING:
        path.unlink()
        return False
    return True


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fit_to_loss_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    path = tmp_path / "loss.ckpt"
    for steps in (12_000, 48_000, 192_000):  # more steps if the run ends before the kill
        opts = dict(steps=steps, chunk_size=10, checkpoint_every=2, learning_rate=1e-2)
        if _kill_mid_run(tmp_path, "run_loss", path, opts, LOSS_SCALARS):
            break
    else:
        pytest.fail("fit_to_loss finished every time before it could be killed")
    done = int(_progress(path, LOSS_SCALARS)["done"])
    assert 0 < done < steps and done % (2 * 10) == 0
    resumed = run_loss(path, opts)
    full = run_loss(None, opts)
    assert resumed.status == full.status == "max_steps" and resumed.message == full.message
    assert full.losses["train"].shape == (steps,)
    np.testing.assert_array_equal(resumed.losses["train"], full.losses["train"])
    assert_same_arrays(resumed.model, full.model)


@pytest.mark.slow
def test_fit_to_data_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    path = tmp_path / "data.ckpt"
    for epochs in (1000, 4000, 16_000):  # more epochs if the run ends before the kill
        # patience never runs out: the run lasts all its epochs
        opts = dict(max_epochs=epochs, max_patience=epochs, batch_size=50, learning_rate=1e-3)
        if _kill_mid_run(tmp_path, "run_data", path, opts, DATA_SCALARS):
            break
    else:
        pytest.fail("fit_to_data finished every time before it could be killed")
    assert 0 < int(_progress(path, DATA_SCALARS)["epoch"]) < epochs
    resumed = run_data(path, opts)
    full = run_data(None, opts)
    assert resumed.status == full.status == "max_steps" and resumed.message == full.message
    for name in ("train", "val"):
        assert full.losses[name].shape == (epochs,)
        np.testing.assert_array_equal(resumed.losses[name], full.losses[name])
    assert_same_arrays(resumed.model, full.model)

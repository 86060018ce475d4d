"""fit_vi checkpoints: an interrupted fit resumes to the uninterrupted fit's parameters."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesflow_nets.emf._fit as fit_module
from bayesflow_nets.emf import AutoEMF, fit_vi

Y = np.array([1.2, -0.3, 2.1, 0.4, 0.9])
OPTIONS = dict(num_steps=600, chunk=100, min_steps=600, num_particles=4, progress=False)


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    with numpyro.plate("J", y.shape[0]):
        b = numpyro.sample("b", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(b, 0.5), obs=y)


def _same_fit(a, b):
    assert a.status == b.status and a.num_steps == b.num_steps and a.init == b.init
    np.testing.assert_array_equal(a.losses, b.losses)
    for k in a.params:
        np.testing.assert_array_equal(np.asarray(a.params[k]), np.asarray(b.params[k]), err_msg=k)


def test_resume_from_a_midway_checkpoint_matches_the_uninterrupted_fit(tmp_path, monkeypatch):
    path, midway = tmp_path / "fit.ckpt", tmp_path / "midway.ckpt"
    calls = []
    original = fit_module.save_loop

    def spy(p, loop, *args):
        original(p, loop, *args)
        calls.append(loop.steps)
        if len(calls) == 2:  # after the second chunk of six
            shutil.copy(p, midway)

    monkeypatch.setattr(fit_module, "save_loop", spy)
    full = fit_vi(model, AutoEMF(model), Y, checkpoint=path, **OPTIONS)
    # the checkpoint holds the training; the refinement after it runs again on a resume
    assert calls[-1] == full.num_steps - full.refine_steps and full.status == "max_steps"
    monkeypatch.setattr(fit_module, "save_loop", original)
    resumed = fit_vi(model, AutoEMF(model), Y, checkpoint=midway, **OPTIONS)
    _same_fit(full, resumed)
    # a finished checkpoint gives the finished fit back without a training chunk (only the
    # refinement after the training runs again)
    chunks, train = [], fit_module._train_chunks

    def counting(run_chunk, *args, **kwargs):
        return train(lambda state: chunks.append(1) or run_chunk(state), *args, **kwargs)

    monkeypatch.setattr(fit_module, "_train_chunks", counting)
    again = fit_vi(model, AutoEMF(model), Y, checkpoint=path, **OPTIONS)
    _same_fit(full, again)
    assert not chunks and again.refine_steps == full.refine_steps > 0


def test_checkpoint_of_other_options_or_model_is_refused(tmp_path):
    path = tmp_path / "fit.ckpt"
    fit_vi(model, AutoEMF(model), Y, checkpoint=path, **{**OPTIONS, "num_steps": 200})
    with pytest.raises(ValueError, match="other options.*num_steps"):
        fit_vi(model, AutoEMF(model), Y, checkpoint=path, **OPTIONS)
    with pytest.raises(ValueError, match="does not match the template"):
        fit_vi(model, AutoEMF(model), np.ones(7), checkpoint=path, **{**OPTIONS, "num_steps": 200})
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit_vi(model, AutoEMF(model), Y, checkpoint=path, checkpoint_every=0)


@pytest.mark.slow
def test_fit_killed_mid_run_resumes_to_the_uninterrupted_fit(tmp_path):
    path = tmp_path / "fit.ckpt"
    options = {**OPTIONS, "num_steps": 6000, "min_steps": 6000}
    script = textwrap.dedent(
        f"""
        import numpy as np, jax
        jax.config.update("jax_enable_x64", {jax.config.jax_enable_x64})
        from tests.emf.test_resume import model, Y
        from bayesflow_nets.emf import AutoEMF, fit_vi
        fit_vi(model, AutoEMF(model), Y, checkpoint={str(path)!r}, **{options!r})
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if path.exists():
                time.sleep(0.3)  # a few more chunks, then kill mid-run
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the fit ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    resumed = fit_vi(model, AutoEMF(model), Y, checkpoint=path, **options)
    full = fit_vi(model, AutoEMF(model), Y, **options)
    _same_fit(full, resumed)

"""fit_vi's robustness machinery: rejected chunks and rollbacks, the pilot start, scan models,
backbone resolution and bad options."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.contrib.control_flow import scan
from numpyro.infer.svi import SVIState

from bayesflow_nets.emf import AutoEMF, fit_vi, resolve_backbone
from bayesflow_nets.emf._autoguide import DENSE_MAX_DIM, MAF_MAX_DIM
from bayesflow_nets.emf._fit import MAX_ROLLBACKS, Loop, _anneal, _chunk_problem, _train_chunks
from bayesflow_nets.emf._start import pilot


def test_chunk_problem_flags_nonfinite_and_spikes():
    rng = np.random.default_rng(0)
    prev = 100.0 + rng.normal(size=500)
    clean = 99.0 + rng.normal(size=500)
    assert _chunk_problem(clean, prev) is None
    assert _chunk_problem(clean, None) is None
    nan = clean.copy()
    nan[37] = np.nan
    assert _chunk_problem(nan, prev) == ("nonfinite", 37)
    wild = clean.copy()
    wild[200] = 1e16  # one exploding step, even if the loss comes back
    assert _chunk_problem(wild, prev) == ("spike", 200)
    worse = clean.copy()
    worse[300:] += 50.0  # ends far above where the last accepted chunk was
    assert _chunk_problem(worse, prev)[0] == "spike"


def _state():
    tx = optax.chain(optax.adam(1e-2), _anneal())
    params = {"w": jnp.zeros(3)}
    return SVIState(tx.init(params), None, jax.random.PRNGKey(0))


def _scripted(chunks):
    """A run_chunk returning scripted losses; the state counts the chunks it was run on."""
    calls = []

    def run(state):
        calls.append(state)
        losses = chunks[min(len(calls) - 1, len(chunks) - 1)]
        return state._replace(mutable_state=len(calls)), np.asarray(losses)

    return run, calls


def test_spike_is_rolled_back_with_half_the_learning_rate():
    base = np.linspace(10.0, 9.0, 100)
    spike = base - 1.5
    spike[10] = 1e12
    chunks = [base, base - 1.0, spike, base - 1.5, base - 1.5, base - 1.5, base - 1.5]
    run, calls = _scripted(chunks)
    out = _train_chunks(run, Loop(_state()), 600, 100, 100, 0.02, False, 0.0)
    assert out.rollbacks == (("spike", 210),)
    # the chunk after the spike restarted from the state before it, at half the step
    assert calls[3].mutable_state == 2
    factor = [s for s in jax.tree_util.tree_leaves(calls[3].optim_state)]
    assert any(np.isclose(float(f), 0.5) for f in factor if np.ndim(f) == 0)
    assert not np.array_equal(calls[3].rng_key, calls[2].rng_key)
    assert out.status == "converged" and out.steps == 500  # five accepted chunks
    assert all(np.all(np.isfinite(c)) and c.max() < 100 for c in out.losses)


def test_repeated_nonfinite_chunks_stop_with_last_finite_state():
    good = np.linspace(10.0, 9.0, 100)
    bad = good.copy()
    bad[5] = np.nan
    run, calls = _scripted([good] + [bad] * (MAX_ROLLBACKS + 2))
    out = _train_chunks(run, Loop(_state()), 5000, 100, 100, 0.02, False, 0.0)
    assert out.status == "nonfinite"
    assert len(out.rollbacks) == MAX_ROLLBACKS + 1
    assert all(kind == "nonfinite" for kind, _ in out.rollbacks)
    assert out.state.mutable_state == 1 and out.steps == 100  # the one accepted chunk


def test_pilot_keeps_the_start_that_ends_lower():
    a = np.linspace(50.0, 5.0, 100)
    b = np.linspace(5.0, 12.0, 100)
    runs = {"default": (1, a), "laplace": (2, b)}
    chosen, scores, first = pilot(lambda s: runs[s], {"default": "default", "laplace": "laplace"})
    assert chosen == "default" and first[0] == 1
    assert scores["default"] > scores["laplace"]
    nan = b - 10.0
    nan[3] = np.nan
    runs["laplace"] = (2, nan)
    chosen, scores, _ = pilot(lambda s: runs[s], {"default": "default", "laplace": "laplace"})
    assert chosen == "default" and scores["laplace"] == -np.inf
    assert pilot(lambda s: runs[s], {"default": "default"}) == ("default", {}, None)


def test_resolve_backbone_by_dimension():
    assert resolve_backbone("auto", 3) == "maf"
    assert resolve_backbone("auto", MAF_MAX_DIM) == "maf"
    assert resolve_backbone("auto", MAF_MAX_DIM + 1) == "iaf"
    assert resolve_backbone("auto", DENSE_MAX_DIM) == "iaf"
    assert resolve_backbone("auto", DENSE_MAX_DIM + 1) == "lowrank"
    assert resolve_backbone("mvn", 5000) == "mvn"
    with pytest.raises(ValueError, match="argument 'backbone'"):
        resolve_backbone("bnaf", 3)


def test_large_auto_backbone_has_linear_size(x64):
    from bayesflow_nets.emf import make_backbone

    for dim in (DENSE_MAX_DIM + 1, 4 * DENSE_MAX_DIM):
        bb = make_backbone(jax.random.PRNGKey(0), "auto", dim)
        size = sum(x.size for x in jax.tree_util.tree_leaves(bb) if hasattr(x, "size"))
        assert size <= 20 * dim
        y, ld = bb.transform_and_log_det(jnp.ones(dim))
        np.testing.assert_allclose(y, jnp.ones(dim), atol=1e-12)  # identity at init
        assert abs(float(ld)) < 1e-12


def ar1_scan(y, phi=0.8, sigma=0.5, noise=0.3):
    def step(h, yt):
        h = numpyro.sample("h", dist.Normal(phi * h, sigma))
        numpyro.sample("y", dist.Normal(h, noise), obs=yt)
        return h, None

    scan(step, jnp.zeros(()), y)


def _ar1_posterior(y, phi=0.8, sigma=0.5, noise=0.3):
    t = len(y)
    a = np.eye(t) - phi * np.eye(t, k=-1)  # a h = innovations
    prec = a.T @ a / sigma**2 + np.eye(t) / noise**2
    cov = np.linalg.inv(prec)
    return cov @ (np.asarray(y) / noise**2), np.sqrt(np.diag(cov))


def test_fit_vi_on_a_scan_model_recovers_the_gaussian_posterior(x64):
    y = jnp.asarray(np.random.default_rng(1).normal(size=12))
    res = fit_vi(
        ar1_scan,
        AutoEMF(ar1_scan),
        y,
        progress=False,
        num_steps=1500,
        chunk=250,
        min_steps=500,
        rng_key=jax.random.PRNGKey(0),
    )
    mean, sd = _ar1_posterior(y)
    h = np.asarray(res.samples(jax.random.PRNGKey(1), 4000)["h"])
    assert h.shape == (4000, 12)
    np.testing.assert_array_less(np.abs(h.mean(0) - mean) / sd, 0.1)
    np.testing.assert_allclose(h.std(0), sd, rtol=0.1)
    assert res.khat < 0.7


def test_fit_vi_rejects_bad_learning_rates_and_discrete_latents():
    with pytest.raises(ValueError, match="argument 'learning_rate'"):
        fit_vi(ar1_scan, AutoEMF(ar1_scan), jnp.zeros(3), learning_rate=0.0)
    with pytest.raises(ValueError, match="argument 'gate_learning_rate'"):
        fit_vi(ar1_scan, AutoEMF(ar1_scan), jnp.zeros(3), gate_learning_rate=-1.0)

    def mixed():
        z = numpyro.sample("z", dist.Categorical(probs=jnp.ones(3) / 3))
        numpyro.sample("x", dist.Normal(z, 1.0), obs=0.5)

    with pytest.raises(ValueError, match="latent site 'z' is discrete"):
        fit_vi(mixed, AutoEMF(mixed), progress=False)

"""Samplers against the exact score of a Gaussian; Gaussian late start (MATH.md §5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesflow_nets import diffusion as D

MU = jnp.array([1.0, -0.5])
COV = jnp.array([[1.0, 0.6], [0.6, 0.8]])


def gaussian_score(schedule, mu=MU, cov=COV):
    def score(x, t):
        m, s2 = schedule.mean_coeff(t), schedule.variance(t)
        c = m**2 * cov + s2 * jnp.eye(mu.shape[0], dtype=cov.dtype)
        return -jnp.linalg.solve(c, x - m * mu)

    return score


def exact_start(schedule, t, key, n, mu=MU, cov=COV):
    m, s2 = schedule.mean_coeff(t), schedule.variance(t)
    c = m**2 * cov + s2 * jnp.eye(mu.shape[0])
    return m * mu + jax.random.normal(key, (n, mu.shape[0])) @ jnp.linalg.cholesky(c).T


# The registry of every public sampler: (function, needs key, extra kwargs, number of steps).
SAMPLERS = {
    "ddim_sample": (D.ddim_sample, False, {}, 100),
    "ddim_sample_eta": (D.ddim_sample, True, {"eta": 0.5}, 200),
    "ddpm_sample": (D.ddpm_sample, True, {}, 200),
    "pndm_sample": (D.pndm_sample, False, {}, 40),
    "euler_maruyama_sample": (D.euler_maruyama_sample, True, {}, 500),
    "probability_flow_sample": (D.probability_flow_sample, False, {"method": "heun"}, 60),
    "probability_flow_sample_euler": (D.probability_flow_sample, False, {"method": "euler"}, 300),
}
SCHEDULES = {
    "ve": (D.VESchedule(), 25.0, "sqrt"),  # uniform in σ
    "vp": (D.VPSchedule(), 1.0, "linear"),
    "ddpm": (D.DDPMSchedule(), 1000.0, "linear"),
}


def test_registry_covers_public_samplers():
    public = {n for n in dir(D) if n.endswith("_sample")}
    covered = {fn.__name__ for fn, *_ in SAMPLERS.values()}
    assert public == covered, public ^ covered


def run(name, schedule, t_start, spacing, n_samples=2000, seed=0):
    fn, needs_key, kwargs, steps = SAMPLERS[name]
    times = D.time_grid(t_start, steps, spacing=spacing)
    x_init = exact_start(schedule, t_start, jax.random.key(seed), n_samples)
    score = gaussian_score(schedule)
    if needs_key:
        keys = jax.random.split(jax.random.key(seed + 1), n_samples)
        f = lambda x, k: fn(score, schedule, x, times, key=k, **kwargs)
        return jax.jit(jax.vmap(f))(x_init, keys)
    f = lambda x: fn(score, schedule, x, times, **kwargs)
    return jax.jit(jax.vmap(f))(x_init)


@pytest.mark.parametrize(
    "sched",
    # every sampler on VP by default; VE and discrete DDPM in the slow run (compile time)
    [s if s == "vp" else pytest.param(s, marks=pytest.mark.slow) for s in SCHEDULES],
)
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_recovers_gaussian(name, sched):
    schedule, t_start, spacing = SCHEDULES[sched]
    xs = run(name, schedule, t_start, spacing)
    n = xs.shape[0]
    se = float(np.sqrt(np.max(np.diag(COV)) / n))
    np.testing.assert_allclose(xs.mean(0), MU, atol=5 * se + 0.02)
    np.testing.assert_allclose(np.cov(np.asarray(xs).T), COV, atol=0.1)


def test_sampler_errors():
    vp = D.VPSchedule()
    score = gaussian_score(vp)
    with pytest.raises(ValueError, match="stochastic; pass key"):
        D.ddim_sample(score, vp, MU, D.time_grid(1.0, 3), eta=0.5, key=None)
    with pytest.raises(ValueError, match="at least 2 decreasing times"):
        D.ddim_sample(score, vp, MU, jnp.array([1.0]))
    with pytest.raises(Exception, match="strictly decreasing"):
        D.ddim_sample(score, vp, MU, jnp.array([0.1, 0.5, 0.0]))
    with pytest.raises(ValueError, match="method must be 'euler' or 'heun'"):
        D.probability_flow_sample(score, vp, MU, D.time_grid(1.0, 3), method="rk4")
    with pytest.raises(ValueError, match="need t_start > t_end >= 0"):
        D.time_grid(0.0, 3)
    with pytest.raises(ValueError, match="spacing must be"):
        D.time_grid(1.0, 3, spacing="log")
    np.testing.assert_allclose(D.time_grid(4.0, 2, spacing="sqrt"), [4.0, 1.0, 0.0])


# --------------------------------------------------------------------------- late start
def test_streaming_moments_match_numpy():
    data = np.asarray(jax.random.normal(jax.random.key(0), (1000, 3))) * [1.0, 2.0, 0.5] + 100.0
    mean, cov = D.streaming_moments(data, batch_size=128)
    np.testing.assert_allclose(mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(cov, np.cov(data.T, bias=True), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        D.streaming_moments(data, batch_size=0)


def test_gaussian_late_start_moments(x64):
    data = np.asarray(exact_start(D.VESchedule(), 1e-12, jax.random.key(0), 2000), np.float64)
    ddpm = D.DDPMSchedule()
    t_s = 300.0
    mu_d, cov_d = data.mean(0), np.cov(data.T, bias=True)
    m, s2 = float(ddpm.mean_coeff(t_s)), float(ddpm.variance(t_s))
    g = D.gaussian_late_start(data, ddpm, t_s, ridge=0.1)
    np.testing.assert_allclose(g.mean, m * mu_d, rtol=1e-10)
    np.testing.assert_allclose(g.cov, m**2 * cov_d + (s2 + 0.1) * np.eye(2), rtol=1e-10)
    lr = D.gaussian_late_start(data, ddpm, t_s, rank=1)
    full = m**2 * cov_d + s2 * np.eye(2)
    lam, u = np.linalg.eigh(full)
    top = lam[-1] * np.outer(u[:, -1], u[:, -1])
    np.testing.assert_allclose(lr.cov, top + np.diag(np.diag(full - top)), rtol=1e-10)
    draws = g.sample(jax.random.key(1), 20000)
    assert draws.shape == (20000, 2)
    np.testing.assert_allclose(np.cov(np.asarray(draws).T), g.cov, atol=0.03)
    with pytest.raises(ValueError, match="rank must be None or an int"):
        D.gaussian_late_start(data, ddpm, t_s, rank=5)
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        D.gaussian_late_start(data, ddpm, t_s, ridge=-1.0)


@pytest.mark.parametrize("name", ["ddim_sample", "ddpm_sample", "pndm_sample"])
def test_late_start_beats_cold_start_at_three_steps(name):
    """n = 3 with the exact score: starting from the data Gaussian at t_s beats N(0, I) at 667."""
    ddpm = D.DDPMSchedule()
    fn, needs_key, _, _ = SAMPLERS[name]
    score = gaussian_score(ddpm)
    data = exact_start(D.VESchedule(), 1e-12, jax.random.key(0), 4000)
    n = 4000

    def sample(x_init, times):
        if needs_key:
            keys = jax.random.split(jax.random.key(5), n)
            return jax.vmap(lambda x, k: fn(score, ddpm, x, times, key=k))(x_init, keys)
        return jax.vmap(lambda x: fn(score, ddpm, x, times))(x_init)

    def err(xs):
        return float(
            np.linalg.norm(xs.mean(0) - MU) + np.linalg.norm(np.cov(np.asarray(xs).T) - COV)
        )

    cold = sample(jax.random.normal(jax.random.key(1), (n, 2)), D.time_grid(667.0, 3))
    g = D.gaussian_late_start(data, ddpm, 200.0)
    late = sample(g.sample(jax.random.key(2), n), D.time_grid(200.0, 3))
    assert err(late) < 0.5 * err(cold), (err(late), err(cold))


def test_critical_start_time_and_sweep():
    ts = np.linspace(0.0, 10.0, 2001)
    q = np.tanh(ts - 5.0)
    expected = 5.0 - np.arctanh(1 / np.sqrt(3))  # argmax of d²tanh/dt²
    assert abs(D.critical_start_time(ts, q) - expected) <= 2 * (ts[1] - ts[0])
    sweep = D.late_start_sweep(lambda t: np.tanh(t - 5.0), ts[::10])
    assert abs(sweep.critical_time - expected) <= 2 * (ts[10] - ts[0])
    np.testing.assert_allclose(sweep.quality, q[::10])
    with pytest.raises(ValueError, match="strictly increasing"):
        D.critical_start_time(ts[::-1], q)

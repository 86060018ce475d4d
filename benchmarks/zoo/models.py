"""Development model zoo: plain NumPyro models, each with deterministic data.

``ZOO[name].build()`` returns ``(model, args, kwargs)`` for ``model(*args, **kwargs)``. Simulated
data come from ``numpy.random.default_rng`` with a fixed seed; real data from installed packages
(statsmodels). Nothing is downloaded. Float64 is assumed: call ``numpyro.enable_x64()`` first.
Every latent site is continuous.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.experimental.ode import odeint
from numpyro.contrib.control_flow import scan
from numpyro.distributions import constraints
from scipy.integrate import solve_ivp

Built = tuple[Callable[..., Any], tuple, dict]


class ZooModel(NamedTuple):
    """A zoo entry: ``build()`` makes the model and its data; tags and text describe it."""

    name: str
    build: Callable[[], Built]
    tags: tuple[str, ...]
    multimodal: bool
    description: str


# ------------------------------------------------------------------------------------------
# Normal hierarchies: eight schools
# ------------------------------------------------------------------------------------------
SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools_centered(sigma, y=None):
    """Eight schools with school effects drawn directly around ``mu``."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("schools", len(sigma)):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentered(sigma, y=None):
    """Eight schools with standardised school effects scaled by ``tau``."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("schools", len(sigma)):
        theta_std = numpyro.sample("theta_std", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_std)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def build_eight_schools_centered() -> Built:
    """Rubin's (1981) eight-schools data, centred model."""
    return eight_schools_centered, (SCHOOLS_SIGMA,), {"y": SCHOOLS_Y}


def build_eight_schools_noncentered() -> Built:
    """Rubin's (1981) eight-schools data, non-centred model."""
    return eight_schools_noncentered, (SCHOOLS_SIGMA,), {"y": SCHOOLS_Y}


# ------------------------------------------------------------------------------------------
# Hierarchical GLMs
# ------------------------------------------------------------------------------------------
def hier_logistic_centered(group, x, num_groups, y=None):
    """Logistic regression with centred varying intercepts and slopes."""
    mu_a = numpyro.sample("mu_a", dist.Normal(0.0, 2.0))
    mu_b = numpyro.sample("mu_b", dist.Normal(0.0, 2.0))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(1.0))
    sigma_b = numpyro.sample("sigma_b", dist.HalfNormal(1.0))
    with numpyro.plate("groups", num_groups):
        a = numpyro.sample("a", dist.Normal(mu_a, sigma_a))
        b = numpyro.sample("b", dist.Normal(mu_b, sigma_b))
    with numpyro.plate("data", len(x)):
        numpyro.sample("y", dist.Bernoulli(logits=a[group] + b[group] * x), obs=y)


def build_hier_logistic_centered() -> Built:
    """30 groups x 20 binary outcomes, one covariate."""
    rng = np.random.default_rng(101)
    num_groups, per_group = 30, 20
    group = np.repeat(np.arange(num_groups), per_group)
    x = rng.normal(size=group.size)
    a = 0.3 + 1.0 * rng.normal(size=num_groups)
    b = -0.5 + 0.5 * rng.normal(size=num_groups)
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-(a[group] + b[group] * x)))).astype(float)
    return hier_logistic_centered, (group, x, num_groups), {"y": y}


def poisson_olre(x, y=None):
    """Poisson regression with centred observation-level random effects."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 3.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", len(x)):
        eps = numpyro.sample("eps", dist.Normal(0.0, sigma))
        numpyro.sample("y", dist.Poisson(jnp.exp(alpha + beta * x + eps)), obs=y)


def build_poisson_olre() -> Built:
    """60 overdispersed counts, one covariate."""
    rng = np.random.default_rng(102)
    x = rng.normal(size=60)
    log_rate = 1.5 + 0.4 * x + 0.5 * rng.normal(size=x.size)
    y = rng.poisson(np.exp(log_rate)).astype(float)
    return poisson_olre, (x,), {"y": y}


def poisson_glmm(group, x, num_groups, y=None):
    """Poisson GLMM: non-centred varying intercepts and slopes plus observation-level effects."""
    mu_a = numpyro.sample("mu_a", dist.Normal(0.0, 3.0))
    mu_b = numpyro.sample("mu_b", dist.Normal(0.0, 1.0))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(1.0))
    sigma_b = numpyro.sample("sigma_b", dist.HalfNormal(1.0))
    sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(1.0))
    with numpyro.plate("groups", num_groups):
        z_a = numpyro.sample("z_a", dist.Normal(0.0, 1.0))
        z_b = numpyro.sample("z_b", dist.Normal(0.0, 1.0))
    a = mu_a + sigma_a * z_a
    b = mu_b + sigma_b * z_b
    with numpyro.plate("data", len(x)):
        z_obs = numpyro.sample("z_obs", dist.Normal(0.0, 1.0))
        log_rate = a[group] + b[group] * x + sigma_obs * z_obs
        numpyro.sample("y", dist.Poisson(jnp.exp(log_rate)), obs=y)


def _poisson_glmm_data(n: int, seed: int) -> Built:
    """40 groups, ``n`` observations assigned round-robin, one covariate."""
    rng = np.random.default_rng(seed)
    num_groups = 40
    group = np.arange(n) % num_groups
    x = rng.normal(size=n)
    a = 1.0 + 0.6 * rng.normal(size=num_groups)
    b = 0.3 + 0.3 * rng.normal(size=num_groups)
    log_rate = a[group] + b[group] * x + 0.3 * rng.normal(size=n)
    y = rng.poisson(np.exp(log_rate)).astype(float)
    return poisson_glmm, (group, x, num_groups), {"y": y}


def build_poisson_glmm_n40() -> Built:
    """40 groups, one observation each."""
    return _poisson_glmm_data(40, 103)


def build_poisson_glmm_n1200() -> Built:
    """40 groups, 30 observations each."""
    return _poisson_glmm_data(1200, 104)


def crossed_glmm(subject, item, x, num_subjects, num_items, y=None):
    """Logistic GLMM with crossed (non-centred) subject and item intercepts."""
    b0 = numpyro.sample("b0", dist.Normal(0.0, 2.0))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 2.0))
    sigma_s = numpyro.sample("sigma_subject", dist.HalfNormal(1.0))
    sigma_i = numpyro.sample("sigma_item", dist.HalfNormal(1.0))
    with numpyro.plate("subjects", num_subjects):
        u = numpyro.sample("u_subject", dist.Normal(0.0, 1.0))
    with numpyro.plate("items", num_items):
        w = numpyro.sample("w_item", dist.Normal(0.0, 1.0))
    logits = b0 + b1 * x + sigma_s * u[subject] + sigma_i * w[item]
    with numpyro.plate("trials", len(x)):
        numpyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def build_crossed_glmm() -> Built:
    """40 subjects x 25 items, every pair once, condition coded +-0.5."""
    rng = np.random.default_rng(105)
    num_subjects, num_items = 40, 25
    subject, item = (
        g.ravel() for g in np.meshgrid(np.arange(num_subjects), np.arange(num_items), indexing="ij")
    )
    x = rng.choice([-0.5, 0.5], size=subject.size)
    logits = (
        -0.2
        + 0.8 * x
        + 0.9 * rng.normal(size=num_subjects)[subject]
        + 0.6 * rng.normal(size=num_items)[item]
    )
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-logits))).astype(float)
    return crossed_glmm, (subject, item, x, num_subjects, num_items), {"y": y}


def irt_2pl(person, item, num_persons, num_items, y=None):
    """Two-parameter logistic item-response model (abilities fixed to unit scale)."""
    mu_b = numpyro.sample("mu_b", dist.Normal(0.0, 2.0))
    sigma_b = numpyro.sample("sigma_b", dist.HalfNormal(2.0))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(1.0))
    with numpyro.plate("persons", num_persons):
        theta = numpyro.sample("theta", dist.Normal(0.0, 1.0))
    with numpyro.plate("items", num_items):
        a = numpyro.sample("a", dist.LogNormal(0.0, sigma_a))
        b = numpyro.sample("b", dist.Normal(mu_b, sigma_b))
    with numpyro.plate("responses", len(person)):
        logits = a[item] * (theta[person] - b[item])
        numpyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def build_irt_2pl() -> Built:
    """300 persons x 100 items, complete design (30,000 responses)."""
    rng = np.random.default_rng(106)
    num_persons, num_items = 300, 100
    person, item = (
        g.ravel() for g in np.meshgrid(np.arange(num_persons), np.arange(num_items), indexing="ij")
    )
    theta = rng.normal(size=num_persons)
    a = np.exp(0.3 * rng.normal(size=num_items))
    b = 0.2 + 1.0 * rng.normal(size=num_items)
    logits = a[item] * (theta[person] - b[item])
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-logits))).astype(float)
    return irt_2pl, (person, item, num_persons, num_items), {"y": y}


# ------------------------------------------------------------------------------------------
# Funnel
# ------------------------------------------------------------------------------------------
def funnel(dim=10):
    """Neal's funnel: a log-scale ``v`` and ``dim - 1`` coordinates with sd ``exp(v / 2)``."""
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    with numpyro.plate("coords", dim - 1):
        numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)))


def build_funnel_10d() -> Built:
    """The 10-D funnel; no data."""
    return funnel, (), {"dim": 10}


# ------------------------------------------------------------------------------------------
# Time series
# ------------------------------------------------------------------------------------------
def brownian_motion(num_steps, obs_idx, y=None):
    """Random walk observed with noise at ``obs_idx``; both scales unknown."""
    innov_scale = numpyro.sample("innov_scale", dist.LogNormal(0.0, 2.0))
    obs_scale = numpyro.sample("obs_scale", dist.LogNormal(0.0, 2.0))
    x = numpyro.sample("x", dist.GaussianRandomWalk(scale=innov_scale, num_steps=num_steps))
    with numpyro.plate("obs", len(obs_idx)):
        numpyro.sample("y", dist.Normal(x[obs_idx], obs_scale), obs=y)


def build_brownian_motion_missing() -> Built:
    """T=40 walk (innovation sd 0.1, noise sd 0.15), steps 15-24 unobserved."""
    rng = np.random.default_rng(107)
    num_steps = 40
    x = np.cumsum(0.1 * rng.normal(size=num_steps))
    obs_idx = np.setdiff1d(np.arange(num_steps), np.arange(15, 25))
    y = x[obs_idx] + 0.15 * rng.normal(size=obs_idx.size)
    return brownian_motion, (num_steps, obs_idx), {"y": y}


def ar1_missing(y, missing_idx):
    """Stationary AR(1) with unknown mean, coefficient and scale; NaNs in ``y`` are imputed."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    phi = numpyro.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    y_missing = numpyro.sample(
        "y_missing", dist.ImproperUniform(constraints.real, (), (len(missing_idx),))
    )
    y = jnp.asarray(y).at[missing_idx].set(y_missing)
    numpyro.sample("y0", dist.Normal(mu, sigma / jnp.sqrt(1.0 - phi**2)), obs=y[0])
    with numpyro.plate("time", len(y) - 1):
        numpyro.sample("y_next", dist.Normal(mu + phi * (y[:-1] - mu), sigma), obs=y[1:])


def build_ar1_missing() -> Built:
    """T=100 AR(1) (mu 1, phi 0.7, sigma 0.5) with 15 values missing at random."""
    rng = np.random.default_rng(108)
    num_steps, phi, sigma = 100, 0.7, 0.5
    y = np.empty(num_steps)
    y[0] = 1.0 + sigma / np.sqrt(1 - phi**2) * rng.normal()
    for t in range(1, num_steps):
        y[t] = 1.0 + phi * (y[t - 1] - 1.0) + sigma * rng.normal()
    missing_idx = np.sort(rng.choice(np.arange(1, num_steps), size=15, replace=False))
    y[missing_idx] = np.nan
    return ar1_missing, (y, missing_idx), {}


def nile_local_level(y):
    """Local-level model with a non-centred random-walk level (flows in 100s of m^3)."""
    level0 = numpyro.sample("level0", dist.Normal(10.0, 5.0))
    sigma_level = numpyro.sample("sigma_level", dist.HalfNormal(1.0))
    sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(3.0))
    with numpyro.plate("innovations", len(y) - 1):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    level = level0 + jnp.concatenate([jnp.zeros(1), jnp.cumsum(sigma_level * z)])
    with numpyro.plate("years", len(y)):
        numpyro.sample("y", dist.Normal(level, sigma_obs), obs=y)


def build_nile_local_level() -> Built:
    """Annual Nile flow 1871-1970 (statsmodels.datasets.nile), divided by 100."""
    from statsmodels.datasets import nile

    y = nile.load_pandas().data["volume"].to_numpy(dtype=float) / 100.0
    return nile_local_level, (y,), {}


def _simulate_sv(rng, num_steps: int, mu=-1.0, phi=0.95, sigma=0.25) -> np.ndarray:
    """Returns from an SV model with AR(1) log-variance."""
    h = np.empty(num_steps)
    h[0] = mu + sigma / np.sqrt(1 - phi**2) * rng.normal()
    for t in range(1, num_steps):
        h[t] = mu + phi * (h[t - 1] - mu) + sigma * rng.normal()
    return np.exp(h / 2) * rng.normal(size=num_steps)


def _sv_params():
    """Shared SV priors: log-variance mean, persistence and innovation scale."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    phi = numpyro.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    return mu, phi, sigma


def stoch_vol(returns):
    """Centred stochastic volatility; the AR(1) prior on ``h`` is written vectorised."""
    mu, phi, sigma = _sv_params()
    h = numpyro.sample("h", dist.ImproperUniform(constraints.real, (), (len(returns),)))
    numpyro.sample("h0", dist.Normal(mu, sigma / jnp.sqrt(1.0 - phi**2)), obs=h[0])
    with numpyro.plate("time", len(returns)):
        numpyro.sample("r", dist.Normal(0.0, jnp.exp(h / 2)), obs=returns)
    with numpyro.plate("transitions", len(returns) - 1):
        numpyro.sample("h_next", dist.Normal(mu + phi * (h[:-1] - mu), sigma), obs=h[1:])


def stoch_vol_scan(returns):
    """Centred stochastic volatility written as a state-space ``scan``."""
    mu, phi, sigma = _sv_params()
    h0 = numpyro.sample("h0", dist.Normal(mu, sigma / jnp.sqrt(1.0 - phi**2)))

    def transition(h_prev, r_t):
        h = numpyro.sample("h", dist.Normal(mu + phi * (h_prev - mu), sigma))
        numpyro.sample("r", dist.Normal(0.0, jnp.exp(h / 2)), obs=r_t)
        return h, None

    scan(transition, h0, returns)


def build_stoch_vol_t150() -> Built:
    """150 simulated returns (mu -1, phi 0.95, sigma 0.25)."""
    return stoch_vol, (_simulate_sv(np.random.default_rng(109), 150),), {}


def build_stoch_vol_scan_t2500() -> Built:
    """2,500 simulated daily returns (mu -1, phi 0.95, sigma 0.25)."""
    return stoch_vol_scan, (_simulate_sv(np.random.default_rng(110), 2500),), {}


# ------------------------------------------------------------------------------------------
# Gaussian-process latent functions
# ------------------------------------------------------------------------------------------
def _rbf_cholesky(x, lengthscale, jitter=1e-6):
    """Cholesky factor of a unit-amplitude squared-exponential kernel (rows of ``x``)."""
    sq = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    k = jnp.exp(-0.5 * sq / lengthscale**2) + jitter * jnp.eye(x.shape[0])
    return jnp.linalg.cholesky(k)


def lgcp(x, cell_width, counts=None):
    """Log-Gaussian Cox process on a 1-D grid, non-centred GP log-intensity."""
    lengthscale = numpyro.sample("lengthscale", dist.LogNormal(jnp.log(0.1), 0.5))
    amplitude = numpyro.sample("amplitude", dist.HalfNormal(2.0))
    mean = numpyro.sample("mean", dist.Normal(0.0, 3.0))
    with numpyro.plate("cells", len(x)):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        f = mean + amplitude * _rbf_cholesky(x[:, None], lengthscale) @ z
        numpyro.sample("counts", dist.Poisson(cell_width * jnp.exp(f)), obs=counts)


def build_lgcp_1d() -> Built:
    """Counts on 100 cells of [0, 1] from a smooth intensity (about 400 events)."""
    rng = np.random.default_rng(111)
    x = (np.arange(100) + 0.5) / 100
    intensity = 300.0 * np.exp(np.sin(6.0 * x) - 2.0 * (x - 0.6) ** 2)
    counts = rng.poisson(intensity / 100).astype(float)
    return lgcp, (x, 0.01), {"counts": counts}


def gp_classifier(x, y=None):
    """GP classification: Bernoulli outcomes on a non-centred latent GP with unknown hyperparameters."""
    lengthscale = numpyro.sample("lengthscale", dist.LogNormal(0.0, 0.5))
    amplitude = numpyro.sample("amplitude", dist.HalfNormal(2.0))
    bias = numpyro.sample("bias", dist.Normal(0.0, 1.0))
    with numpyro.plate("points", x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        f = bias + amplitude * _rbf_cholesky(x, lengthscale, jitter=1e-5) @ z
        numpyro.sample("y", dist.Bernoulli(logits=f), obs=y)


def build_gp_classifier() -> Built:
    """60 points in [-2, 2]^2 labelled by a noisy circular boundary."""
    rng = np.random.default_rng(112)
    x = rng.uniform(-2.0, 2.0, size=(60, 2))
    logits = 3.0 * (1.5 - np.sqrt(np.sum(x**2, axis=1)))
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-logits))).astype(float)
    return gp_classifier, (x,), {"y": y}


# ------------------------------------------------------------------------------------------
# ODE
# ------------------------------------------------------------------------------------------
def _lotka_volterra_rhs(z, t, theta):
    """Prey-predator dynamics with rates ``(alpha, beta, gamma, delta)``."""
    alpha, beta, gamma, delta = theta[0], theta[1], theta[2], theta[3]
    prey, predator = z[0], z[1]
    return jnp.stack(
        [alpha * prey - beta * prey * predator, -gamma * predator + delta * prey * predator]
    )


def lotka_volterra(times, y=None):
    """Lotka-Volterra ODE (``odeint``) with LogNormal observation noise per species."""
    z_init = numpyro.sample("z_init", dist.LogNormal(jnp.log(10.0), 1.0).expand([2]))
    theta = numpyro.sample(
        "theta",
        dist.LogNormal(jnp.log(jnp.array([1.0, 0.05, 1.0, 0.05])), 0.5),
    )
    sigma = numpyro.sample("sigma", dist.LogNormal(-1.0, 1.0).expand([2]))
    z = odeint(_lotka_volterra_rhs, z_init, times, theta, rtol=1e-6, atol=1e-6, mxstep=1000)
    numpyro.sample("y", dist.LogNormal(jnp.log(z), sigma), obs=y)


def build_lotka_volterra() -> Built:
    """20 noisy observations of both species, simulated with SciPy."""
    rng = np.random.default_rng(113)
    theta = (0.55, 0.028, 0.8, 0.024)
    times = np.linspace(0.0, 19.0, 20)

    def rhs(t, z):
        return np.asarray(_lotka_volterra_rhs(z, t, theta))

    sol = solve_ivp(rhs, (0.0, 19.0), [33.0, 6.0], t_eval=times, rtol=1e-10, atol=1e-10)
    y = sol.y.T * np.exp(0.15 * rng.normal(size=(times.size, 2)))
    return lotka_volterra, (times,), {"y": y}


# ------------------------------------------------------------------------------------------
# Regression: heavy tails, constrained sites, sanity
# ------------------------------------------------------------------------------------------
def student_t_regression(x, y=None):
    """Linear regression with Student-t noise of unknown degrees of freedom."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 5.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 5.0).expand([x.shape[1]]))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    nu = numpyro.sample("nu", dist.Gamma(2.0, 0.1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.StudentT(nu, alpha + x @ beta, sigma), obs=y)


def build_student_t_regression() -> Built:
    """150 points, 3 covariates, t(3) noise with scale 0.5."""
    rng = np.random.default_rng(114)
    x = rng.normal(size=(150, 3))
    y = 1.0 + x @ np.array([0.5, -1.0, 2.0]) + 0.5 * rng.standard_t(3.0, size=150)
    return student_t_regression, (x,), {"y": y}


def dirichlet_multinomial(total_count, num_categories, counts=None):
    """Category probabilities (a simplex) with a flat Dirichlet prior, multinomial counts."""
    probs = numpyro.sample("probs", dist.Dirichlet(jnp.ones(num_categories)))
    numpyro.sample("counts", dist.Multinomial(total_count, probs), obs=counts)


def build_dirichlet_multinomial() -> Built:
    """200 draws over 6 categories; the exact posterior is Dirichlet(1 + counts)."""
    rng = np.random.default_rng(115)
    counts = rng.multinomial(200, [0.05, 0.1, 0.15, 0.2, 0.2, 0.3]).astype(float)
    return dirichlet_multinomial, (200, 6), {"counts": counts}


def lkj_mvn(dim, y=None):
    """Multivariate normal with an LKJ prior on the correlation Cholesky factor."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0).expand([dim]))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([dim]))
    l_omega = numpyro.sample("L_omega", dist.LKJCholesky(dim, concentration=2.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.MultivariateNormal(mu, scale_tril=sigma[:, None] * l_omega), obs=y)


def build_lkj_mvn() -> Built:
    """100 draws of a correlated 4-D normal."""
    rng = np.random.default_rng(116)
    corr = np.array(
        [[1.0, 0.6, -0.3, 0.0], [0.6, 1.0, 0.0, 0.2], [-0.3, 0.0, 1.0, 0.4], [0.0, 0.2, 0.4, 1.0]]
    )
    sd = np.array([1.0, 2.0, 0.5, 1.5])
    y = rng.multivariate_normal([0.0, 1.0, -1.0, 2.0], corr * np.outer(sd, sd), size=100)
    return lkj_mvn, (4,), {"y": y}


def ordinal_logistic(x, num_categories, y=None):
    """Ordinal logistic regression with ordered cutpoints under an improper flat prior."""
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.0).expand([x.shape[1]]))
    cutpoints = numpyro.sample(
        "cutpoints",
        dist.ImproperUniform(constraints.ordered_vector, (), (num_categories - 1,)),
    )
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.OrderedLogistic(x @ beta, cutpoints), obs=y)


def build_ordinal_logistic() -> Built:
    """300 ratings on 5 levels from 3 covariates."""
    rng = np.random.default_rng(117)
    x = rng.normal(size=(300, 3))
    latent = x @ np.array([1.0, -0.5, 0.8]) + rng.logistic(size=300)
    y = np.searchsorted(np.array([-2.0, -0.5, 0.5, 2.0]), latent)
    return ordinal_logistic, (x, 5), {"y": y}


def logistic_regression(x, y=None):
    """Plain Bayesian logistic regression."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 5.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([x.shape[1]]))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=alpha + x @ beta), obs=y)


def build_logistic_regression() -> Built:
    """500 points, 20 standard-normal covariates, half of them with zero effect."""
    rng = np.random.default_rng(118)
    x = rng.normal(size=(500, 20))
    beta = np.concatenate([rng.normal(scale=0.7, size=10), np.zeros(10)])
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-(0.3 + x @ beta)))).astype(float)
    return logistic_regression, (x,), {"y": y}


# ------------------------------------------------------------------------------------------
# Multimodal (judged by ELBO only; no NUTS reference)
# ------------------------------------------------------------------------------------------
def gaussian_mixture(y=None, num_components=2):
    """1-D Gaussian mixture with unordered means: label switching gives symmetric modes."""
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(num_components)))
    locs = numpyro.sample("locs", dist.Normal(0.0, 5.0).expand([num_components]))
    scales = numpyro.sample("scales", dist.HalfNormal(2.0).expand([num_components]))
    mixture = dist.MixtureSameFamily(dist.Categorical(probs=weights), dist.Normal(locs, scales))
    with numpyro.plate("data", len(y)):
        numpyro.sample("y", mixture, obs=y)


def build_gaussian_mixture() -> Built:
    """200 points from 0.4 N(-2, 1) + 0.6 N(2.5, 0.8^2)."""
    rng = np.random.default_rng(119)
    first = rng.uniform(size=200) < 0.4
    y = np.where(first, rng.normal(-2.0, 1.0, size=200), rng.normal(2.5, 0.8, size=200))
    return gaussian_mixture, (), {"y": y}


def rank1_factorisation(num_rows, num_cols, y=None):
    """Rank-1 matrix factorisation ``y ~ N(u v^T, sigma)``: (u, v) and (-u, -v) are two modes."""
    u = numpyro.sample("u", dist.Normal(0.0, 1.0).expand([num_rows]))
    v = numpyro.sample("v", dist.Normal(0.0, 1.0).expand([num_cols]))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(jnp.outer(u, v), sigma), obs=y)


def build_rank1_factorisation() -> Built:
    """A 15 x 10 rank-1 matrix plus noise (sd 0.3)."""
    rng = np.random.default_rng(120)
    y = np.outer(rng.normal(size=15), rng.normal(size=10)) + 0.3 * rng.normal(size=(15, 10))
    return rank1_factorisation, (15, 10), {"y": y}


# ------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------
_ENTRIES = [
    ZooModel(
        "eight_schools_centered",
        build_eight_schools_centered,
        ("hierarchical", "centred", "normal", "funnel"),
        False,
        "Eight schools, centred (10 latents); data: Rubin (1981).",
    ),
    ZooModel(
        "eight_schools_noncentered",
        build_eight_schools_noncentered,
        ("hierarchical", "non-centred", "normal"),
        False,
        "Eight schools, non-centred (10 latents); data: Rubin (1981).",
    ),
    ZooModel(
        "hier_logistic_centered",
        build_hier_logistic_centered,
        ("hierarchical", "centred", "logistic", "glmm"),
        False,
        "Centred varying-intercept/slope logistic regression, 30 groups x 20 obs (64 latents); "
        "simulated.",
    ),
    ZooModel(
        "poisson_olre",
        build_poisson_olre,
        ("hierarchical", "centred", "poisson", "olre"),
        False,
        "Poisson regression with centred observation-level random effects, n=60 (63 latents); "
        "simulated.",
    ),
    ZooModel(
        "poisson_glmm_n40",
        build_poisson_glmm_n40,
        ("hierarchical", "non-centred", "poisson", "glmm", "olre"),
        False,
        "Poisson GLMM, 40 groups, non-centred varying intercepts and slopes plus observation-level "
        "effects, n=40 (125 latents); simulated.",
    ),
    ZooModel(
        "poisson_glmm_n1200",
        build_poisson_glmm_n1200,
        ("hierarchical", "non-centred", "poisson", "glmm", "olre", "large"),
        False,
        "Poisson GLMM as poisson_glmm_n40 with n=1200 (1285 latents); simulated.",
    ),
    ZooModel(
        "funnel_10d",
        build_funnel_10d,
        ("funnel", "centred", "no-data"),
        False,
        "Neal's 10-D funnel, v ~ N(0, 3), x_i ~ N(0, exp(v/2)) (10 latents); no data.",
    ),
    ZooModel(
        "brownian_motion_missing",
        build_brownian_motion_missing,
        ("time-series", "centred", "missing-data"),
        False,
        "Random walk, T=40, steps 15-24 missing, LogNormal(0, 2) innovation and observation "
        "scales (42 latents); simulated.",
    ),
    ZooModel(
        "ar1_missing",
        build_ar1_missing,
        ("time-series", "missing-data", "constrained"),
        False,
        "Stationary AR(1), T=100, unknown mean/coefficient/scale, 15 missing values imputed "
        "(18 latents); simulated.",
    ),
    ZooModel(
        "nile_local_level",
        build_nile_local_level,
        ("time-series", "non-centred", "real-data"),
        False,
        "Local-level model, non-centred random-walk level (103 latents); data: Nile flow, "
        "statsmodels.datasets.nile.",
    ),
    ZooModel(
        "stoch_vol_t150",
        build_stoch_vol_t150,
        ("time-series", "centred", "stochastic-volatility"),
        False,
        "Centred stochastic volatility with AR(1) log-variance, vectorised, T=150 (153 latents); "
        "simulated returns (statsmodels ships no daily return series).",
    ),
    ZooModel(
        "stoch_vol_scan_t2500",
        build_stoch_vol_scan_t2500,
        ("time-series", "centred", "stochastic-volatility", "scan", "large"),
        False,
        "Centred stochastic volatility written with numpyro.contrib.control_flow.scan, T=2500 "
        "(2504 latents); simulated returns (statsmodels ships no daily return series).",
    ),
    ZooModel(
        "crossed_glmm",
        build_crossed_glmm,
        ("hierarchical", "non-centred", "logistic", "glmm", "crossed"),
        False,
        "Logistic GLMM with crossed subject x item intercepts, 40 x 25 trials (69 latents); "
        "simulated.",
    ),
    ZooModel(
        "irt_2pl",
        build_irt_2pl,
        ("hierarchical", "irt", "logistic", "constrained", "large"),
        False,
        "2PL item response, 300 persons x 100 items, 30,000 responses (503 latents); simulated.",
    ),
    ZooModel(
        "lgcp_1d",
        build_lgcp_1d,
        ("gp", "poisson", "non-centred"),
        False,
        "Log-Gaussian Cox process on a 100-cell grid, squared-exponential GP with unknown "
        "lengthscale and amplitude (103 latents); simulated.",
    ),
    ZooModel(
        "gp_classifier",
        build_gp_classifier,
        ("gp", "logistic", "non-centred"),
        False,
        "GP classifier, 60 points in 2-D, unknown lengthscale/amplitude/bias (63 latents); "
        "simulated.",
    ),
    ZooModel(
        "lotka_volterra",
        build_lotka_volterra,
        ("ode", "constrained"),
        False,
        "Lotka-Volterra via jax.experimental.ode.odeint: 4 rates, 2 initial states, 2 LogNormal "
        "noise scales (8 latents); simulated.",
    ),
    ZooModel(
        "student_t_regression",
        build_student_t_regression,
        ("regression", "heavy-tails"),
        False,
        "Linear regression with Student-t noise, unknown degrees of freedom (6 latents); "
        "simulated.",
    ),
    ZooModel(
        "dirichlet_multinomial",
        build_dirichlet_multinomial,
        ("constrained", "simplex", "conjugate"),
        False,
        "Flat Dirichlet over 6 category probabilities, multinomial counts (6 latents, 5 free); "
        "exact posterior Dirichlet(1 + counts); simulated.",
    ),
    ZooModel(
        "lkj_mvn",
        build_lkj_mvn,
        ("constrained", "correlation", "multivariate"),
        False,
        "4-D normal with LKJCholesky(2) correlation, HalfNormal scales (14 free latents); "
        "simulated.",
    ),
    ZooModel(
        "ordinal_logistic",
        build_ordinal_logistic,
        ("constrained", "ordered", "regression"),
        False,
        "Ordinal logistic regression, 5 levels, flat prior on ordered cutpoints (7 latents); "
        "simulated.",
    ),
    ZooModel(
        "logistic_regression",
        build_logistic_regression,
        ("regression", "logistic", "sanity"),
        False,
        "Logistic regression, n=500, D=20 (21 latents); simulated.",
    ),
    ZooModel(
        "gaussian_mixture",
        build_gaussian_mixture,
        ("multimodal", "mixture", "constrained"),
        True,
        "2-component 1-D Gaussian mixture with unordered means (label switching; 6 latents); "
        "simulated.",
    ),
    ZooModel(
        "rank1_factorisation",
        build_rank1_factorisation,
        ("multimodal", "sign-symmetry"),
        True,
        "Rank-1 factorisation of a 15 x 10 matrix, sign symmetry (26 latents); simulated.",
    ),
]

ZOO: dict[str, ZooModel] = {entry.name: entry for entry in _ENTRIES}

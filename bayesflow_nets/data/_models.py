"""Built-in NumPyro models for the demo and tests (data embedded, nothing downloaded)."""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist

# Rubin (1981) / Gelman et al., Bayesian Data Analysis: SAT coaching effects in eight schools.
EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools() -> dict[str, np.ndarray]:
    """The eight-schools data: ``{"y": effects, "sigma": standard errors}``."""
    return {"y": EIGHT_SCHOOLS_Y.copy(), "sigma": EIGHT_SCHOOLS_SIGMA.copy()}


def eight_schools_noncentered(sigma, y=None):
    """Non-centred eight schools (posteriordb ``eight_schools_noncentered``)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)

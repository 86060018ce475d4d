"""Centred eight schools (Rubin 1981) for ``bayesflow-nets fit``.

    bayesflow-nets fit examples/models/eight_schools.py:model \\
        --data examples/models/eight_schools.json --method nuts --out eight_schools.nc
"""

import numpyro
import numpyro.distributions as dist


def model(sigma, y=None):
    """Centred parametrisation: the funnel between ``tau`` and ``theta`` troubles plain NUTS."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def model_noncentered(sigma, y=None):
    """Non-centred parametrisation (``theta`` as a deterministic site)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)

"""VI on a user model with AutoEMF: eight schools (non-centred), one call to fit_vi.

.venv/bin/python examples/emf_vi.py [--quick]
"""

import argparse

import numpyro

numpyro.enable_x64()

import arviz as az  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import Predictive  # noqa: E402

from bayesflow_nets.emf import AutoEMF, fit_vi, gate_values  # noqa: E402

Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", sigma.shape[0]):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    guide = AutoEMF(eight_schools)  # gated structured layer on a MAF backbone
    kw = {"num_steps": 500, "chunk": 250, "min_steps": 250} if args.quick else {}
    result = fit_vi(eight_schools, guide, SIGMA, Y, rng_key=jax.random.PRNGKey(0), **kw)
    print(result)
    print("gates:", {k: round(float(v), 3) for k, v in gate_values(guide, result.params).items()})
    print(az.summary(result.to_arviz(n=2000), var_names=["mu", "tau", "theta"], kind="stats"))
    # the fitted guide plugs into NumPyro's Predictive unchanged
    ppc = Predictive(eight_schools, guide=guide, params=result.params, num_samples=100)(
        jax.random.PRNGKey(1), SIGMA
    )
    print("posterior predictive y:", ppc["y"].shape)


if __name__ == "__main__":
    main()

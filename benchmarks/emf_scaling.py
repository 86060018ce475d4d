"""AutoEMF's cost against the number of latents: a Poisson hierarchy with observation-level
effects at D ≈ 10², 10³, 10⁴ (float64, default ``fit_vi``), each size in its own process.

Per size: the backbone ``"auto"`` resolves to, wall time of ``fit_vi`` + 1000 draws (compile
included), training time per optimiser step (pilot and rejected chunks included), peak resident
memory of the process, ELBO and PSIS k̂; AutoNormal (SVI, Adam(5e-3), 8 particles, 5000 steps)
for comparison.

    python benchmarks/emf_scaling.py                     # D ≈ 100, 1000, 10000
    python benchmarks/emf_scaling.py --sizes 100,1000
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

OUT = pathlib.Path(__file__).resolve().parent / "results" / "emf_scaling.json"


def make_problem(num_obs: int, seed: int = 0):
    """Poisson counts in ``num_obs // 10`` groups, one effect per observation and per group:
    D = num_obs + num_obs // 10 + 3 latents."""
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    import numpyro.distributions as dist

    rng = np.random.default_rng(seed)
    groups = num_obs // 10
    g = np.repeat(np.arange(groups), 10)
    eta = 0.5 + rng.normal(0, 0.5, groups)[g] + rng.normal(0, 0.3, num_obs)
    y = rng.poisson(np.exp(eta))

    def model(g, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
        tau = numpyro.sample("tau", dist.HalfNormal(1.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        with numpyro.plate("groups", groups):
            a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        with numpyro.plate("obs", num_obs):
            e = numpyro.sample("e", dist.Normal(0.0, 1.0))
            numpyro.sample("y", dist.Poisson(jnp.exp(mu + tau * a[g] + sigma * e)), obs=y)

    return model, (jnp.asarray(g),), {"y": jnp.asarray(y)}


def run_one(num_obs: int, method: str) -> dict:
    import numpyro

    numpyro.enable_x64()
    import jax
    import numpy as np
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal

    from bayesflow_nets.emf import AutoEMF, fit_vi, resolve_backbone
    from bayesflow_nets.emf._evaluation import log_weights

    model, args, kwargs = make_problem(num_obs)
    dim = num_obs + num_obs // 10 + 3
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    if method == "AutoEMF":
        res = fit_vi(model, AutoEMF(model), *args, rng_key=key, progress=False, **kwargs)
        jax.block_until_ready(res.samples(jax.random.PRNGKey(1), 1000))
        row = {"backbone": resolve_backbone("auto", dim), "elbo": res.elbo, "khat": res.khat,
               "status": res.status, "steps_run": res.steps_run,
               "step_ms": 1e3 * res.train_time / max(res.steps_run, 1)}
    else:
        guide = AutoNormal(model)
        svi = SVI(model, guide, numpyro.optim.Adam(5e-3), Trace_ELBO(num_particles=8))
        t1 = time.perf_counter()
        res = svi.run(key, 5000, *args, progress_bar=False, **kwargs)
        jax.block_until_ready(res.params)
        logw = np.asarray(log_weights(model, guide, res.params, key, 1000, args, kwargs))
        row = {"elbo": float(np.mean(logw[np.isfinite(logw)])), "steps_run": 5000,
               "step_ms": 1e3 * (time.perf_counter() - t1) / 5000}
    row.update({"method": method, "num_obs": num_obs, "latents": dim,
                "wall_s": time.perf_counter() - t0,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="90,900,9000", help="numbers of observations")
    parser.add_argument("--methods", default="AutoEMF,AutoNormal")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.row:
        n, method = a.row.split(":")
        print("ROW " + json.dumps(run_one(int(n), method)), flush=True)
        return
    rows = []
    print("| method | latents | backbone | wall s | ms/step | steps | peak RSS MB | ELBO |")
    print("|---|---|---|---|---|---|---|---|")
    for n in a.sizes.split(","):
        for method in a.methods.split(","):
            out = subprocess.run([sys.executable, __file__, "--row", f"{n}:{method}"],
                                 capture_output=True, text=True,
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"})
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("ROW ")]
            if not lines:
                print(f"| {method} | n={n} | failed: {out.stderr.strip().splitlines()[-1:]} |")
                continue
            r = json.loads(lines[-1][4:])
            rows.append(r)
            print(f"| {method} | {r['latents']} | {r.get('backbone', '–')} | {r['wall_s']:.1f} | "
                  f"{r['step_ms']:.2f} | {r['steps_run']} | {r['peak_rss_mb']:.0f} | "
                  f"{r['elbo']:.1f} |", flush=True)
    OUT.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

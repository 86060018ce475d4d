"""``fit_vi`` with a subsampling plate: Bayesian logistic regression with N = 10⁶ observations
and D = 100 coefficients, the data plate subsampled (``subsample_size``), each method in its own
process (float64 parameters, float32 design matrix).

Reference: the full-data Laplace approximation (Newton's method on all N rows); at this N the
posterior is Gaussian to high accuracy. Per method: wall time (data placement, compile, training
and 1000 draws), optimiser steps and training time per step, peak resident memory of the
process, the full-data ELBO and PSIS k̂ from 1000 draws, and against the reference mean_err =
mean over coefficients of |mean − ref mean| / ref sd, sd_logerr = mean |log(sd / ref sd)|, with
their worst coefficients. Methods: AutoEMF (default ``fit_vi``) and NumPyro's AutoNormal (SVI,
Adam(5e-3), 8 particles, 5000 steps), both on minibatches of ``--subsample`` rows.

    python benchmarks/emf_subsample.py                        # N = 10⁶, D = 100, 1000 per step
    python benchmarks/emf_subsample.py --n 100000 --subsample 500
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

OUT = pathlib.Path(__file__).resolve().parent / "results" / "emf_subsample.json"
METHODS = ("AutoEMF", "AutoNormal")


def make_problem(n: int, d: int, seed: int = 0):
    """Design matrix (float32, first column ones), labels, true coefficients."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x[:, 0] = 1.0
    beta = rng.normal(0.0, 1.0 / np.sqrt(d), d)
    p = 1.0 / (1.0 + np.exp(-(x @ beta)))
    y = (rng.uniform(size=n) < p).astype(np.float32)
    return x, y, beta


def model(x, y, subsample_size=None):
    import numpyro
    import numpyro.distributions as dist

    n, d = x.shape
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
    with numpyro.plate("data", n, subsample_size=subsample_size) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=x[idx] @ beta), obs=y[idx])


def laplace_reference(x, y, iters: int = 20, block: int = 100_000):
    """Full-data MAP (Newton's method, prior N(0, 1)) and the inverse Hessian there."""
    import numpy as np

    d = x.shape[1]
    beta = np.zeros(d)
    for _ in range(iters):
        grad, hess = -beta, -np.eye(d)
        for s in range(0, len(x), block):
            xb = x[s : s + block].astype(np.float64)
            p = 1.0 / (1.0 + np.exp(-(xb @ beta)))
            grad += xb.T @ (y[s : s + block] - p)
            hess -= (xb * (p * (1 - p))[:, None]).T @ xb
        step = np.linalg.solve(hess, grad)
        beta = beta - step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta, np.linalg.inv(-hess)


def run_one(method: str, n: int, d: int, subsample: int, seed: int) -> dict:
    import numpyro

    numpyro.enable_x64()
    import arviz as az
    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal

    from bayesflow_nets.emf import AutoEMF, fit_vi
    from bayesflow_nets.emf._evaluation import all_log_weights
    from bayesflow_nets.emf._subsample import eval_batch, full_data

    x, y, _ = make_problem(n, d)
    t_ref = time.perf_counter()
    ref_mean, ref_cov = laplace_reference(x, y)
    t_ref = time.perf_counter() - t_ref
    key = jax.random.PRNGKey(seed)
    plates = {"data": (n, subsample)}
    t0 = time.perf_counter()
    xs, ys = jax.block_until_ready((jnp.asarray(x), jnp.asarray(y)))
    del x, y
    args, kwargs = (xs, ys), {"subsample_size": subsample}
    if method == "AutoEMF":
        res = fit_vi(model, AutoEMF(model), *args, rng_key=key, progress=False, **kwargs)
        draws = jax.block_until_ready(res.samples(jax.random.fold_in(key, 1), 1000))["beta"]
        extra = {
            "status": res.status,
            "init": res.init,
            "steps": res.steps_run,
            "train_s": res.train_time,
        }
        elbo, khat = res.elbo, res.khat
    else:
        guide = AutoNormal(model)
        svi = SVI(model, guide, numpyro.optim.Adam(5e-3), Trace_ELBO(num_particles=8))
        t_train = time.perf_counter()
        out = svi.run(key, 5000, *args, progress_bar=False, **kwargs)
        params = jax.block_until_ready(out.params)
        t_train = time.perf_counter() - t_train
        logw = all_log_weights(
            full_data(model, plates),
            full_data(guide, plates),
            params,
            jax.random.fold_in(key, 2),
            1000,
            args,
            kwargs,
            eval_batch(plates, 1000),
        )
        draws = guide.sample_posterior(jax.random.fold_in(key, 1), params, sample_shape=(1000,))
        draws = jax.block_until_ready(draws)["beta"]
        finite = logw[np.isfinite(logw)]
        elbo = float(finite.mean())
        khat = float(az.psislw(finite.copy())[1])
        extra = {"status": "ok", "steps": 5000, "train_s": t_train}
    wall = time.perf_counter() - t0
    draws = np.asarray(draws)
    sd = np.sqrt(np.diag(ref_cov))
    mean_err = np.abs(draws.mean(0) - ref_mean) / sd
    sd_err = np.abs(np.log(draws.std(0) / sd))
    return {
        "method": method,
        "n": n,
        "d": d,
        "subsample": subsample,
        "seed": seed,
        "wall_s": wall,
        **extra,
        "step_ms": 1e3 * extra["train_s"] / extra["steps"],
        "elbo": float(elbo),
        "khat": float(khat),
        "mean_err": float(mean_err.mean()),
        "mean_err_max": float(mean_err.max()),
        "sd_logerr": float(sd_err.mean()),
        "sd_logerr_max": float(sd_err.max()),
        "reference_s": t_ref,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=100)
    parser.add_argument("--subsample", type=int, default=1000)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--row", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.row:
        print("ROW " + json.dumps(run_one(a.row, a.n, a.d, a.subsample, a.seed)), flush=True)
        return
    out_path = pathlib.Path(a.out)
    stored = json.loads(out_path.read_text())["rows"] if out_path.exists() else []
    rows = {r["method"]: r for r in stored}
    print(
        "| method | N | D | subsample | wall s | steps | ms/step | peak RSS MB | ELBO | k̂ | "
        "mean_err (max) | sd_logerr (max) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for method in a.methods.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--row",
            method,
            "--n",
            str(a.n),
            "--d",
            str(a.d),
            "--subsample",
            str(a.subsample),
            "--seed",
            str(a.seed),
        ]
        out = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
        )
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("ROW ")]
        if out.returncode != 0 or not lines:
            err = (out.stderr.strip().splitlines() or ["?"])[-1][:300]
            rows[method] = {"method": method, "status": "error", "error": err}
            print(f"| {method} | error: {err} |", flush=True)
            continue
        r = json.loads(lines[-1][4:])
        rows[method] = r
        print(
            f"| {method} | {r['n']} | {r['d']} | {r['subsample']} | {r['wall_s']:.1f} | "
            f"{r['steps']} | {r['step_ms']:.2f} | {r['peak_rss_mb']:.0f} | {r['elbo']:.1f} | "
            f"{r['khat']:.2f} | {r['mean_err']:.3f} ({r['mean_err_max']:.2f}) | "
            f"{r['sd_logerr']:.3f} ({r['sd_logerr_max']:.2f}) |",
            flush=True,
        )
    record = {"command": " ".join(sys.argv), "rows": list(rows.values())}
    out_path.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

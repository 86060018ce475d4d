"""The EMF paper's VI suite (MATH.md §1): ELBO ± s.e. over seeds, EMF/GEMF vs NumPyro baselines.

Models (bayesflow_nets.data.emf_vi_problem): Brownian motion and Lorenz, smoothing/bridge ×
regression/classification, eight schools (non-centred), linear/tanh collider trees of depth 4 and 8;
observations pinned to the seed-0 prior draw. Methods, all with the same step budget, the same
optimiser (Adam, warm-up + cosine schedule, peak 5e-3, clipping at 10) and 8 ELBO particles:

- baselines via NumPyro ``SVI``: AutoNormal (mean-field), AutoMultivariateNormal, AutoIAFNormal,
  and AutoASVI (ours, the ASVI baseline), initialised at the prior median (``init_to_median``);
- ours via ``fit_vi``: AutoEMF ``gated=False`` (EMF) and ``gated=True`` (GEMF) with backbones
  "mvn" and "iaf" (Laplace initialisation, gates at 10× learning rate, fit_vi defaults otherwise).

Every fitted guide is scored by the same estimator: the mean of log p(x, y) − log q(x) over
``--eval`` fresh guide draws (≥ 150), ± its standard error; the table reports the mean over seeds ±
the standard error over seeds. Compiled programs are cached on disk (``/tmp``) so later seeds
reuse them; times are wall seconds on a shared, loaded 2-core machine.

    .venv/bin/python benchmarks/emf_vi_suite.py --quick
    .venv/bin/python benchmarks/emf_vi_suite.py [--seeds 3 --steps 1000 --models a,b]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
import warnings

import jax

jax.config.update("jax_compilation_cache_dir", "/tmp/bayesflow_nets_jax_cache")
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import numpy as np  # noqa: E402
import optax  # noqa: E402
from numpyro import handlers  # noqa: E402
from numpyro.infer import SVI, Trace_ELBO  # noqa: E402
from numpyro.infer.autoguide import (  # noqa: E402
    AutoIAFNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from numpyro.infer.initialization import init_to_median  # noqa: E402
from numpyro.infer.util import log_density  # noqa: E402
from numpyro.optim import optax_to_numpyro  # noqa: E402

from bayesflow_nets.data import EMF_VI_MODELS, emf_vi_problem  # noqa: E402
from bayesflow_nets.emf import AutoASVI, AutoEMF, fit_vi  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "results" / "emf_vi_suite.json"
BASELINES = {
    "MeanField": lambda m: AutoNormal(m, init_loc_fn=init_to_median),
    "MVN": lambda m: AutoMultivariateNormal(m, init_loc_fn=init_to_median),
    "IAF": lambda m: AutoIAFNormal(m, init_loc_fn=init_to_median),
    "ASVI": lambda m: AutoASVI(m, init_loc_fn=init_to_median),
}
OURS = {
    "EMF-mvn": dict(backbone="mvn", gated=False),
    "GEMF-mvn": dict(backbone="mvn", gated=True),
    "EMF-iaf": dict(backbone="iaf", gated=False),
    "GEMF-iaf": dict(backbone="iaf", gated=True),
}
METHODS = tuple(BASELINES) + tuple(OURS)
QUICK_MODELS = ("brownian_smoothing_regression", "eight_schools", "tree_linear_d4")


def elbo_estimate(model, guide, params, key, n, y):
    """Mean and s.e. of log p(x, y) − log q(x) over ``n`` guide draws."""

    def one(k):
        lq, gtr = log_density(handlers.seed(guide, k), (y,), {}, params)
        lp, _ = log_density(handlers.replay(model, gtr), (y,), {}, params)
        return lp - lq

    w = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(key, n)))
    w = w[np.isfinite(w)]
    if w.size == 0:
        return float("nan"), float("nan")
    return float(np.mean(w)), float(np.std(w) / np.sqrt(w.size))


def optimiser(steps, lr=5e-3):
    sched = optax.warmup_cosine_decay_schedule(
        lr / 10, lr, min(200, steps // 10 + 1), steps, lr / 100
    )
    return optax.chain(optax.clip_by_global_norm(10.0), optax.adam(sched))


def run_baseline(name, model, y, key, steps):
    guide = BASELINES[name](model)
    svi = SVI(model, guide, optax_to_numpyro(optimiser(steps)), Trace_ELBO(num_particles=8))
    res = svi.run(key, steps, y, progress_bar=False, stable_update=True)
    return guide, res.params


def run_ours(name, model, y, key, steps):
    guide = AutoEMF(model, **OURS[name])
    res = fit_vi(
        model,
        guide,
        y,
        rng_key=key,
        progress=False,
        num_steps=steps,
        num_particles=8,  # as the baselines (fit_vi's default is 16)
        chunk=steps,
        min_steps=steps,
        num_eval=150,
    )
    return guide, res.params


def summarise(rows):
    out = {}
    for r in rows:
        out.setdefault((r["model"], r["method"]), []).append(r)
    table = []
    for (model, method), rs in out.items():
        e = np.array([r["elbo"] for r in rs])
        e = e[np.isfinite(e)]
        se = float(np.std(e, ddof=1) / np.sqrt(e.size)) if e.size > 1 else float(rs[0]["elbo_se"])
        table.append(
            dict(
                model=model,
                method=method,
                elbo=float(np.mean(e)) if e.size else float("nan"),
                se=se,
                seeds=len(rs),
                time=float(np.mean([r["time"] for r in rs])),
            )
        )
    return table


def markdown(table, methods):
    models = list(dict.fromkeys(t["model"] for t in table))
    cell = {(t["model"], t["method"]): t for t in table}
    lines = ["| model | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for m in models:
        best = max(
            (
                cell[(m, k)]["elbo"]
                for k in methods
                if (m, k) in cell and np.isfinite(cell[(m, k)]["elbo"])
            ),
            default=np.nan,
        )
        row = []
        for k in methods:
            if (m, k) not in cell:
                row.append("–")
                continue
            c = cell[(m, k)]
            s = f"{c['elbo']:.2f} ± {c['se']:.2f}"
            row.append(f"**{s}**" if c["elbo"] >= best - c["se"] - 1e-12 else s)
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--steps", type=int, default=None, help="default 1000 (300 with --quick)")
    ap.add_argument("--eval", type=int, default=500, help="draws per ELBO estimate (>= 150)")
    ap.add_argument("--models", default="", help="comma-separated subset of EMF_VI_MODELS")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--resume", action="store_true", help="keep rows already in the JSON file")
    args = ap.parse_args()
    seeds = args.seeds or (1 if args.quick else 3)
    steps = args.steps or (300 if args.quick else 1000)
    models = (
        args.models.split(",") if args.models else (QUICK_MODELS if args.quick else EMF_VI_MODELS)
    )
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
    if args.eval < 150:
        raise SystemExit("--eval must be >= 150")
    config = dict(seeds=seeds, steps=steps, particles=8, eval_draws=args.eval, quick=args.quick)
    out = OUT.with_name("emf_vi_suite_quick.json") if args.quick else OUT
    rows = json.loads(out.read_text())["rows"] if args.resume and out.exists() else []
    done = {(r["model"], r["method"], r["seed"]) for r in rows}
    t_start = time.perf_counter()
    for name in models:
        model, y = emf_vi_problem(name, seed=0)
        for method in methods:
            for seed in range(seeds):
                if (name, method, seed) in done:
                    continue
                key = jax.random.PRNGKey(seed)
                k_fit, k_eval = jax.random.split(key)
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    run = run_baseline if method in BASELINES else run_ours
                    guide, params = run(method, model, y, k_fit, steps)
                    elbo, se = elbo_estimate(model, guide, params, k_eval, args.eval, y)
                dt = time.perf_counter() - t0
                rows.append(
                    dict(model=name, method=method, seed=seed, elbo=elbo, elbo_se=se, time=dt)
                )
                print(
                    f"{name:36s} {method:10s} seed {seed}  ELBO {elbo:10.3f} ± {se:.3f}  {dt:6.1f}s",
                    flush=True,
                )
                out.write_text(
                    json.dumps(dict(config=config, rows=rows, table=summarise(rows)), indent=1)
                )
    table = summarise(rows)
    print(
        f"\nELBO (mean over {seeds} seeds ± s.e.; {steps} steps; total {time.perf_counter() - t_start:.0f}s)"
    )
    print(markdown(table, [m for m in METHODS if m in methods]))
    out.write_text(json.dumps(dict(config=config, rows=rows, table=table), indent=1))


if __name__ == "__main__":
    main()

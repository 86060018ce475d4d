"""Extrapolation with improper vs proper GP kernels on real data (statsmodels) and a random walk.

Each series: fit hyperparameters by (REML) marginal likelihood on the first 80 % (in time), then
forecast the last 20 %. Metrics on the original scale: RMSE of the predictive mean and the mean
predictive log density (MPLD) of the held-out points under N(mean, var_f + noise).

Models: ours — improper SmoothWalk, MaternWalk ν ∈ {1/2, 3/2, 5/2}, Brownian (flat level, REML);
proper SE and Matérn-5/2 with a flat (GLS) constant mean. Anchors — tinygp Matern52 and SE with
the training mean (hyperparameters by the same L-BFGS on tinygp's log-likelihood) and sklearn
GaussianProcessRegressor (C·RBF + White, C·Matern(2.5) + White, normalize_y, 2 restarts).
Data: statsmodels co2 (weekly; monthly means with --quick), nile, sunspots — bundled, no download.

    python benchmarks/gp_extrapolation.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from bayesflow_nets.gp import (  # noqa: E402
    Brownian,
    ImproperGP,
    Matern52,
    MaternWalk,
    SmoothWalk,
    SquaredExponential,
    fit_reml,
    supports_state_space,
)

RESULTS = os.path.join(os.path.dirname(__file__), "results", "gp_extrapolation.json")


# ------------------------------------------------------------------------------------ data
def load_series(name: str, quick: bool):
    import statsmodels.api as sm

    if name == "co2":
        df = sm.datasets.co2.load_pandas().data.dropna()
        if quick:
            df = df.resample("MS").mean().dropna()
        idx = df.index
        t = idx.year + (idx.day_of_year - 1) / 365.25
        return np.asarray(t, float), np.asarray(df["co2"], float)
    if name == "nile":
        df = sm.datasets.nile.load_pandas().data
        return df["year"].to_numpy(float), df["volume"].to_numpy(float)
    if name == "sunspots":
        df = sm.datasets.sunspots.load_pandas().data
        return df["YEAR"].to_numpy(float), df["SUNACTIVITY"].to_numpy(float)
    if name == "random_walk":
        rng = np.random.default_rng(0)
        t = np.sort(rng.uniform(0.0, 100.0, 300))
        steps = np.diff(np.concatenate([[0.0], t]))
        f = np.cumsum(np.sqrt(steps) * rng.normal(size=t.size))
        return t, f + 0.3 * rng.normal(size=t.size)
    raise ValueError(name)


def split(t, y, frac=0.8):
    k = int(round(frac * len(t)))
    return t[:k], y[:k], t[k:], y[k:]


def metrics(mean, var, y_test, y_sd):
    """RMSE and MPLD on the original scale (inputs are standardised predictions)."""
    mean = np.asarray(mean) * y_sd
    var = np.asarray(var) * y_sd**2
    resid = np.asarray(y_test) - mean
    rmse = float(np.sqrt(np.mean(resid**2)))
    mpld = float(np.mean(-0.5 * (np.log(2 * np.pi * var) + resid**2 / var)))
    return rmse, mpld


# ------------------------------------------------------------------------------- our models
QUICK_MODELS = (
    "ours SmoothWalk",
    "ours MaternWalk-3/2",
    "ours Brownian",
    "ours SE (flat mean)",
    "tinygp Matern52 (train mean)",
    "sklearn SE",
)


def our_candidates(span: float):
    """Kernel factories keyed by name (initial lengthscales: span/20 and span/4; quick: span/10)."""
    return {
        "ours SmoothWalk": lambda ell: SmoothWalk(ell, 1.0 / ell),
        "ours MaternWalk-1/2": lambda ell: MaternWalk(0.5, ell, 1.0 / ell),
        "ours MaternWalk-3/2": lambda ell: MaternWalk(1.5, ell, 1.0 / ell),
        "ours MaternWalk-5/2": lambda ell: MaternWalk(2.5, ell, 1.0 / ell),
        "ours Brownian": lambda ell: Brownian(1.0 / span),
        "ours SE (flat mean)": lambda ell: SquaredExponential(ell, 1.0),
        "ours Matern52 (flat mean)": lambda ell: Matern52(ell, 1.0),
    }


def fit_ours(make, t, ys, span, steps, inits):
    best = None
    for ell in inits:
        kernel = make(ell)
        gp = ImproperGP(kernel, t, 0.1, flat_mean=True)
        method = "state_space" if supports_state_space(kernel) else "contrast"
        res = fit_reml(gp, ys, steps=steps, method=method)
        reml = float(res.gp._log_marginal_likelihood(jnp.asarray(ys), method)[0])
        if np.isfinite(reml) and (best is None or reml > best[1]):
            best = (res.gp, reml, method, res.status)
        if isinstance(kernel, Brownian):
            break  # no lengthscale
    return best


# ----------------------------------------------------------------------------------- anchors
def fit_tinygp(kind, t, ys, span, steps, inits):
    from tinygp import GaussianProcess, kernels

    base = kernels.Matern52 if kind == "Matern52" else kernels.ExpSquared

    def build(p):
        k = jnp.exp(p["log_amp"]) * base(scale=jnp.exp(p["log_ell"]))
        return GaussianProcess(k, t, diag=jnp.exp(p["log_noise"]), mean=p["mean"])

    @jax.jit
    def loss(p):
        return -build(p).log_probability(ys) / len(ys)

    opt = optax.lbfgs()

    @jax.jit
    def step(p, state):
        v, g = jax.value_and_grad(loss)(p)
        u, state = opt.update(g, state, p, value=v, grad=g, value_fn=loss)
        return optax.apply_updates(p, u), state, v

    best = None
    for ell in inits:
        p = {
            "log_amp": jnp.zeros(()),
            "log_ell": jnp.log(ell),
            "log_noise": jnp.log(0.1),
            "mean": jnp.zeros(()),
        }
        state = opt.init(p)
        for _ in range(steps):
            p_new, state, v = step(p, state)
            if not np.isfinite(float(loss(p_new))):
                break
            p = p_new
        v = float(loss(p))
        if np.isfinite(v) and (best is None or v < best[1]):
            best = (p, v)
    return build, best[0]


def run_tinygp(kind, t_tr, ys, t_te, span, steps, inits):
    build, p = fit_tinygp(kind, jnp.asarray(t_tr), jnp.asarray(ys), span, steps, inits)
    gp = build(p)
    _, cond = gp.condition(jnp.asarray(ys), jnp.asarray(t_te))
    return np.asarray(cond.loc), np.asarray(cond.variance) + float(jnp.exp(p["log_noise"]))


def run_sklearn(kind, t_tr, ys, t_te, span):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

    base = RBF(span / 10, (1e-3 * span, 1e3 * span))
    if kind == "Matern52":
        base = Matern(span / 10, (1e-3 * span, 1e3 * span), nu=2.5)
    kernel = ConstantKernel(1.0, (1e-4, 1e4)) * base + WhiteKernel(0.1, (1e-8, 1e1))
    reg = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(t_tr[:, None], ys)
    mean, std = reg.predict(t_te[:, None], return_std=True)  # std includes the white noise
    return mean, std**2


# -------------------------------------------------------------------------------------- main
def evaluate_series(name, quick, steps):
    t, y = load_series(name, quick)
    t_tr, y_tr, t_te, y_te = split(t, y)
    t0 = t_tr[0]
    t_tr, t_te = t_tr - t0, t_te - t0
    y_mu, y_sd = float(np.mean(y_tr)), float(np.std(y_tr))
    ys = (y_tr - y_mu) / y_sd
    span = float(t_tr[-1] - t_tr[0])
    rows = []
    inits = (span / 10,) if quick else (span / 20, span / 4)

    def wanted(model):
        return not quick or model in QUICK_MODELS

    def add(model, mean_std, var_std, extra=None, seconds=None):
        rmse, mpld = metrics(np.asarray(mean_std) + 0.0, var_std, y_te - y_mu, y_sd)
        row = {"series": name, "model": model, "rmse": rmse, "mpld": mpld, "fit_s": seconds}
        row.update(extra or {})
        rows.append(row)
        print(
            f"{name:12s} {model:28s} RMSE {rmse:10.4f}  MPLD {mpld:9.3f}  ({seconds:.1f}s)",
            flush=True,
        )

    for model, make in our_candidates(span).items():
        if not wanted(model):
            continue
        t1 = time.perf_counter()
        gp, reml, method, status = fit_ours(make, t_tr, ys, span, steps, inits)
        post = gp.predict(jnp.asarray(ys), jnp.asarray(t_te), method=method)
        var = np.asarray(post.variance) + float(gp.noise[0])
        hyper = {
            k: float(v)
            for k, v in {
                "lengthscale": getattr(gp.kernel, "lengthscale", np.nan),
                "variance": getattr(gp.kernel, "variance", np.nan),
                "noise": gp.noise[0],
            }.items()
        }
        add(
            model,
            post.mean,
            var,
            {"reml": reml, "method": method, "status": status, "hyper_std_scale": hyper},
            time.perf_counter() - t1,
        )
    for kind in ("Matern52", "SE"):
        if wanted(f"tinygp {kind} (train mean)"):
            t1 = time.perf_counter()
            mean, var = run_tinygp(kind, t_tr, ys, t_te, span, steps, inits)
            add(f"tinygp {kind} (train mean)", mean, var, seconds=time.perf_counter() - t1)
        if wanted(f"sklearn {kind}"):
            t1 = time.perf_counter()
            mean, var = run_sklearn(kind, t_tr, ys, t_te, span)
            add(f"sklearn {kind}", mean, var, seconds=time.perf_counter() - t1)
    # Naive anchors: last value (random-walk forecast) RMSE.
    rows.append(
        {
            "series": name,
            "model": "naive last value",
            "rmse": float(np.sqrt(np.mean((y_te - y_tr[-1]) ** 2))),
            "mpld": None,
        }
    )
    return rows, {"n_train": len(t_tr), "n_test": len(t_te)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="monthly CO2, 6 of the 11 models, one initialisation, 30 optimiser steps",
    )
    parser.add_argument(
        "--series",
        nargs="+",
        default=["nile", "sunspots", "random_walk", "co2"],
        choices=["nile", "sunspots", "random_walk", "co2"],
        help="which series to run (default: all four)",
    )
    args = parser.parse_args()
    steps = 30 if args.quick else 100
    all_rows, sizes = [], {}
    for name in args.series:
        rows, size = evaluate_series(name, args.quick, steps)
        all_rows += rows
        sizes[name] = size
    print("\nBest per series (RMSE / MPLD):")
    summary = {}
    for name in sizes:
        rs = [r for r in all_rows if r["series"] == name and r["mpld"] is not None]
        b_rmse = min(rs, key=lambda r: r["rmse"])
        b_mpld = max(rs, key=lambda r: r["mpld"])
        summary[name] = {"best_rmse": b_rmse["model"], "best_mpld": b_mpld["model"]}
        print(f"  {name:12s} RMSE: {b_rmse['model']:28s} MPLD: {b_mpld['model']}")
    out = {
        "benchmark": "gp_extrapolation",
        "quick": args.quick,
        "steps": steps,
        "sizes": sizes,
        "rows": all_rows,
        "summary": summary,
    }
    path = RESULTS
    if len(args.series) < 4:  # a partial run does not overwrite the full results
        path = RESULTS.replace(".json", "_" + "_".join(args.series) + ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

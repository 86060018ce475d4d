"""AutoEMF vs NumPyro autoguides and NUTS on the posteriordb reference posteriors (issue 3).

For each posterior in ../shared/benchmarks/posteriordb (NumPyro ports below, float64):
AutoEMF (default settings, one call to ``fit_vi``), NumPyro's AutoNormal,
AutoMultivariateNormal and AutoIAFNormal (SVI with NumPyro defaults: Adam(1e-2), one particle),
and NUTS (1000 warm-up + 2000 draws). Metrics (README of that folder): mean_err, sd_logerr, W1
(each averaged over reference parameters), ELBO (1000 draws), wall time (s, compile included).

    .venv/bin/python benchmarks/emf_posteriordb.py            # full run
    .venv/bin/python benchmarks/emf_posteriordb.py --quick    # fewer steps / draws
    .venv/bin/python benchmarks/emf_posteriordb.py --only eight_schools,sblri --methods AutoEMF,NUTS
    .venv/bin/python benchmarks/emf_posteriordb.py --isolate --methods AutoEMF,NUTS  # cold starts
    # a user's second run of the same script: JAX's persistent compilation cache (run twice, the
    # first fills the cache; rows go to results/emf_posteriordb_cached.json)
    .venv/bin/python benchmarks/emf_posteriordb.py --isolate --methods AutoEMF,NUTS \
        --compilation-cache /tmp/bfn_pdb_cache
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpyro

numpyro.enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from jax.scipy.stats import norm  # noqa: E402
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO  # noqa: E402
from numpyro.infer.autoguide import (  # noqa: E402
    AutoIAFNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from numpyro.infer.initialization import init_to_uniform  # noqa: E402
from scipy.stats import wasserstein_distance  # noqa: E402

from bayesflow_nets.emf import AutoEMF, fit_vi  # noqa: E402
from bayesflow_nets.emf._evaluation import log_weights  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "posteriordb"
if not ROOT.exists():
    ROOT = pathlib.Path("/work/shared/benchmarks/posteriordb")
OUT = pathlib.Path(__file__).resolve().parent / "results" / "emf_posteriordb.json"


# ------------------------------------------------------------------------------------------
# NumPyro ports of model.md
# ------------------------------------------------------------------------------------------
def ark(d):
    K, y = d["K"], jnp.asarray(d["y"], dtype=float)
    T = y.shape[0]
    lags = jnp.stack([y[K - k : T - k] for k in range(1, K + 1)], axis=1)  # y_{t-k}

    def model():
        alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
        numpyro.sample("y", dist.Normal(alpha + lags @ beta, sigma), obs=y[K:])

    return model


def diamonds(d):
    X = jnp.asarray(d["X"], dtype=float)
    Y = jnp.asarray(d["Y"], dtype=float)
    Xc = X[:, 1:] - X[:, 1:].mean(0)
    K = X.shape[1]

    def model():
        b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([K - 1]).to_event(1))
        intercept = numpyro.sample("Intercept", dist.StudentT(3.0, 8.0, 10.0))
        sigma = numpyro.sample(
            "sigma", dist.TruncatedDistribution(dist.StudentT(3.0, 0.0, 10.0), low=0.0)
        )
        numpyro.sample("Y", dist.Normal(intercept + Xc @ b, sigma), obs=Y)

    return model


def earnings(d):
    log_earn = jnp.log(jnp.asarray(d["earn"], dtype=float))
    height = jnp.asarray(d["height"], dtype=float)

    def model():
        beta = numpyro.sample("beta", dist.ImproperUniform(dist.constraints.real, (), (2,)))
        sigma = numpyro.sample("sigma", dist.ImproperUniform(dist.constraints.positive, (), ()))
        numpyro.sample("y", dist.Normal(beta[0] + beta[1] * height, sigma), obs=log_earn)

    return model


def eight_schools(d):
    J = d["J"]
    y, sig = jnp.asarray(d["y"], dtype=float), jnp.asarray(d["sigma"], dtype=float)

    def model():
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("J", J):
            theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
            theta = numpyro.deterministic("theta", mu + tau * theta_trans)
            numpyro.sample("y", dist.Normal(theta, sig), obs=y)

    return model


def garch(d):
    y = jnp.asarray(d["y"], dtype=float)
    sigma1 = float(d["sigma1"])

    def model():
        mu = numpyro.sample("mu", dist.ImproperUniform(dist.constraints.real, (), ()))
        alpha0 = numpyro.sample("alpha0", dist.ImproperUniform(dist.constraints.positive, (), ()))
        alpha1 = numpyro.sample(
            "alpha1", dist.ImproperUniform(dist.constraints.unit_interval, (), ())
        )
        raw = numpyro.sample(
            "beta1_raw", dist.ImproperUniform(dist.constraints.unit_interval, (), ())
        )
        beta1 = numpyro.deterministic("beta1", (1.0 - alpha1) * raw)
        numpyro.factor("beta1_jacobian", jnp.log1p(-alpha1))  # flat on (0, 1 − alpha1)

        def step(s_prev, y_prev):
            s = jnp.sqrt(alpha0 + alpha1 * (y_prev - mu) ** 2 + beta1 * s_prev**2)
            return s, s

        _, rest = jax.lax.scan(step, jnp.asarray(sigma1, dtype=y.dtype), y[:-1])
        sigma = jnp.concatenate([jnp.asarray([sigma1], dtype=y.dtype), rest])
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

    return model


def gp_pois_regr(d):
    x = jnp.asarray(d["x"], dtype=float)
    k = jnp.asarray(d["k"], dtype=float)
    N = x.shape[0]

    def model():
        rho = numpyro.sample("rho", dist.Gamma(25.0, 4.0))
        alpha = numpyro.sample("alpha", dist.HalfNormal(2.0))
        f_tilde = numpyro.sample("f_tilde", dist.Normal(0.0, 1.0).expand([N]).to_event(1))
        cov = alpha**2 * jnp.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * rho**2))
        cov = cov + 1e-10 * jnp.eye(N)
        f = numpyro.deterministic("f", jnp.linalg.cholesky(cov) @ f_tilde)
        numpyro.sample("k", dist.Poisson(jnp.exp(f)), obs=k)

    return model


def low_dim_gauss_mix(d):
    y = jnp.asarray(d["y"], dtype=float)

    def model():
        mu = numpyro.sample("mu", dist.ImproperUniform(dist.constraints.ordered_vector, (), (2,)))
        numpyro.factor("mu_prior", jnp.sum(norm.logpdf(mu, 0.0, 2.0)))
        sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))
        theta = numpyro.sample("theta", dist.Beta(5.0, 5.0))
        lp = jnp.logaddexp(
            jnp.log(theta) + norm.logpdf(y, mu[0], sigma[0]),
            jnp.log1p(-theta) + norm.logpdf(y, mu[1], sigma[1]),
        )
        numpyro.factor("y", jnp.sum(lp))

    return model


def sblri(d):
    X = jnp.asarray(d["X"], dtype=float)
    y = jnp.asarray(d["y"], dtype=float)
    D = X.shape[1]

    def model():
        beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([D]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(10.0))
        numpyro.sample("y", dist.Normal(X @ beta, sigma), obs=y)

    return model


POSTERIORS = {
    "arK": ("arK-arK", ark),
    "diamonds": ("diamonds-diamonds", diamonds),
    "earnings": ("earnings-logearn_height", earnings),
    "eight_schools": ("eight_schools-eight_schools_noncentered", eight_schools),
    "garch": ("garch-garch11", garch),
    "gp_pois_regr": ("gp_pois_regr-gp_pois_regr", gp_pois_regr),
    "low_dim_gauss_mix": ("low_dim_gauss_mix-low_dim_gauss_mix", low_dim_gauss_mix),
    "sblri": ("sblri-blr", sblri),
}


# ------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------
def _stan_names(draws: dict) -> dict[str, np.ndarray]:
    out = {}
    for name, v in draws.items():
        v = np.asarray(v)
        if v.ndim == 1:
            out[name] = v
        else:
            flat = v.reshape(v.shape[0], -1, order="F")  # column-major like Stan
            for i in range(flat.shape[1]):
                out[f"{name}[{i + 1}]"] = flat[:, i]
    return out


def metrics(draws: dict, ref: dict) -> dict:
    named = _stan_names(draws)
    me, sl, w1 = [], [], []
    for p, r in ref["params"].items():
        v = named[p]
        me.append(abs(v.mean() - r["mean"]) / r["sd"])
        sl.append(abs(np.log(v.std() / r["sd"])))
        w1.append(wasserstein_distance(v, np.asarray(ref["thinned_draws"][p])) / r["sd"])
    return {
        "mean_err": float(np.mean(me)),
        "sd_logerr": float(np.mean(sl)),
        "w1": float(np.mean(w1)),
    }


def _sites(model):
    model = numpyro.handlers.substitute(
        numpyro.handlers.seed(model, 0), substitute_fn=init_to_uniform
    )
    tr = numpyro.handlers.trace(model).get_trace()
    return [
        k
        for k, s in tr.items()
        if (s["type"] == "sample" and not s["is_observed"]) or s["type"] == "deterministic"
    ]


def run_method(method, model, key, quick):
    n_draws = 4000
    t0 = time.perf_counter()
    if method == "NUTS":
        warm, samp = (300, 500) if quick else (1000, 2000)
        mcmc = MCMC(NUTS(model), num_warmup=warm, num_samples=samp, progress_bar=False)
        mcmc.run(key)
        draws = {k: np.asarray(v) for k, v in mcmc.get_samples().items()}
        wall = time.perf_counter() - t0
        return draws, float("nan"), wall
    if method == "AutoEMF":
        guide = AutoEMF(model)
        res = fit_vi(model, guide, rng_key=key, progress=False)
        draws = res.samples(jax.random.fold_in(key, 1), n_draws)
        wall = time.perf_counter() - t0
        return {k: np.asarray(v) for k, v in draws.items()}, res.elbo, wall
    guide_cls = {
        "AutoNormal": AutoNormal,
        "AutoMultivariateNormal": AutoMultivariateNormal,
        "AutoIAFNormal": AutoIAFNormal,
    }[method]
    guide = guide_cls(model)
    svi = SVI(model, guide, numpyro.optim.Adam(1e-2), Trace_ELBO())
    res = svi.run(key, 2000 if quick else 10000, progress_bar=False)
    pred = Predictive(
        model, guide=guide, params=res.params, num_samples=n_draws, return_sites=_sites(model)
    )
    draws = {k: np.asarray(v) for k, v in pred(jax.random.fold_in(key, 1)).items()}
    wall = time.perf_counter() - t0
    logw = np.asarray(
        log_weights(model, guide, res.params, jax.random.fold_in(key, 2), 1000, (), {})
    )
    return draws, float(np.mean(logw[np.isfinite(logw)])), wall


def markdown_table(out: pathlib.Path = OUT) -> str:
    """The stored results as a markdown table: mean_err / sd_logerr / W1 / ELBO / time."""
    rows = json.loads(out.read_text())["rows"]
    lines = [
        "| posterior | method | mean_err | sd_logerr | W1 | ELBO | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {m: i for i, m in enumerate(METHODS)}
    for r in sorted(rows, key=lambda r: (r["posterior"], order.get(r["method"], 99))):
        if "error" in r:
            lines.append(f"| {r['posterior']} | {r['method']} | failed: {r['error'][:60]} |||||")
            continue
        ok = "**" if r["mean_err"] <= 0.1 and r["sd_logerr"] <= 0.1 else ""
        lines.append(
            f"| {r['posterior']} | {r['method']} | {ok}{r['mean_err']:.3f}{ok} | "
            f"{ok}{r['sd_logerr']:.3f}{ok} | {r['w1']:.3f} | {r['elbo']:.2f} | {r['wall_s']:.1f} |"
        )
    return "\n".join(lines)


METHODS = ["AutoEMF", "AutoNormal", "AutoMultivariateNormal", "AutoIAFNormal", "NUTS"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated posterior names")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", action="store_true", help="print the stored results as markdown")
    ap.add_argument(
        "--compilation-cache",
        default="",
        metavar="DIR",
        help="use JAX's persistent compilation cache in DIR (every program cached); results go "
        "to results/emf_posteriordb_cached.json",
    )
    ap.add_argument(
        "--isolate",
        action="store_true",
        help="run every (posterior, method) in a fresh Python process, so no method inherits "
        "another's compiled XLA programs (in one process NUTS, run last, starts warm)",
    )
    args = ap.parse_args()
    out = OUT.with_name("emf_posteriordb_cached.json") if args.compilation_cache else OUT
    if args.table:
        print(markdown_table(out))
        return
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    names = [n for n in POSTERIORS if not args.only or n in args.only.split(",")]
    methods = args.methods.split(",")
    if args.isolate:
        for name in names:
            for method in methods:
                cmd = [sys.executable, __file__, "--only", name, "--methods", method]
                cmd += ["--seed", str(args.seed)] + (["--quick"] if args.quick else [])
                if args.compilation_cache:
                    cmd += ["--compilation-cache", args.compilation_cache]
                subprocess.run(cmd, check=False)
        return
    mine: list[dict] = []

    def save():
        # merge with rows other runs wrote meanwhile (several runs may share the file)
        old = json.loads(out.read_text())["rows"] if out.exists() else []
        done = {(r["posterior"], r["method"]) for r in mine}
        rows = [r for r in old if (r["posterior"], r["method"]) not in done] + mine
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows}, indent=1))

    print(
        f"{'posterior':18s} {'method':24s} {'mean_err':>8s} {'sd_logerr':>9s} {'W1':>6s} {'ELBO':>10s} {'time':>7s}"
    )
    for name in names:
        folder, build = POSTERIORS[name]
        data = json.loads((ROOT / folder / "data.json").read_text())
        ref = json.loads((ROOT / folder / "reference.json").read_text())
        model = build(data)
        for method in methods:
            key = jax.random.PRNGKey(args.seed)
            try:
                draws, elbo, wall = run_method(method, model, key, args.quick)
                m = metrics(draws, ref)
            except Exception as err:  # report, don't hide
                print(f"{name:18s} {method:24s} FAILED: {type(err).__name__}: {str(err)[:120]}")
                mine.append({"posterior": name, "method": method, "error": repr(err)[:300]})
                save()
                continue
            row = {
                "posterior": name,
                "method": method,
                **m,
                "elbo": elbo,
                "wall_s": wall,
                "quick": args.quick,
                "compilation_cache": bool(args.compilation_cache),
            }
            mine.append(row)
            print(
                f"{name:18s} {method:24s} {m['mean_err']:8.3f} {m['sd_logerr']:9.3f} {m['w1']:6.3f} "
                f"{elbo:10.2f} {wall:7.1f}",
                flush=True,
            )
            save()


if __name__ == "__main__":
    main()

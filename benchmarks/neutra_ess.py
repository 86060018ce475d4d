"""NeuTra (NUTS through a fitted AutoEMF flow) vs plain NUTS: bulk ESS per second (issue 8).

Problems: Neal's funnel (10-D, centred), centred eight schools, and two posteriordb posteriors
(arK, gp_pois_regr; NumPyro ports from emf_posteriordb.py; any other of them with ``--only``). Methods, each with the same number
of chains / warm-up / draws: NumPyro's NUTS (the anchor, chains run sequentially), our BlackJAX
NUTS (``bayesflow_nets.infer.nuts``, chains vmapped) and NeuTra (``fit_vi`` with a default
AutoEMF guide, ``init="default"``, then ``bayesflow_nets.infer.neutra``; with ``--methods``
also "NeuTra (Laplace-init AutoEMF)"). ESS = ArviZ bulk ESS, minimum over every scalar of every
latent sample site; time = wall clock including compilation. "ESS/s" divides by
the sampling time, "ESS/s total" by sampling + guide fitting. For posteriordb posteriors the
mean error |mean − ref| / ref sd (averaged over reference parameters) is reported as a sanity check.

    .venv/bin/python benchmarks/neutra_ess.py            # full run (1000 + 1000, 4 chains)
    .venv/bin/python benchmarks/neutra_ess.py --quick    # 300 + 300, 2 chains, shorter VI
    .venv/bin/python benchmarks/neutra_ess.py --table    # stored results as markdown
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpyro

numpyro.enable_x64()

import arviz as az  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from bayesflow_nets.data import eight_schools  # noqa: E402
from bayesflow_nets.emf import AutoEMF, fit_vi  # noqa: E402
from bayesflow_nets.infer import neutra, nuts  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import emf_posteriordb as pdb  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "results" / "neutra_ess.json"
METHODS = ["NUTS (NumPyro)", "NUTS (BlackJAX)", "NeuTra (AutoEMF)"]
# also available with --methods: the guide fitted from fit_vi's default Laplace start
EXTRA_METHODS = ["NeuTra (Laplace-init AutoEMF)"]


def funnel():
    """Neal's funnel in 10 dimensions, centred: v ~ N(0, 3²), x_k | v ~ N(0, e^v)."""
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    with numpyro.plate("k", 9):
        numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)))


def eight_schools_centered():
    """Centred eight schools: the funnel between tau and theta."""
    d = eight_schools()
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", 8):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, d["sigma"]), obs=d["y"])


def _posteriordb(name):
    folder, build = pdb.POSTERIORS[name]
    data = json.loads((pdb.ROOT / folder / "data.json").read_text())
    ref = json.loads((pdb.ROOT / folder / "reference.json").read_text())
    return build(data), ref


def problems(only):
    out = {"funnel10": (funnel, None), "eight_schools_centered": (eight_schools_centered, None)}
    # by default arK and gp_pois_regr; any posteriordb posterior by name with --only
    for name in pdb.POSTERIORS if only else ("arK", "gp_pois_regr"):
        if not only or name in only:
            out[name] = _posteriordb(name)
    return {k: v for k, v in out.items() if not only or k in only}


def _latent_sites(model):
    # init_to_uniform gives improper (flat-prior) sites a value, which they cannot sample
    seeded = numpyro.handlers.substitute(
        numpyro.handlers.seed(model, 0), substitute_fn=numpyro.infer.init_to_uniform
    )
    tr = numpyro.handlers.trace(seeded).get_trace()
    return [k for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]]


def _run(method, model, key, cfg):
    """(idata, sampling seconds, guide seconds)."""
    chains, warm, draws = cfg["chains"], cfg["warmup"], cfg["samples"]
    if method == "NUTS (NumPyro)":
        t0 = time.perf_counter()
        mcmc = MCMC(
            NUTS(model),
            num_warmup=warm,
            num_samples=draws,
            num_chains=chains,
            chain_method="sequential",
            progress_bar=False,
        )
        mcmc.run(key, extra_fields=("diverging",))
        jax.block_until_ready(mcmc.get_samples())
        return az.from_numpyro(mcmc), time.perf_counter() - t0, 0.0
    if method == "NUTS (BlackJAX)":
        t0 = time.perf_counter()
        idata = nuts(model, rng_key=key, num_chains=chains, num_warmup=warm, num_samples=draws)
        return idata, time.perf_counter() - t0, 0.0
    k_vi, k_mc = jax.random.split(key)
    t0 = time.perf_counter()
    guide = AutoEMF(model)
    # init="default": the Laplace start (fit_vi's default) has no mode to find on funnels and
    # leaves the guide far off there (10-D funnel: ELBO −55, k̂ 0.71 instead of ≈ 0)
    init = "laplace" if "Laplace" in method else "default"
    res = fit_vi(model, guide, rng_key=k_vi, progress=False, num_steps=cfg["vi_steps"], init=init)
    guide_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    idata = neutra(
        model,
        guide,
        res.params,
        rng_key=k_mc,
        num_chains=chains,
        num_warmup=warm,
        num_samples=draws,
    )
    idata.posterior.attrs["guide_khat"] = res.khat
    return idata, time.perf_counter() - t0, guide_s


def _row(problem, method, idata, sample_s, guide_s, latent, ref):
    ess = az.ess(idata, var_names=latent, method="bulk")
    min_ess = float(min(float(np.min(ess[v].values)) for v in latent))
    stats = idata.sample_stats
    row = {
        "problem": problem,
        "method": method,
        "min_ess_bulk": min_ess,
        "sampling_s": sample_s,
        "guide_s": guide_s,
        "ess_per_s": min_ess / sample_s,
        "ess_per_s_total": min_ess / (sample_s + guide_s),
        "divergences": int(stats["diverging"].values.sum()),
        "max_rhat": float(
            max(float(np.max(v.values)) for v in az.rhat(idata, var_names=latent).values())
        ),
    }
    if "step_size" in stats:
        row["mean_steps"] = float(stats["num_integration_steps"].values.mean())
    if ref is not None:
        flat = {k: v.values.reshape((-1,) + v.shape[2:]) for k, v in idata.posterior.items()}
        row["mean_err"] = pdb.metrics(flat, ref)["mean_err"]
    if "guide_khat" in idata.posterior.attrs:
        row["guide_khat"] = float(idata.posterior.attrs["guide_khat"])
    return row


def _fmt(value, spec):
    return "–" if value is None else format(value, spec)


def markdown_table() -> str:
    """The stored results as a markdown table."""
    data = json.loads(OUT.read_text())
    lines = [
        "| problem | method | min bulk ESS | sampling (s) | guide fit (s) | ESS/s | ESS/s total "
        "| divergences | max R̂ | mean steps | guide k̂ | mean_err |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        if "error" in r:
            lines.append(f"| {r['problem']} | {r['method']} | failed: {r['error'][:60]} ||||||||||")
            continue
        lines.append(
            f"| {r['problem']} | {r['method']} | {r['min_ess_bulk']:.0f} | {r['sampling_s']:.1f} "
            f"| {r['guide_s']:.1f} | {r['ess_per_s']:.1f} | {r['ess_per_s_total']:.1f} "
            f"| {r['divergences']} | {r['max_rhat']:.3f} | {_fmt(r.get('mean_steps'), '.0f')} "
            f"| {_fmt(r.get('guide_khat'), '.2f')} | {_fmt(r.get('mean_err'), '.3f')} |"
        )
    cfg = data["config"]
    lines.append("")
    lines.append(
        f"{cfg['chains']} chains × ({cfg['warmup']} warm-up + {cfg['samples']} draws), "
        f"AutoEMF fit_vi ≤ {cfg['vi_steps']} steps, float64, seed {cfg['seed']}, "
        f"quick={cfg['quick']}."
    )
    return "\n".join(lines)


def _save(cfg, rows):
    """Write rows, keeping stored rows of other (problem, method) pairs run with the same config."""
    old = json.loads(OUT.read_text()) if OUT.exists() else {"config": cfg, "rows": []}
    keep = old["rows"] if old.get("config") == cfg else []
    done = {(r["problem"], r["method"]) for r in rows}
    merged = [r for r in keep if (r["problem"], r["method"]) not in done] + rows
    order = {m: i for i, m in enumerate(METHODS + EXTRA_METHODS)}
    probs = {p: i for i, p in enumerate(["funnel10", "eight_schools_centered", *pdb.POSTERIORS])}
    merged.sort(key=lambda r: (probs.get(r["problem"], 99), order.get(r["method"], 99)))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"config": cfg, "rows": merged}, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 + 300 draws, 2 chains")
    ap.add_argument("--only", default="", help="comma-separated problem names")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", action="store_true", help="print the stored results as markdown")
    args = ap.parse_args()
    if args.table:
        print(markdown_table())
        return
    cfg = (
        {"chains": 2, "warmup": 300, "samples": 300, "vi_steps": 3000}
        if args.quick
        else {"chains": 4, "warmup": 1000, "samples": 1000, "vi_steps": 6000}
    )
    cfg.update(seed=args.seed, quick=args.quick)
    only = [s for s in args.only.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    rows = []
    print(
        f"{'problem':24s} {'method':24s} {'minESS':>7s} {'samp s':>7s} {'guide s':>7s} "
        f"{'ESS/s':>7s} {'tot':>7s} {'div':>5s} {'R̂':>6s}"
    )
    for problem, (model, ref) in problems(only).items():
        latent = _latent_sites(model)
        for method in methods:
            key = jax.random.PRNGKey(args.seed)
            try:
                idata, sample_s, guide_s = _run(method, model, key, cfg)
                row = _row(problem, method, idata, sample_s, guide_s, latent, ref)
            except Exception as err:  # report, don't hide
                print(f"{problem:24s} {method:24s} FAILED: {type(err).__name__}: {err!s:.120}")
                rows.append({"problem": problem, "method": method, "error": repr(err)[:300]})
                _save(cfg, rows)
                continue
            rows.append(row)
            print(
                f"{problem:24s} {method:24s} {row['min_ess_bulk']:7.0f} {sample_s:7.1f} "
                f"{guide_s:7.1f} {row['ess_per_s']:7.1f} {row['ess_per_s_total']:7.1f} "
                f"{row['divergences']:5d} {row['max_rhat']:6.3f}",
                flush=True,
            )
            _save(cfg, rows)


if __name__ == "__main__":
    main()

"""Calibration of coupling estimates under unknown delays: hybrid VI vs rDCM vs plain reverse-KL VI.

For each setting (N nodes, T time points) we simulate data sets whose delays differ across
nodes (MATH.md §4 model), fit the three methods and report coverage of 50 %/90 % credible
intervals of the off-diagonal A_ij, AUC for edge presence, sign accuracy on true edges, RMSE of
the posterior mean and wall time per fit. Two edge scores are reported: ``auc`` ranks edges by the
posterior z-score |E[A_ij | Y]| / sd(A_ij | Y) (scale-free), ``auc_thr`` by
P(|A_ij| > 0.1 | Y) (the score of sessions before 8; at N = 50 the stabilised true weights are all
below 0.1, so it ranks posterior width rather than signal there). The stage-1 measurement
posterior is trained once per setting and reused (its training time is reported separately).

    python benchmarks/coupling_calibration.py --quick
    python benchmarks/coupling_calibration.py --nodes 5 10 50 --times 200 500 --datasets 100

Each data set's metrics are appended to ``benchmarks/results/coupling_runs/`` (gzipped JSON
lines, one file per setting and configuration) as they finish, and the stage-1 posterior is kept
there (Equinox serialisation), so an interrupted run resumes where it stopped, also in a later
session; ``--fresh`` starts over. Writes benchmarks/results/coupling_calibration.json (and a PNG
of coverage/AUC vs N when matplotlib is available).
"""

from __future__ import annotations

import os

# XLA on CPU (JAX 0.10) intermittently never returned from some vmapped coupling programs (see
# docs/coupling.md); single-threaded Eigen made that rarer. Must be set before JAX starts.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

import argparse
import gzip
import hashlib
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.metrics import roc_auc_score

from bayesflow_nets.coupling import (
    CouplingModel,
    CouplingParams,
    HybridVI,
    MeasurementPosterior,
    rdcm,
    rdcm_posterior,
    reverse_kl_posterior,
    reverse_kl_vi,
    simulate,
    stabilise,
    train_measurement_posterior,
)
from bayesflow_nets.infer import load, save

RESULTS = pathlib.Path(__file__).parent / "results"
RUNS = RESULTS / "coupling_runs"  # per-data-set records and stage-1 posteriors (resumable)


def true_network(key, model: CouplingModel, density: float = 0.3):
    """Sparse ground truth: edges with prob ``density``, weights ±U(0.2, 0.5); delays ~ U(0, max)."""
    n = model.n_nodes
    k1, k2, k3, k4, k5, k6 = jax.random.split(key, 6)
    mask = (jax.random.uniform(k1, (n, n)) < density) & ~jnp.eye(n, dtype=bool)
    w = jax.random.uniform(k2, (n, n), minval=0.2, maxval=0.5) * jnp.where(
        jax.random.bernoulli(k3, 0.5, (n, n)), 1, -1
    )
    A = jnp.where(mask, w, 0.0) + jnp.eye(n) * model.diag_mean
    A = stabilise(model, A)
    delays = jax.random.uniform(k4, (n,), minval=0.0, maxval=model.max_delay)
    hrf = jnp.exp(model.hrf_scale_sd * jax.random.normal(k5, (n,)))
    noise = model.noise_loc * jnp.exp(0.3 * jax.random.normal(k6, (n,)))
    return CouplingParams(A, delays, hrf, noise), np.asarray(mask)


def metrics(draws: np.ndarray, A: np.ndarray, mask: np.ndarray) -> dict:
    off = ~np.eye(A.shape[0], dtype=bool)
    out = {}
    for level in (0.5, 0.9):
        lo, hi = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2], axis=0)
        out[f"cover{int(level * 100)}"] = float(np.mean(((lo <= A) & (A <= hi))[off]))
    mean = draws.mean(axis=0)
    z = np.abs(mean) / (draws.std(axis=0) + 1e-12)
    out["score"] = np.round(z[off], 4).tolist()
    out["score_thr"] = np.round((np.abs(draws) > 0.1).mean(axis=0)[off], 4).tolist()
    out["label"] = mask[off].astype(int).tolist()
    out["sign_ok"] = (np.sign(mean) == np.sign(A))[mask].astype(int).tolist()
    out["sq_err"] = [float(f"{e:.4g}") for e in ((mean - A) ** 2)[off]]
    return out


def _auc(rows: list[dict], field: str) -> float:
    labels = np.concatenate([r["label"] for r in rows])
    scores = np.concatenate([r[field] for r in rows])
    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < labels.size else float("nan")


def stage1_posterior(model: CouplingModel, T: int, args) -> tuple[MeasurementPosterior, float]:
    """The setting's stage-1 posterior: loaded from the cache, else trained and cached."""
    path = RUNS / f"stage1_N{model.n_nodes}_T{T}_steps{args.train_steps}_b{args.batch}.eqx"
    meta = path.with_suffix(".json")
    key = jax.random.key(100 + model.n_nodes)
    if path.exists() and meta.exists() and not args.fresh:  # any key gives the template's structure
        return load(path, MeasurementPosterior(key, model)), json.loads(meta.read_text())["train_s"]
    t0 = time.perf_counter()
    post, _ = train_measurement_posterior(
        key, model, T, steps=args.train_steps, batch_size=args.batch, progress=False
    )
    train_time = time.perf_counter() - t0
    save(path, post)
    meta.write_text(json.dumps({"train_s": train_time}))
    return post, train_time


def run_setting(n: int, T: int, n_datasets: int, args) -> dict:
    model = CouplingModel(n_nodes=n, tr=args.tr, max_delay=args.max_delay)
    # large N: the structured stage 2 (row-block Laplace, shared by the K components, no ELBO
    # polish); plain reverse-KL VI has no structured variant (a full Laplace over N² + 3N), so it
    # is skipped above --revkl-max-nodes
    rows_cov = n >= args.rows_from
    config = {
        "k": args.k,
        "covariance": "rows" if rows_cov else "full",
        "vi_steps": 0 if rows_cov else args.vi_steps,
        "laplace_iters": 100 if rows_cov else 300,
        "lr": args.lr,
        "train_steps": args.train_steps,
        "likelihood": args.likelihood,
        "weighting": args.weighting,
    }
    post, train_time = stage1_posterior(model, T, args)
    hybrid = HybridVI(
        model,
        post,
        n_hp_draws=args.k,
        vi_steps=config["vi_steps"],
        learning_rate=args.lr,
        n_mc=4,
        likelihood=args.likelihood,
        weighting=args.weighting,
        covariance=config["covariance"],
        laplace_iters=config["laplace_iters"],
    )
    run_revkl = not (args.skip_revkl or n > args.revkl_max_nodes)
    tag = json.dumps(
        {**config, "revkl": run_revkl, "vi_steps_revkl": args.vi_steps}, sort_keys=True
    )
    tag = hashlib.sha1(tag.encode()).hexdigest()[:10]
    log = RUNS / f"N{n}_T{T}_{tag}.jsonl.gz"
    done = {}
    if log.exists() and not args.fresh:
        with gzip.open(log, "rt") as f:  # appended gzip members read as one stream
            lines = f.read().splitlines()
        for line in lines:
            rec = json.loads(line)
            done[rec["i"]] = rec
    elif log.exists():
        log.unlink()
    RUNS.mkdir(parents=True, exist_ok=True)
    per = {"hybrid": [], "rdcm": [], "reverse_kl_vi": []}
    times = {m: [] for m in per}
    for i in range(n_datasets):
        if i in done:
            for m, rec in done[i]["methods"].items():
                per[m].append(rec)
                times[m].append(rec["wall_s"])
            continue
        rec = {}
        key = jax.random.key(10_000 * n + T + i)
        params, mask = true_network(jax.random.fold_in(key, 1), model)
        _, Y = simulate(jax.random.fold_in(key, 2), params, model, T)
        Y = np.asarray(Y)
        A = np.asarray(params.A)
        t0 = time.perf_counter()
        res = hybrid.fit(Y, args.tr, key=jax.random.fold_in(key, 3))
        rec["hybrid"] = {**metrics(res.A, A, mask), "wall_s": time.perf_counter() - t0}
        t0 = time.perf_counter()
        rd = rdcm_posterior(rdcm(Y, args.tr), n_draws=2000, seed=i)
        rec["rdcm"] = {**metrics(rd.A, A, mask), "wall_s": time.perf_counter() - t0}
        if run_revkl:
            t0 = time.perf_counter()
            rk = reverse_kl_vi(
                jax.random.fold_in(key, 4),
                model,
                Y,
                args.tr,
                steps=args.vi_steps,
                learning_rate=args.lr,
                likelihood=args.likelihood,
            )
            pr = reverse_kl_posterior(rk, jax.random.fold_in(key, 5))
            rec["reverse_kl_vi"] = {**metrics(pr.A, A, mask), "wall_s": time.perf_counter() - t0}
        for m, r in rec.items():
            per[m].append(r)
            times[m].append(r["wall_s"])
        with gzip.open(log, "at") as f:
            f.write(json.dumps({"i": i, "methods": rec}) + "\n")
        print(f"  N={n} T={T} data set {i + 1}/{n_datasets} done", flush=True)
    summary = {}
    for m, rows in per.items():
        if not rows:
            continue
        signs = (
            np.concatenate([r["sign_ok"] for r in rows])
            if any(len(r["sign_ok"]) for r in rows)
            else np.array([])
        )
        summary[m] = {
            "cover50": float(np.mean([r["cover50"] for r in rows])),
            "cover90": float(np.mean([r["cover90"] for r in rows])),
            "auc": _auc(rows, "score"),
            "auc_thr": _auc(rows, "score_thr"),
            "sign_acc": float(np.mean(signs)) if signs.size else float("nan"),
            "rmse": float(np.sqrt(np.mean(np.concatenate([r["sq_err"] for r in rows])))),
            "wall_s": float(np.median(times[m])),
        }
    return {
        "N": n,
        "T": T,
        "datasets": n_datasets,
        "stage1_train_s": train_time,
        "config": config,
        "auc_scores": {"auc": "|E[A_ij | Y]| / sd(A_ij | Y)", "auc_thr": "P(|A_ij| > 0.1 | Y)"},
        "methods": summary,
    }


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="N=3, T=200, 4 data sets, short training")
    p.add_argument("--nodes", type=int, nargs="+", default=[5, 10, 50])
    p.add_argument("--times", type=int, nargs="+", default=[200, 500])
    p.add_argument("--datasets", type=int, default=100)
    p.add_argument("--tr", type=float, default=2.0)
    p.add_argument("--max-delay", type=float, default=3.0)
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--k", type=int, default=16, help="HP draws in the hybrid mixture")
    p.add_argument("--vi-steps", type=int, default=100, help="ELBO steps after the Laplace start")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam step of the ELBO polish")
    p.add_argument("--skip-revkl", action="store_true")
    p.add_argument(
        "--weighting",
        default="uniform",
        choices=["uniform", "evidence"],
        help="hybrid mixture weights (MATH.md §4: uniform)",
    )
    p.add_argument("--likelihood", default="whittle", choices=["whittle", "kalman"])
    p.add_argument(
        "--rows-from",
        type=int,
        default=20,
        help="N from which the hybrid uses covariance='rows'",
    )
    p.add_argument(
        "--revkl-max-nodes",
        type=int,
        default=20,
        help="largest N for plain reverse-KL VI (its full Laplace needs 2(N²+3N) gradients)",
    )
    p.add_argument("--plot", action="store_true", help="only redraw the PNG from the JSON")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="drop settings kept from earlier runs and the cached stage-1 posteriors / data sets",
    )
    args = p.parse_args()
    if args.plot:
        path = RESULTS / "coupling_calibration.json"
        plot(json.loads(path.read_text())["settings"], path.with_suffix(".png"))
        return
    if args.quick:
        args.fresh = True  # a smoke run: never resumes nor keeps cached results
        args.nodes, args.times, args.datasets, args.train_steps, args.vi_steps = (
            [3],
            [200],
            4,
            600,
            100,
        )
    rows = []
    for n in args.nodes:
        for T in args.times:
            print(f"setting N={n} T={T} ({args.datasets} data sets)", flush=True)
            rows.append(run_setting(n, T, args.datasets, args))
    header = f"{'N':>3} {'T':>4} {'method':<14} {'cov50':>6} {'cov90':>6} {'AUC':>6} {'AUCthr':>6} {'sign':>6} {'RMSE':>6} {'wall_s':>7}"
    print(header)
    for r in rows:
        for m, s in r["methods"].items():
            print(
                f"{r['N']:>3} {r['T']:>4} {m:<14} {s['cover50']:6.3f} {s['cover90']:6.3f} {s['auc']:6.3f} {s['auc_thr']:6.3f} "
                f"{s['sign_acc']:6.3f} {s['rmse']:6.3f} {s['wall_s']:7.2f}"
            )
        print(f"{'':>9} stage-1 training (once per setting): {r['stage1_train_s']:.1f} s")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (
        "coupling_calibration_quick.json" if args.quick else "coupling_calibration.json"
    )
    new_keys = {(r["N"], r["T"]) for r in rows}
    kept = []
    if path.exists() and not args.fresh:  # settings from earlier runs (other N, T) are kept
        kept = [
            r for r in json.loads(path.read_text())["settings"] if (r["N"], r["T"]) not in new_keys
        ]
    for r in rows:
        r["args"] = vars(args)
    rows = sorted(kept + rows, key=lambda r: (r["T"], r["N"]))
    path.write_text(json.dumps({"settings": rows}, indent=2))
    plot(rows, path.with_suffix(".png"))


def plot(rows: list[dict], out: pathlib.Path) -> None:
    """Three panels against N, per method and T: 90 % coverage, AUC (z-score), AUC (threshold)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5), sharex=True)
    for T in sorted({r["T"] for r in rows}):
        for m in ("hybrid", "rdcm", "reverse_kl_vi"):
            pts = sorted(
                (r["N"], r["methods"][m]) for r in rows if m in r["methods"] and r["T"] == T
            )
            if not pts:
                continue
            ns = [a for a, _ in pts]
            label = f"{m} T={T}"
            axes[0].plot(ns, [s["cover90"] for _, s in pts], "o-", label=label)
            for ax, field in ((axes[1], "auc"), (axes[2], "auc_thr")):
                vals = [np.nan if s.get(field) is None else s[field] for _, s in pts]
                ax.plot(ns, vals, "o-", label=label)
    for ax in axes:
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks([5, 10, 50], ["5", "10", "50"])
    axes[0].axhspan(0.85, 0.97, color="0.9")
    axes[0].set(xlabel="N nodes", ylabel="90% coverage")
    axes[1].set(xlabel="N nodes", ylabel="edge AUC, score |mean|/sd")
    axes[2].set(xlabel="N nodes", ylabel="edge AUC, score P(|A|>0.1)")
    axes[2].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

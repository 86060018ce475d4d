"""AutoEMF with default settings against NumPyro's autoguides and NUTS on the model zoo.

For each model of ``benchmarks/zoo`` (float64): AutoEMF (one call to ``fit_vi``), NumPyro's
AutoNormal, AutoLowRankMultivariateNormal, AutoMultivariateNormal (up to 1000 latents),
AutoIAFNormal and AutoBNAFNormal (SVI, Adam(5e-3), 8 particles), and NUTS (one chain,
1000 + 1000). Each (model, method) runs in its own process with a time limit.

Budget of the five SVI baselines (``--budget``): "autoemf" (default) gives each the wall time of
the stored AutoEMF row of the same model, "steps" a fixed 5000 steps (also the fallback when
there is no AutoEMF row). SVI runs in chunks of one compiled loop with a step count as argument:
10 steps first, then up to 250 at a time, as many as end, at the last chunk's speed per step,
within 95 % of the budget counted from the start of the method (compilation included), the rest
being left for the draws; one chunk at least. A chunk with a non-finite loss or parameter is
discarded and training stops (status "nonfinite"). Rows record ``steps`` run, ``budget_s`` and
``setup_s`` (guide set-up and compilation, which alone can exceed a small budget). The row
"AutoNormal5000" is AutoNormal for a fixed 5000 steps under either budget: the yardstick of
the wall-time target (AutoEMF ≤ 3× its time).

Metrics: ELBO and PSIS k̂ (VI only; KHAT_DRAWS fresh draws, after the clock stops), and
against the stored 4-chain NUTS reference (``benchmarks/zoo/references``, unimodal models
only): mean_err = mean over coordinates of
|mean − ref mean| / ref sd, sd_logerr = mean |log(sd / ref sd)|, and the worst coordinate of
each. Wall time includes compilation and 1000 posterior draws (after ``block_until_ready``).

    python benchmarks/emf_zoo.py                                  # every model and method
    python benchmarks/emf_zoo.py --only funnel_10d,irt_2pl --methods AutoEMF,AutoNormal
    python benchmarks/emf_zoo.py --table                          # print the stored table
    python benchmarks/emf_zoo.py --summary                        # one line per model
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
OUT = HERE / "results" / "emf_zoo.json"
REFS = HERE / "zoo" / "references"
METHODS = (
    "AutoEMF",
    "AutoNormal",
    "AutoLowRankMVN",
    "AutoMVN",
    "AutoIAFNormal",
    "AutoBNAFNormal",
    "NUTS",
    "AutoNormal5000",
)
NUM_DRAWS = 1000
# draws behind the VI methods' ELBO and PSIS k̂: from 1000 draws (about 95 in the fitted tail)
# k̂ is noisy, and Vehtari et al.'s sample-size threshold min(1 − 1/log10 S, 0.7) is 0.7 only
# from S ≈ 2200 up
KHAT_DRAWS = 4000
BASELINES = ("AutoNormal", "AutoLowRankMVN", "AutoMVN", "AutoIAFNormal", "AutoBNAFNormal")
# AutoNormal for a fixed FIXED_STEPS whatever the budget: the yardstick of the 3× wall-time target
FIXED_AUTONORMAL = "AutoNormal5000"
PROBE = 10  # SVI steps of the first chunk, which times a step
CHUNK = 250  # most SVI steps per chunk
FIXED_STEPS = 5000  # budget "steps", and the fallback without an AutoEMF row
RESERVE = 0.05  # share of the time budget left for the draws


def _latent_sites(model, args, kwargs) -> list[str]:
    from bayesflow_nets.emf._structured import prototype_trace

    tr = prototype_trace(model, args, kwargs)
    return [k for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]]


def _num_latents(model, args, kwargs) -> int:
    import jax
    import numpy as np
    from numpyro.infer.util import initialize_model

    info = initialize_model(jax.random.PRNGKey(0), model, model_args=args, model_kwargs=kwargs)
    return int(sum(np.size(v) for v in info.param_info.z.values()))


def _finite(tree) -> bool:
    import jax
    import numpy as np

    return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(tree))


def _next_chunk(steps: int, per_step: float, left: float | None) -> int:
    """Steps of the next chunk: at most CHUNK, none past FIXED_STEPS (``left`` None) and none
    that would not finish in the ``left`` seconds at ``per_step`` seconds a step."""
    if left is None:
        return min(CHUNK, FIXED_STEPS - steps)
    return min(CHUNK, max(0, int(left / per_step)))


def _svi_chunks(svi, key, args, kwargs, t0, budget):
    """SVI in chunks of one compiled loop: PROBE steps, then up to CHUNK at a time, either to
    FIXED_STEPS (``budget`` None) or while the chunk, timed at the last chunk's speed, ends by
    ``t0`` + the budget less the reserve. Returns the parameters of the last finite chunk,
    steps run, status and the seconds from ``t0`` to the compiled loop (guide set-up included)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    state = svi.init(key, *args, **kwargs)

    def run(s, n):
        def body(_, carry):
            s, ok = carry
            s, loss = svi.update(s, *args, **kwargs)
            return s, ok & jnp.isfinite(loss)

        return jax.lax.fori_loop(0, n, body, (s, jnp.array(True)))

    chunk = jax.jit(run).lower(state, np.int32(0)).compile()
    setup_s = time.perf_counter() - t0
    limit = None if budget is None else budget * (1.0 - RESERVE)
    steps, status, n = 0, "ok", PROBE
    while n > 0:
        t = time.perf_counter()
        new, ok = jax.block_until_ready(chunk(state, np.int32(n)))
        now = time.perf_counter()
        if not (bool(ok) and _finite(svi.get_params(new))):
            status = "nonfinite"
            break
        state, steps = new, steps + n
        n = _next_chunk(steps, (now - t) / n, None if limit is None else limit - (now - t0))
    return svi.get_params(state), steps, status, setup_s


def _vi(method, model, args, kwargs, key, t0, budget):
    """Fit one VI method; returns draws of the latent sites, a function computing the log
    weights of :data:`KHAT_DRAWS` fresh draws (called after the clock stops), and status."""
    import jax
    import numpyro
    from numpyro.infer import SVI, Trace_ELBO, autoguide as ag

    from bayesflow_nets.emf import AutoEMF, fit_vi
    from bayesflow_nets.emf._evaluation import draws_and_log_weights, log_weights as _log_weights

    if method == "AutoEMF":
        res = fit_vi(model, AutoEMF(model), *args, rng_key=key, progress=False, **kwargs)
        draws = jax.block_until_ready(res.samples(jax.random.fold_in(key, 1), NUM_DRAWS))

        def logw():
            return _log_weights(
                model, res.guide, res.params, jax.random.fold_in(key, 2), KHAT_DRAWS, args, kwargs
            )

        extra = {
            "status": res.status,
            "init": res.init,
            "rollbacks": len(res.rollbacks),
            "steps": res.num_steps,
        }
        return draws, logw, extra
    guide = {
        "AutoNormal": ag.AutoNormal,
        FIXED_AUTONORMAL: ag.AutoNormal,
        "AutoLowRankMVN": ag.AutoLowRankMultivariateNormal,
        "AutoMVN": ag.AutoMultivariateNormal,
        "AutoIAFNormal": ag.AutoIAFNormal,
        "AutoBNAFNormal": ag.AutoBNAFNormal,
    }[method](model)
    svi = SVI(model, guide, numpyro.optim.Adam(5e-3), Trace_ELBO(num_particles=8))
    params, steps, status, setup_s = _svi_chunks(svi, key, args, kwargs, t0, budget)
    # draws as AutoEMF's are made (one vmapped program of the guide and model); NumPyro's
    # Predictive would copy every parameter per draw, which runs IAF/BNAF guides out of memory
    sites = tuple(_latent_sites(model, args, kwargs))
    draws, _, _ = draws_and_log_weights(
        model,
        guide,
        params,
        jax.random.fold_in(key, 1),
        NUM_DRAWS,
        args,
        kwargs,
        sites=sites,
        weights=False,
    )
    draws = jax.block_until_ready(draws)

    def logw():
        return _log_weights(
            model, guide, params, jax.random.fold_in(key, 2), KHAT_DRAWS, args, kwargs
        )

    extra = {"status": status, "steps": steps, "budget_s": budget, "setup_s": setup_s}
    return draws, logw, extra


def _nuts(model, args, kwargs, key):
    import jax
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(NUTS(model), num_warmup=1000, num_samples=NUM_DRAWS, progress_bar=False)
    mcmc.run(key, *args, **kwargs)
    draws = jax.block_until_ready(mcmc.get_samples())
    div = int(mcmc.get_extra_fields()["diverging"].sum())
    return draws, None, {"divergences": div}


def _accuracy(draws: dict, ref: dict) -> dict:
    """mean_err, sd_logerr (averaged over coordinates) and their worst coordinates."""
    import numpy as np

    mean_err, sd_err = [], []
    for name, site in ref["sites"].items():
        if name not in draws:
            continue
        x = np.asarray(draws[name], dtype=float).reshape(len(draws[name]), -1)
        m, s = np.asarray(site["mean"]), np.asarray(site["sd"])
        keep = s > 1e-12  # constrained coordinates fixed by the support (e.g. a Cholesky's 1)
        mean_err.append(np.abs(x.mean(0) - m)[keep] / s[keep])
        sd_err.append(np.abs(np.log(np.maximum(x.std(0)[keep], 1e-300) / s[keep])))
    mean_err, sd_err = np.concatenate(mean_err), np.concatenate(sd_err)
    return {
        "mean_err": float(mean_err.mean()),
        "mean_err_max": float(mean_err.max()),
        "sd_logerr": float(sd_err.mean()),
        "sd_logerr_max": float(sd_err.max()),
    }


def run_one(name: str, method: str, seed: int, budget: float | None = None) -> dict:
    """One (model, method) row, in this process; ``budget``: seconds for an SVI baseline."""
    import numpyro

    numpyro.enable_x64()
    import arviz as az
    import jax
    import numpy as np

    from benchmarks.zoo.models import ZOO

    entry = ZOO[name]
    model, args, kwargs = entry.build()
    key = jax.random.PRNGKey(seed)
    if method == "AutoMVN" and _num_latents(model, args, kwargs) > 1000:
        return {"model": name, "method": method, "seed": seed, "status": "skipped: D > 1000"}
    t0 = time.perf_counter()
    if method == "NUTS":
        draws, logw, extra = _nuts(model, args, kwargs, key)
    else:
        draws, logw, extra = _vi(method, model, args, kwargs, key, t0, budget)
    wall = time.perf_counter() - t0
    logw = logw() if logw is not None else None
    row = {"model": name, "method": method, "seed": seed, "wall_s": wall, **extra}
    row["latents"] = int(sum(np.size(v[0]) for v in draws.values()))
    if logw is not None:
        logw = np.asarray(logw)
        finite = logw[np.isfinite(logw)]
        row["elbo"] = float(finite.mean()) if finite.size else float("nan")
        row["finite_share"] = float(np.isfinite(logw).mean())
        row["khat"] = float(az.psislw(finite.copy())[1]) if finite.size > 10 else float("nan")
        row["khat_draws"] = int(logw.size)
    ref_path = REFS / f"{name}.json"
    if not entry.multimodal and ref_path.exists():
        ref = json.loads(ref_path.read_text())
        row.update(_accuracy(draws, ref))
        row["reference_meets_criteria"] = bool(ref["meets_criteria"])
    return row


def _budget(rows: dict, name: str, method: str, mode: str) -> float | None:
    """Seconds for an SVI baseline: the stored AutoEMF wall time under "autoemf", else None."""
    emf = rows.get((name, "AutoEMF"), {})
    if mode != "autoemf" or method not in BASELINES or "elbo" not in emf:
        return None
    return emf.get("wall_s")


def _isolated(name, method, seed, timeout, budget) -> dict:
    spec = f"{name}:{method}:{seed}:{'' if budget is None else budget}"
    cmd = [sys.executable, __file__, "--row", spec]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    except subprocess.TimeoutExpired:
        return {
            "model": name,
            "method": method,
            "seed": seed,
            "status": "timeout",
            "wall_s": time.perf_counter() - t0,
        }
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("ROW ")]
    if out.returncode != 0 or not lines:
        err = (out.stderr.strip().splitlines() or ["?"])[-1][:300]
        return {
            "model": name,
            "method": method,
            "seed": seed,
            "status": "error",
            "error": err,
            "wall_s": time.perf_counter() - t0,
        }
    return json.loads(lines[-1][4:])


def _fmt(v, spec):
    return "–" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def table(rows: list[dict]) -> str:
    head = (
        "| model | method | latents | ELBO | k̂ | mean_err (max) | sd_logerr (max) | wall s | "
        "status |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['method']} | {r.get('latents', '–')} | "
            f"{_fmt(r.get('elbo'), '.2f')} | {_fmt(r.get('khat'), '.2f')} | "
            f"{_fmt(r.get('mean_err'), '.3f')} ({_fmt(r.get('mean_err_max'), '.2f')}) | "
            f"{_fmt(r.get('sd_logerr'), '.3f')} ({_fmt(r.get('sd_logerr_max'), '.2f')}) | "
            f"{_fmt(r.get('wall_s'), '.1f')} | {r.get('status', r.get('divergences', ''))} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """One line per model: AutoEMF against the best baseline ELBO at its budget, AutoEMF's k̂
    and accuracy, and wall times of AutoEMF, AutoNormal and NUTS; then the acceptance counts."""
    import math

    by: dict[str, dict] = {}
    for r in rows:
        by.setdefault(r["model"], {})[r["method"]] = r
    head = (
        "| model | AutoEMF ELBO | best baseline (ELBO) | Δ ELBO | baselines < 1000 steps | "
        "AutoEMF k̂ | mean_err | sd_logerr | wall s: AutoEMF / AutoNormal 5000 steps / NUTS |"
    )
    lines = [head, "|" + "---|" * 9]
    # baselines with fewer steps than this ran mostly compilation within AutoEMF's time
    short = 1000
    n = wins = khat_ok = acc = acc_n = worst = fast = fixed = 0
    for model, m in by.items():
        e = m.get("AutoEMF", {})
        base = {k: v for k, v in m.items() if k in BASELINES and _ok_number(v.get("elbo"))}
        best = max(base, key=lambda k: base[k]["elbo"]) if base else None
        diff = e.get("elbo", math.nan) - base[best]["elbo"] if best else math.nan
        n += 1
        wins += bool(diff >= -0.5) if best else 0
        khat_ok += bool(e.get("khat", math.inf) <= 0.7)
        if "mean_err" in e:
            acc_n += 1
            acc += bool(e["mean_err"] <= 0.1 and e["sd_logerr"] <= 0.1)
            worst += bool(e["mean_err_max"] <= 0.3 and e["sd_logerr_max"] <= 0.3)
        an = m.get(FIXED_AUTONORMAL) or m.get("AutoNormal", {})
        if an.get("wall_s") and an.get("budget_s") is None:  # fixed steps, not AutoEMF's time
            fixed += 1
            fast += bool(e.get("wall_s", math.inf) <= 3 * an["wall_s"])
        walls = " / ".join(
            _fmt(m.get(k, {}).get("wall_s"), ".1f") for k in ("AutoEMF", FIXED_AUTONORMAL, "NUTS")
        )
        best_s = f"{best} ({base[best]['elbo']:.2f})" if best else "–"
        lines.append(
            f"| {model} | {_fmt(e.get('elbo'), '.2f')} | {best_s} | {_fmt(diff, '+.2f')} | "
            f"{sum(v.get('steps', 0) < short for v in base.values())} of {len(base)} | "
            f"{_fmt(e.get('khat'), '.2f')} | {_fmt(e.get('mean_err'), '.3f')} | "
            f"{_fmt(e.get('sd_logerr'), '.3f')} | {walls} |"
        )
    lines.append("")
    lines.append(
        f"ELBO ≥ best baseline − 0.5: {wins}/{n}; k̂ ≤ 0.7: {khat_ok}/{n}; "
        f"mean_err and sd_logerr ≤ 0.1: {acc}/{acc_n} unimodal, worst coordinate ≤ 0.3: "
        f"{worst}/{acc_n}; wall ≤ 3× AutoNormal (fixed steps): {fast}/{fixed}; median wall "
        f"AutoEMF {_median_wall(by, 'AutoEMF')} s, NUTS {_median_wall(by, 'NUTS')} s"
    )
    return "\n".join(lines)


def _median_wall(by: dict, method: str) -> str:
    import numpy as np

    walls = [
        m[method]["wall_s"] for m in by.values() if _ok_number(m.get(method, {}).get("wall_s"))
    ]
    return f"{np.median(walls):.1f} (over {len(walls)})" if walls else "–"


def _ok_number(v) -> bool:
    return isinstance(v, float) and v == v and abs(v) != float("inf")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated zoo model names")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per row")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument(
        "--budget",
        choices=("autoemf", "steps"),
        default="autoemf",
        help="SVI baselines: the AutoEMF row's wall time, or a fixed 5000 steps",
    )
    parser.add_argument("--table", action="store_true", help="print the stored table and exit")
    parser.add_argument(
        "--summary", action="store_true", help="print the per-model acceptance summary and exit"
    )
    parser.add_argument("--row", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.row:
        name, method, seed, budget = a.row.split(":")
        row = run_one(name, method, int(seed), float(budget) if budget else None)
        print("ROW " + json.dumps(row), flush=True)
        return
    out = pathlib.Path(a.out)
    stored = json.loads(out.read_text()) if out.exists() else {"rows": []}
    if a.summary:
        print(summary(stored["rows"]))
        return
    if a.table:
        print(table(stored["rows"]))
        return
    from benchmarks.zoo.models import ZOO

    names = a.only.split(",") if a.only else list(ZOO)
    rows = {(r["model"], r["method"]): r for r in stored["rows"]}
    for name in names:
        for method in a.methods.split(","):
            budget = _budget(rows, name, method, a.budget)
            row = _isolated(name, method, a.seed, a.timeout, budget)
            rows[(name, method)] = row
            print(table([row]).splitlines()[-1], flush=True)
            order = {n: i for i, n in enumerate(ZOO)}
            ordered = sorted(
                rows.values(), key=lambda r: (order.get(r["model"], 99), METHODS.index(r["method"]))
            )
            record = {"command": " ".join(sys.argv), "rows": ordered}
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            os.replace(tmp, out)
    print(table(json.loads(out.read_text())["rows"]))


if __name__ == "__main__":
    main()

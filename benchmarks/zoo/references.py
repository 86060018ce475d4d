"""NUTS reference posteriors for the development model zoo (benchmarks/zoo/models.py).

For each non-multimodal model: NumPyro NUTS, 4 sequential chains, float64, 1000 warm-up + 1000
draws; while some coordinate has rank-normalised split R-hat >= 1.01 or bulk ESS <= 1000 (ArviZ),
rerun with warm-up and draws doubled, unless the rerun would pass the per-model time cap. Writes
``<out>/<name>.json`` (moments of every latent sample site, constrained) and prints a table.

    python benchmarks/zoo/references.py
    python benchmarks/zoo/references.py --only funnel_10d,irt_2pl --max-minutes 4
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import sys
import time

# Threaded OpenBLAS (used by JAX's CPU LAPACK calls) slows the GP models' Cholesky gradients
# ten-fold on a busy machine; it must be set before NumPy loads the library.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import arviz as az  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
from numpyro.handlers import seed, substitute, trace  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from benchmarks.zoo.models import ZOO, ZooModel  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "references"
NUM_CHAINS = 4
MAX_RHAT = 1.01
MIN_ESS = 1000.0
DEFAULT_TARGET_ACCEPT = 0.9
# centred funnels: a higher acceptance target means smaller steps in the neck
TARGET_ACCEPT = {"eight_schools_centered": 0.99, "funnel_10d": 0.99}


def latent_sites(model, args, kwargs, draw: dict) -> list[str]:
    """Names of the unobserved sample sites (deterministic sites excluded).

    The model is traced at one posterior ``draw`` since improper priors cannot be sampled.
    """
    tr = trace(substitute(seed(model, 0), data=draw)).get_trace(*args, **kwargs)
    return [k for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]]


def run_nuts(entry: ZooModel, num_warmup: int, num_samples: int, rng_seed: int) -> dict:
    """One NUTS run; returns latent draws grouped by chain, divergences and wall time."""
    model, args, kwargs = entry.build()
    kernel = NUTS(model, target_accept_prob=TARGET_ACCEPT.get(entry.name, DEFAULT_TARGET_ACCEPT))
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=NUM_CHAINS,
        chain_method="sequential",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(rng_seed), *args, **kwargs)
    samples = mcmc.get_samples(group_by_chain=True)
    draw = {k: v[0, 0] for k, v in samples.items()}
    samples = {k: np.asarray(samples[k]) for k in latent_sites(model, args, kwargs, draw)}
    wall = time.perf_counter() - start
    diverging = int(np.sum(mcmc.get_extra_fields()["diverging"]))
    return {"samples": samples, "divergences": diverging, "wall_time_s": wall}


def convergence(samples: dict) -> tuple[float, float]:
    """Max R-hat and min bulk ESS over all non-constant coordinates of all sites."""
    flat = {k: v.reshape(v.shape[:2] + (-1,)) for k, v in samples.items()}
    flat = {k: v[..., np.ptp(v, axis=(0, 1)) > 0] for k, v in flat.items()}
    data = az.convert_to_dataset({k: v for k, v in flat.items() if v.shape[-1] > 0})
    rhat = np.concatenate([np.ravel(v) for v in az.rhat(data).data_vars.values()])
    ess = np.concatenate([np.ravel(v) for v in az.ess(data, method="bulk").data_vars.values()])
    return float(np.max(rhat)), float(np.min(ess))


def site_moments(samples: dict) -> dict:
    """Per-site shape and flattened mean and sd (ddof=1) over all chains and draws."""
    out = {}
    for name, draws in samples.items():
        pooled = draws.reshape((-1,) + draws.shape[2:])
        out[name] = {
            "shape": list(draws.shape[2:]),
            "mean": np.ravel(pooled.mean(axis=0)).tolist(),
            "sd": np.ravel(pooled.std(axis=0, ddof=1)).tolist(),
        }
    return out


def fit_reference(entry: ZooModel, max_seconds: float, rng_seed: int) -> dict:
    """Run NUTS, doubling warm-up and draws until the criteria hold or the time cap is near."""
    num, spent, attempts = 1000, 0.0, []
    while True:
        run = run_nuts(entry, num, num, rng_seed)
        spent += run["wall_time_s"]
        max_rhat, min_ess = convergence(run["samples"])
        met = max_rhat < MAX_RHAT and min_ess > MIN_ESS
        attempts.append(
            {
                "num_warmup": num,
                "num_samples": num,
                "wall_time_s": run["wall_time_s"],
                "max_rhat": max_rhat,
                "min_ess_bulk": min_ess,
            }
        )
        if met or spent + 2.0 * run["wall_time_s"] > max_seconds:
            break
        num *= 2
    return {
        "num_warmup": num,
        "num_samples": num,
        "num_chains": NUM_CHAINS,
        "target_accept_prob": TARGET_ACCEPT.get(entry.name, DEFAULT_TARGET_ACCEPT),
        "wall_time_s": run["wall_time_s"],
        "total_wall_time_s": spent,
        "divergences": run["divergences"],
        "max_rhat": max_rhat,
        "min_ess_bulk": min_ess,
        "meets_criteria": met,
        "attempts": attempts,
        "sites": site_moments(run["samples"]),
    }


def provenance(name: str, rng_seed: int) -> dict:
    """Name, seed, command line and library versions for a reference file."""
    return {
        "name": name,
        "seed": rng_seed,
        "command": shlex.join(["python", *sys.argv]),
        "jax_version": jax.__version__,
        "numpyro_version": numpyro.__version__,
    }


def table_row(record: dict) -> str:
    """One line of the summary table."""
    return (
        f"{record['name']:<28} {record['num_samples']:>6} {record['wall_time_s']:>9.1f} "
        f"{record['divergences']:>5} {record['max_rhat']:>7.4f} {record['min_ess_bulk']:>8.0f} "
        f"{'yes' if record['meets_criteria'] else 'NO':>4}"
    )


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated model names (default: all)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="output directory")
    parser.add_argument("--max-minutes", type=float, default=8.0, help="time cap per model")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed for NUTS")
    return parser.parse_args(argv)


def select(only: str) -> list[ZooModel]:
    """The zoo entries named in ``only`` (all when empty); unknown names are an error."""
    names = [n for n in only.split(",") if n] or list(ZOO)
    unknown = sorted(set(names) - set(ZOO))
    if unknown:
        raise SystemExit(f"--only: unknown model(s) {unknown}; choose from {sorted(ZOO)}")
    return [ZOO[n] for n in names]


def main(argv=None) -> None:
    """Fit every selected reference model and write its JSON."""
    args = parse_args(argv)
    numpyro.enable_x64()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{'model':<28} {'draws':>6} {'wall_s':>9} {'div':>5} {'max_rhat':>7} {'min_ess':>8} ok")
    for entry in select(args.only):
        if entry.multimodal:
            print(f"{entry.name:<28} skipped: multimodal (judged by ELBO only, no reference)")
            continue
        record = provenance(entry.name, args.seed) | fit_reference(
            entry, 60.0 * args.max_minutes, args.seed
        )
        (args.out / f"{entry.name}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(table_row(record), flush=True)


if __name__ == "__main__":
    main()

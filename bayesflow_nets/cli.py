"""Command line: ``bayesflow-nets demo | fit FILE.py:NAME | bench NAME``."""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path

from ._cli_fit import add_fit_parser


def _demo(args: argparse.Namespace) -> int:
    if args.density:
        return _demo_density(args)
    return _demo_eight_schools(args)


def _demo_eight_schools(args: argparse.Namespace) -> int:
    import jax

    with jax.enable_x64(True):  # posteriordb references are float64
        return _eight_schools(args)


def _eight_schools(args: argparse.Namespace) -> int:
    import arviz as az
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    from .data import eight_schools, eight_schools_noncentered
    from .emf import AutoEMF, fit_vi

    data = eight_schools()
    print("bayesflow-nets demo: eight schools (non-centred) — AutoEMF VI beside NUTS")
    key_vi, key_nuts, key_draw = jax.random.split(jax.random.key(args.seed), 3)
    t0 = time.perf_counter()
    guide = AutoEMF(eight_schools_noncentered)
    result = fit_vi(
        eight_schools_noncentered, guide, data["sigma"], data["y"], rng_key=key_vi,
        progress=not args.quiet,
    )
    vi_s = time.perf_counter() - t0
    idata_vi = result.to_arviz(key_draw, 4000)
    t0 = time.perf_counter()
    mcmc = MCMC(
        NUTS(eight_schools_noncentered), num_warmup=1000, num_samples=2000, num_chains=2,
        chain_method="sequential", progress_bar=False,
    )
    mcmc.run(key_nuts, data["sigma"], data["y"])
    nuts_s = time.perf_counter() - t0
    idata_nuts = az.from_numpyro(mcmc)
    names = ["mu", "tau", "theta"]
    s_vi = az.summary(idata_vi, var_names=names, kind="stats", round_to=3)
    s_nuts = az.summary(idata_nuts, var_names=names, kind="stats", round_to=3)
    table = s_vi[["mean", "sd"]].join(s_nuts[["mean", "sd"]], lsuffix=" (EMF)", rsuffix=" (NUTS)")
    table["|Δmean|/sd"] = (
        (table["mean (EMF)"] - table["mean (NUTS)"]).abs() / table["sd (NUTS)"]
    ).round(3)
    table["log sd ratio"] = np.log(table["sd (EMF)"] / table["sd (NUTS)"]).round(3)
    print(table.to_string())
    print(
        f"AutoEMF: {vi_s:.1f} s, ELBO {result.elbo:.3f}, PSIS k̂ {result.khat:.2f}; "
        f"NUTS (2 chains × 1000+2000): {nuts_s:.1f} s"
    )
    return 0


def _demo_density(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from .bijectors import StandardNormal, coupling_flow
    from .data import two_moons
    from .infer import fit_to_data

    print("bayesflow-nets demo: RQS coupling flow on the built-in two-moons density")
    train = two_moons(args.n_train, seed=0)
    test = two_moons(2000, seed=1)
    key = jax.random.key(args.seed)
    flow = coupling_flow(
        key, base_dist=StandardNormal((2,)), flow_layers=4, nn_width=64, knots=8, interval=4.0
    )
    t0 = time.perf_counter()
    res = fit_to_data(
        key,
        flow,
        train,
        learning_rate=2e-3,
        max_epochs=args.epochs,
        batch_size=256,
        max_patience=10,
        progress=not args.quiet,
    )
    fit_s = time.perf_counter() - t0
    nll_flow = float(-np.mean(np.asarray(res.model.log_prob(test))))
    mu, cov = train.mean(0), np.cov(train.T)
    diff = test - mu
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    nll_gauss = float(np.mean(0.5 * quad + 0.5 * logdet + np.log(2 * np.pi)))
    print(f"{'model':<28}{'held-out NLL (nats)':>22}")
    print(f"{'full-covariance Gaussian':<28}{nll_gauss:>22.4f}")
    print(f"{'RQS coupling flow':<28}{nll_flow:>22.4f}")
    print(f"training: {len(res.losses['train'])} epochs, {fit_s:.1f} s, status={res.status}")
    return 0 if nll_flow < nll_gauss else 1


def _bench(args: argparse.Namespace) -> int:
    root = Path(args.dir) if args.dir else Path.cwd() / "benchmarks"
    script = root / f"{args.name}.py"
    if not script.is_file():
        available = sorted(p.stem for p in root.glob("*.py")) if root.is_dir() else []
        print(
            f"error: no benchmark named {args.name!r} in {root} (available: {available})",
            file=sys.stderr,
        )
        return 2
    sys.argv = [str(script)] + list(args.script_args)
    runpy.run_path(str(script), run_name="__main__")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesflow-nets",
        description="Embedded-model flows, AEFs, improper GPs and diffusion-score tools on JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit the main demo on embedded default data")
    demo.add_argument("--epochs", type=int, default=60, help="(--density) maximum epochs")
    demo.add_argument("--n-train", type=int, default=8000, help="(--density) training points")
    demo.add_argument("--seed", type=int, default=0, help="PRNG seed")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.add_argument(
        "--density",
        action="store_true",
        help="instead: fit an RQS flow to the built-in two-moons density, report held-out NLL",
    )
    demo.set_defaults(func=_demo)
    add_fit_parser(sub)
    bench = sub.add_parser("bench", help="run a benchmark script from benchmarks/")
    bench.add_argument("name", help="benchmark name, e.g. 'bijectors'")
    bench.add_argument("--dir", default=None, help="benchmarks folder (default ./benchmarks)")
    bench.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""Simulate a 10-node delayed network, fit HybridVI and rDCM, plot the couplings (MATH.md §4).

    python examples/coupling_network.py            # 10 nodes, T=300
    python examples/coupling_network.py --quick    # 4 nodes, tiny budgets (smoke test)
    python examples/coupling_network.py --covariance rows   # structured stage 2 (large-N setting)

Writes examples/coupling_network.png: truth | hybrid posterior mean | hybrid 90 % interval width
(edges whose interval excludes 0 are outlined) | rDCM mean.
"""

import os

# XLA on CPU (JAX 0.10) intermittently never returned from some vmapped coupling programs (see
# docs/coupling.md); single-threaded Eigen made that rarer. Must be set before JAX starts.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

import argparse
import pathlib
import sys
import time

import jax
import numpy as np

from bayesflow_nets.coupling import (
    CouplingModel,
    HybridVI,
    rdcm,
    simulate,
    train_measurement_posterior,
)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from coupling_calibration import true_network  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--likelihood", default="whittle", choices=["whittle", "kalman"])
    ap.add_argument("--covariance", default="full", choices=["full", "rows"])
    args = ap.parse_args()
    n, T, train_steps, vi_steps = (4, 120, 100, 50) if args.quick else (10, 300, 1500, 100)
    model = CouplingModel(n_nodes=n, tr=2.0, max_delay=3.0)
    params, _ = true_network(jax.random.key(0), model)
    _, Y = simulate(jax.random.key(1), params, model, T)
    Y = np.asarray(Y)

    t0 = time.perf_counter()
    post, _ = train_measurement_posterior(
        jax.random.key(2), model, T, steps=train_steps, progress=True
    )
    print(f"stage 1 (trained once, reusable): {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    hybrid = HybridVI(
        model,
        post,
        n_hp_draws=16,
        vi_steps=0 if args.covariance == "rows" else vi_steps,
        n_mc=4,
        likelihood=args.likelihood,
        covariance=args.covariance,
    )
    res = hybrid.fit(Y, model.tr, key=jax.random.key(3))
    print(f"hybrid fit: {time.perf_counter() - t0:.1f} s")
    rd = rdcm(Y, model.tr)
    lo, hi = res.interval(0.9)
    A = np.asarray(params.A)
    off = ~np.eye(n, dtype=bool)
    print(f"hybrid 90% coverage of off-diagonal A_ij: {np.mean(((lo <= A) & (A <= hi))[off]):.2f}")
    rlo, rhi = rd.interval(0.9)
    print(
        f"rDCM   90% coverage of off-diagonal A_ij: {np.mean(((rlo <= A) & (A <= rhi))[off]):.2f}"
    )
    print(res.to_arviz())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    vmax = np.abs(A).max()
    panels = [
        (A, "truth"),
        (res.mean, "hybrid mean"),
        (hi - lo, "hybrid 90% width"),
        (rd.mean, "rDCM mean"),
    ]
    for ax, (M, title) in zip(axes, panels):
        cmap = "viridis" if "width" in title else "RdBu_r"
        kw = {} if "width" in title else {"vmin": -vmax, "vmax": vmax}
        im = ax.imshow(M, cmap=cmap, **kw)
        ax.set(title=title, xlabel="source", ylabel="target")
        fig.colorbar(im, ax=ax, shrink=0.8)
    sig = (lo > 0) | (hi < 0)
    for i, j in zip(*np.nonzero(sig & off)):
        axes[1].add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="k", lw=1.5))
    fig.tight_layout()
    out = pathlib.Path(__file__).with_suffix(".png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

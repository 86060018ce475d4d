"""Score-Jacobian cost: full spectrum vs d batched score evaluations; Lanczos top-k at d = 3072.

For a time-embedded MLP score (untrained weights: cost does not depend on training), measures
- the full spectrum (default path: for the MLP, whose Jacobian has rank ≤ width = 256, the
  exact low-rank route of ``low_rank_spectrum`` when 2·width < d; otherwise the forward-mode
  Jacobian + values-only symmetric eigensolver, shown as "dense"; the JAX eigensolver, which also
  computes eigenvectors, beside it) at d = 64 and 784 for an MLP score, and at d = 784 for the
  small U-Net on 28×28 images, against the time of d batched score evaluations (the anchor: one
  column per evaluation); target ≤ 3×; for the MLP also the spectrum at a point when the
  network's ``outer_basis`` (a QR of its fixed read-out and input weights) is computed once and
  reused across points and times, as ``spectra_over_time`` does ("reused basis");
- Lanczos top-k (k = 20) at d = 3072 from Jacobian-vector products, and its agreement with the
  full-Jacobian top-k where the full Jacobian is affordable (d = 784).
Writes benchmarks/results/score_jacobian.json. The eigensolver and JAX's QR call OpenBLAS; on a
2-core machine its second thread competes with XLA's workers, so the spectrum rows also read
with ``OPENBLAS_NUM_THREADS=1`` (recorded in the JSON). Each row is the median of repeated calls
after warm-up calls (for the millisecond rows, at least 1 s of them), timed one variant at a
time: interleaving the variants would slow the XLA-only anchor, which then runs while
OpenBLAS's threads still spin after the eigensolver.

    python benchmarks/score_jacobian.py [--quick]
    OPENBLAS_NUM_THREADS=1 python benchmarks/score_jacobian.py --out benchmarks/results/score_jacobian_openblas1.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from bayesflow_nets.diffusion import (
    ScoreMLP,
    ScoreUNet,
    lanczos_eigh,
    outer_basis,
    score_jacobian,
    score_jacobian_spectrum,
)


def timeit(fn, *args, repeats=5, warmup=3, warmup_s=0.0):
    """Median seconds over ``repeats`` calls, after ``warmup`` calls and ``warmup_s`` seconds of
    calls (a process's first second runs its LAPACK calls up to 2.4× slower)."""
    t_end = time.perf_counter() + warmup_s
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    while time.perf_counter() < t_end:
        jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="d = 64 only, smaller Lanczos case")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "score_jacobian.json")
    )
    args = parser.parse_args()
    t = 0.1
    # (label, d, score network, input): the MLP rows are cheap networks, where the O(d³)
    # eigensolver dominates; the U-Net row is the image-sized score model d = 784 stands for.
    cases = [("mlp", 64), ("mlp", 784)] if not args.quick else [("mlp", 64)]
    if not args.quick:
        cases.append(("unet28", 784))
    rows = []
    print(
        f"{'net':>7}{'d':>6}{'jacobian s':>12}{'spectrum s':>12}{'(dense)':>10}{'(jax eigh)':>12}"
        f"{'d evals s':>12}{'jac ratio':>11}{'spec ratio':>12}{'(dense)':>10}{'(jax eigh)':>12}"
        "  (target ≤ 3×)"
    )
    for label, d in cases:
        if label == "mlp":
            net = ScoreMLP(jax.random.key(d), d, width=256, depth=3)
            x = jax.random.normal(jax.random.key(1), (d,))
        else:
            net = ScoreUNet(jax.random.key(d), (1, 28, 28))
            x = jax.random.normal(jax.random.key(1), (1, 28, 28))
        spec = jax.jit(lambda x, net=net: score_jacobian_spectrum(net, x, t, chunk_size=None))
        spec_dense = jax.jit(
            lambda x, net=net: score_jacobian_spectrum(
                net, x, t, chunk_size=None, low_rank=False
            )
        )
        spec_jax = jax.jit(
            lambda x, net=net: score_jacobian_spectrum(net, x, t, chunk_size=None, solver="jax")
        )
        spec_reuse = basis = None
        if label == "mlp":
            basis = jax.block_until_ready(outer_basis(*net.jacobian_outer()))
            spec_reuse = jax.jit(
                lambda x, b, net=net: score_jacobian_spectrum(net, x, t, chunk_size=None, basis=b)
            )
        jac = jax.jit(lambda x, net=net: score_jacobian(net, x, t, chunk_size=None))
        evals = jax.jit(lambda xs, net=net: jax.vmap(lambda v: net(v, t))(xs))
        xs = x + 0.01 * jax.random.normal(jax.random.key(2), (d,) + x.shape)
        reps = 31 if label == "mlp" else 5  # millisecond rows: more repeats against noise
        # the U-Net's seconds-long calls need no more than one warm-up call
        warm = dict(warmup=3, warmup_s=1.0) if label == "mlp" else dict(warmup=1)
        tj = timeit(jac, x, repeats=reps, **warm)
        ts = timeit(spec, x, repeats=reps, **warm)
        tsd = timeit(spec_dense, x, repeats=reps, **warm)
        tsj = timeit(spec_jax, x, repeats=reps, **warm)
        te = timeit(evals, xs, repeats=reps, **warm)
        tr = timeit(spec_reuse, x, basis, repeats=reps, **warm) if spec_reuse is not None else None
        err = float(np.max(np.abs(np.asarray(spec(x)) - np.asarray(spec_dense(x)))))
        if spec_reuse is not None:
            reuse = np.asarray(spec_reuse(x, basis))
            err = max(err, float(np.max(np.abs(reuse - np.asarray(spec_dense(x))))))
        rows.append(
            {
                "net": label,
                "d": d,
                "jacobian_s": tj,
                "spectrum_s": ts,
                "spectrum_dense_s": tsd,
                "spectrum_jax_eigh_s": tsj,
                "max_abs_diff_default_or_reused_vs_dense": err,
                "batched_evals_s": te,
                "jacobian_ratio": tj / te,
                "spectrum_ratio": ts / te,
                "spectrum_dense_ratio": tsd / te,
                "spectrum_jax_eigh_ratio": tsj / te,
                "spectrum_reused_basis_s": tr,
                "spectrum_reused_basis_ratio": None if tr is None else tr / te,
            }
        )
        print(
            f"{label:>7}{d:>6}{tj:>12.4f}{ts:>12.4f}{tsd:>10.4f}{tsj:>12.4f}{te:>12.4f}"
            f"{tj / te:>10.2f}x{ts / te:>11.2f}x{tsd / te:>9.2f}x{tsj / te:>11.2f}x"
            + (f"   reused basis {tr:.4f} s ({tr / te:.2f}x)" if tr is not None else "")
        )

    # Lanczos top-k on the symmetric part of J, from jvp / vjp.
    lanczos_rows = []
    k = 20
    for d in [784] if args.quick else [784, 3072]:
        net = ScoreMLP(jax.random.key(d), d, width=256, depth=3)
        x = jax.random.normal(jax.random.key(1), (d,))

        def matvec(v, net=net, x=x):
            f = lambda y: net(y, t)  # noqa: E731
            jv = jax.jvp(f, (x,), (v,))[1]
            vj = jax.vjp(f, x)[1](v)[0]
            return 0.5 * (jv + vj)

        lz = jax.jit(lambda key, d=d, mv=matvec: lanczos_eigh(mv, d, key, k, num_iter=3 * k + 20))
        tl = timeit(lz, jax.random.key(3), repeats=3, warmup=1)
        top = np.asarray(lz(jax.random.key(3))[0])
        row = {"d": d, "k": k, "lanczos_s": tl}
        if d <= 784:
            jac = score_jacobian(net, x, t, chunk_size=64)
            full = np.linalg.eigvalsh(0.5 * np.asarray(jac + jac.T))
            full_top = full[np.argsort(-np.abs(full))[:k]]
            rel = float(np.max(np.abs(np.sort(top) - np.sort(full_top)) / np.abs(full_top).max()))
            row["max_rel_err_vs_full"] = rel
        lanczos_rows.append(row)
        extra = (
            f", max rel err vs full {row['max_rel_err_vs_full']:.1e}"
            if "max_rel_err_vs_full" in row
            else ""
        )
        print(f"Lanczos top-{k} at d={d}: {tl:.3f} s{extra}")

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "spectrum": rows,
                "lanczos": lanczos_rows,
                "device": str(jax.devices()[0]),
                "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

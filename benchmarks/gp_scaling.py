"""Scaling of the improper-GP paths vs tinygp (same process, float64, CPU).

Dense: our contrast-form REML / corrected predict (Matérn-5/2 walk, improper) vs tinygp's dense
exact GP (Matern52), n ∈ {1k, 2k, 5k}; predict = 500 test points with variance.
State space: our exact diffuse Kalman filter REML (Matérn-5/2 walk; state dim 4) vs tinygp's
quasiseparable Matern52 (state dim 3) log-likelihood, n ∈ {1e4, 1e5, 1e6}.
Targets: dense ≤ 1.2× tinygp, state space ≤ 1.5× tinygp.

    python benchmarks/gp_scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from tinygp import GaussianProcess, kernels as tg_kernels  # noqa: E402
from tinygp.kernels import quasisep  # noqa: E402

from bayesflow_nets.gp import Brownian, ImproperGP, Matern52, MaternWalk  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "results", "gp_scaling.json")


def paired_times(fa, args_a, fb, args_b, reps):
    """Min and median wall time of two jitted calls, interleaved (a, b, a, b, …) so that both
    see the same background load on a shared machine."""
    jax.block_until_ready(fa(*args_a))  # compile + warm up
    jax.block_until_ready(fb(*args_b))
    ta, tb = [], []
    for _ in range(reps):
        for fn, args, out in ((fa, args_a, ta), (fb, args_b, tb)):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            out.append(time.perf_counter() - t0)
    return (float(np.min(ta)), float(np.median(ta))), (float(np.min(tb)), float(np.median(tb)))


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0.0, n / 10.0, n))
    y = np.sin(x) + 0.05 * x + 0.1 * rng.normal(size=n)
    return jnp.asarray(x), jnp.asarray(y)


def dense_rows(ns, reps):
    rows = []
    ell, noise = 1.5, 0.01

    @jax.jit
    def tg_ll(x, y):
        return GaussianProcess(tg_kernels.Matern52(scale=ell), x, diag=noise).log_probability(y)

    @jax.jit
    def tg_pred(x, y, xt):
        gp = GaussianProcess(tg_kernels.Matern52(scale=ell), x, diag=noise)
        return gp.predict(y, xt, return_var=True)

    @jax.jit
    def our_ll(gp, y):
        return gp._log_marginal_likelihood(y, "contrast")[0]

    def our_pred(gp, y, xt):
        # the public call (compiled inside; float64 takes the K + c11ᵀ Cholesky path with a
        # host-side positive-definiteness check)
        post = gp.predict(y, xt)
        return post.mean, post.variance

    for n in ns:
        x, y = data(n)
        xt = jnp.linspace(float(x[0]) - 5, float(x[-1]) + 5, 500)
        walk = ImproperGP(MaternWalk(2.5, ell, 1.0), x, noise)
        proper = ImproperGP(Matern52(ell, 1.0), x, noise)
        t_tg_ll, t_ll = paired_times(tg_ll, (x, y), our_ll, (walk, y), reps)
        _, t_ll_proper = paired_times(tg_ll, (x, y), our_ll, (proper, y), max(2, reps // 2))
        t_tg_pr, t_pr = paired_times(tg_pred, (x, y, xt), our_pred, (walk, y, xt), reps)
        # Same numbers as tinygp for the proper kernel (correctness anchor).
        diff = abs(float(our_ll(proper, y)) - float(tg_ll(x, y)))
        rows.append(
            {
                "n": n,
                "tinygp_loglik_s": t_tg_ll[0],
                "ours_reml_s": t_ll[0],
                "ours_proper_loglik_s": t_ll_proper[0],
                "loglik_ratio": t_ll[0] / t_tg_ll[0],
                "tinygp_predict_s": t_tg_pr[0],
                "ours_predict_s": t_pr[0],
                "predict_ratio": t_pr[0] / t_tg_pr[0],
                "proper_loglik_abs_diff_vs_tinygp": diff,
                "median_s": {
                    "tinygp_loglik": t_tg_ll[1],
                    "ours_reml": t_ll[1],
                    "tinygp_predict": t_tg_pr[1],
                    "ours_predict": t_pr[1],
                },
            }
        )
        print(
            f"dense n={n:6d}  loglik: tinygp {t_tg_ll[0]:.4f}s ours {t_ll[0]:.4f}s "
            f"(×{t_ll[0] / t_tg_ll[0]:.2f})  predict: tinygp {t_tg_pr[0]:.4f}s ours {t_pr[0]:.4f}s "
            f"(×{t_pr[0] / t_tg_pr[0]:.2f})  |Δll proper| {diff:.1e}",
            flush=True,
        )
    return rows


def state_space_rows(ns, reps):
    rows = []
    ell, noise = 1.5, 0.01

    @jax.jit
    def tg_ll(x, y):
        k = quasisep.Matern52(scale=ell, sigma=1.0)
        return GaussianProcess(k, x, diag=noise).log_probability(y)

    @jax.jit
    def our_ll(gp, y):
        return gp._log_marginal_likelihood(y, "state_space")[0]

    for n in ns:
        x, y = data(n, seed=1)
        row = {"n": n}
        for name, kernel in [
            ("matern52_walk", MaternWalk(2.5, ell, 1.0)),
            ("matern32_walk", MaternWalk(1.5, ell, 1.0)),
            ("brownian", Brownian(1.0)),
        ]:
            gp = ImproperGP(kernel, x, noise)
            t_tg, t = paired_times(tg_ll, (x, y), our_ll, (gp, y), reps)
            row[f"tinygp_quasisep_matern52_s__vs_{name}"] = t_tg[0]
            row[f"ours_{name}_s"] = t[0]
            row[f"{name}_ratio"] = t[0] / t_tg[0]
        t_tg = (row["tinygp_quasisep_matern52_s__vs_matern52_walk"],)
        row["tinygp_quasisep_matern52_s"] = t_tg[0]
        rows.append(row)
        print(
            f"state-space n={n:8d}  tinygp qs-M52 {t_tg[0]:.4f}s  ours M52-walk "
            f"{row['ours_matern52_walk_s']:.4f}s (×{row['matern52_walk_ratio']:.2f})  "
            f"M32-walk {row['ours_matern32_walk_s']:.4f}s (×{row['matern32_walk_ratio']:.2f})  "
            f"Brownian {row['ours_brownian_s']:.4f}s (×{row['brownian_ratio']:.2f})",
            flush=True,
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    if args.quick:
        dense_ns, ss_ns, reps = [500, 1000], [10_000, 100_000], 3
    else:
        dense_ns, ss_ns, reps = [1000, 2000, 5000], [10_000, 100_000, 1_000_000], 5
    dense = dense_rows(dense_ns, reps)
    ss = state_space_rows(ss_ns, reps)
    out = {
        "benchmark": "gp_scaling",
        "quick": args.quick,
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "targets": {"dense_ratio_max": 1.2, "state_space_ratio_max": 1.5},
        "dense": dense,
        "state_space": ss,
    }
    path = RESULTS.replace(".json", "_quick.json") if args.quick else RESULTS
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

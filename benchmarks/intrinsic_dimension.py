"""Intrinsic dimension from a DSM-trained score vs scikit-dimension (TwoNN, MLE, lPCA).

Data: k-spheres S^k (k = 10, 50) isometrically embedded in R^100, a linear k = 10 manifold in
R^100, and sklearn digits (d = 64, no ground truth). Ours: a ScoreMLP trained by denoising score
matching (VE, log-uniform t), then at a small noise level
  * ``stanczuk``: centred-score SVD at K = 4d perturbations (Stanczuk et al.),
  * ``jac_gap``: largest gap of the full normalised score-Jacobian spectrum s²·J,
each the median over held-out anchor points. Anchors: skdim's TwoNN / MLE / lPCA on the samples.

    python benchmarks/intrinsic_dimension.py [--quick]

Prints a table and writes benchmarks/results/intrinsic_dimension.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import skdim
from sklearn.datasets import load_digits

from bayesflow_nets import diffusion as D

D_AMBIENT = 100


def train_score(key, data, schedule, steps, *, width, depth, batch=256, lr=1e-3):
    """DSM training: the foundation's ``fit_to_loss`` if present, else a plain optax loop."""
    k_net, k_fit = jax.random.split(key)
    net = D.ScoreMLP(k_net, data.shape[1], width=width, depth=depth)
    data = jnp.asarray(data)

    def loss_fn(model, k):
        k1, k2 = jax.random.split(k)
        idx = jax.random.randint(k1, (batch,), 0, data.shape[0])
        return D.dsm_loss(model, schedule, data[idx], k2, t_sampling="log")

    try:
        from bayesflow_nets.infer import fit_to_loss
    except ImportError:
        fit_to_loss = None
    if fit_to_loss is not None:
        sched = optax.cosine_decay_schedule(lr, steps)
        res = fit_to_loss(k_fit, net, loss_fn, steps, optimizer=optax.adam(sched), progress=False)
        return res.model
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
    state = opt.init(eqx.filter(net, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model, state, k):
        loss, g = eqx.filter_value_and_grad(loss_fn)(model, k)
        upd, state = opt.update(g, state, model)
        return eqx.apply_updates(model, upd), state, loss

    for k in jax.random.split(k_fit, steps):
        net, state, loss = step(net, state, k)
    if not np.isfinite(float(loss)):
        raise RuntimeError("DSM training diverged (non-finite loss).")
    return net


def sphere(key, n, k, d=D_AMBIENT):
    """Uniform S^k ⊂ R^{k+1}, rotated into R^d, radius √d (unit average coordinate variance)."""
    k1, k2 = jax.random.split(key)
    z = jax.random.normal(k1, (n, k + 1))
    z = z / jnp.linalg.norm(z, axis=1, keepdims=True)
    q, _ = jnp.linalg.qr(jax.random.normal(k2, (d, k + 1)))
    return np.asarray(np.sqrt(d) * z @ q.T)


def linear(key, n, k, d=D_AMBIENT):
    k1, k2 = jax.random.split(key)
    z = jax.random.normal(k1, (n, k)) * jnp.sqrt(d / k)
    q, _ = jnp.linalg.qr(jax.random.normal(k2, (d, k)))
    return np.asarray(z @ q.T)


def digits():
    x = load_digits().data.astype(np.float32)
    return x / 8.0 - 1.0


def our_estimates(key, score_fn, schedule, anchors, t_eval):
    stan, gap = [], []
    for i, x0 in enumerate(anchors):
        k = jax.random.fold_in(key, i)
        res = D.stanczuk_intrinsic_dimension(score_fn, jnp.asarray(x0), t_eval, k, schedule)
        stan.append(int(res.dimension))
        x_t = schedule.marginal_sample(k, jnp.asarray(x0), t_eval)[0]
        spec = D.score_jacobian_spectrum(score_fn, x_t, t_eval, schedule)
        gap.append(int(D.gap_intrinsic_dimension(spec)))
    return int(np.median(stan)), int(np.median(gap)), stan, gap


def anchors_skdim(x, n_max=3000):
    x = np.asarray(x, np.float64)[:n_max]
    out = {}
    for name, est in (
        ("TwoNN", skdim.id.TwoNN()),
        ("MLE", skdim.id.MLE()),
        ("lPCA", skdim.id.lPCA()),
    ):
        t0 = time.perf_counter()
        try:
            out[name] = float(est.fit(x).dimension_)
        except Exception as err:  # report, don't hide
            out[name] = f"error: {type(err).__name__}: {err}"
        out[name + "_s"] = time.perf_counter() - t0
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small run (fewer samples and steps)")
    args = ap.parse_args()
    n = 4000 if args.quick else 20000
    steps = 1500 if args.quick else 6000
    n_anchor = 4 if args.quick else 8
    key = jax.random.key(0)
    sets = {
        "sphere_k10_R100": (lambda k: sphere(k, n, 10), 10),
        "sphere_k50_R100": (lambda k: sphere(k, n, 50), 50),
        "linear_k10_R100": (lambda k: linear(k, n, 10), 10),
        "sklearn_digits_R64": (lambda k: digits(), None),
    }
    sigma_evals = (0.05, 0.2)  # headline: the first one, fixed before looking at results
    schedule = D.VESchedule(sigma_min=0.01, sigma_max=3.0 * np.sqrt(D_AMBIENT))
    rows = []
    for i, (name, (make, k_true)) in enumerate(sets.items()):
        kd, kt, ke = jax.random.split(jax.random.fold_in(key, i), 3)
        data = make(kd).astype(np.float32)
        perm = np.random.default_rng(i).permutation(len(data))
        data = data[perm]
        train, anchors = data[n_anchor:], data[:n_anchor]
        t0 = time.perf_counter()
        net = train_score(kt, train, schedule, steps, width=512, depth=3)
        train_s = time.perf_counter() - t0
        score_fn = eqx.filter_jit(D.as_score_fn(net, schedule, "eps"))
        row = {
            "data": name,
            "k_true": k_true,
            "n": len(train),
            "train_steps": steps,
            "train_s": round(train_s, 1),
        }
        for j, sig in enumerate(sigma_evals):
            t_eval = float(sig**2)
            st, gp, st_all, gp_all = our_estimates(ke, score_fn, schedule, anchors, t_eval)
            suffix = "" if j == 0 else f"@sigma{sig}"
            row["stanczuk" + suffix] = st
            row["jac_gap" + suffix] = gp
            row["stanczuk_per_point" + suffix] = st_all
            row["jac_gap_per_point" + suffix] = gp_all
        row.update(anchors_skdim(train))
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if "per_point" not in k}), flush=True)

    print(f"\nIntrinsic dimension (ours at sigma={sigma_evals[0]:.2f}; anchors: scikit-dimension)")
    hdr = f"{'data':22s} {'k':>4s} {'stanczuk':>9s} {'jac_gap':>8s} {'TwoNN':>7s} {'MLE':>7s} {'lPCA':>7s}"
    print(hdr)
    for r in rows:

        def f(v):
            return f"{v:7.2f}" if isinstance(v, float) else f"{str(v):>7s}"

        print(
            f"{r['data']:22s} {str(r['k_true']):>4s} {r['stanczuk']:9d} {r['jac_gap']:8d} "
            f"{f(r['TwoNN'])} {f(r['MLE'])} {f(r['lPCA'])}"
        )
    out = Path(__file__).parent / "results" / "intrinsic_dimension.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Gaussian late start vs cold start for few-step samplers (MATH.md §5, issue 6).

A ScoreMLP is trained by DSM (ε-prediction, discrete DDPM schedule β = linspace(1e-4, 0.02, 1000))
on (a) a 2-D mixture of 8 Gaussians (exact distribution known) and (b) sklearn digits (8×8).
For DDIM (η=0), DDPM (η=1) and PNDM with n = 3, 5, 10 steps we compare
  * cold start: N(0, I) at DDPM index 666 / 800 / 900 (diffusers' "leading" grid for n = 3/5/10),
  * Gaussian late start: N(mean, cov) of the noised training data at t_s, n steps on
    linspace(0, t_s, n); t_s picked on a validation reference from a sweep, and also the
    critical-time heuristic (argmax of the 2nd derivative of quality vs t_s).
Quality: sliced Wasserstein-2 and MMD² to held-out data; for digits also an FID-style Fréchet
distance in the hidden-layer features of a small MLP classifier trained here. Lower is better.

(Index convention: the library's DDPMSchedule time k has ᾱ = Π_{j<k}(1−β_j), i.e. DDPM index
k − 1; we add 1 to DDPM indices and finish at time 0 = clean data, exactly as diffusers does.)

    python benchmarks/late_start.py [--quick]
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
from scipy import linalg
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

from bayesflow_nets import diffusion as D

T = 1000
SCHED = D.DDPMSchedule()
SAMPLERS = {
    "DDIM": lambda s, x, ts, k: D.ddim_sample(s, SCHED, x, ts),
    "DDPM": lambda s, x, ts, k: D.ddpm_sample(s, SCHED, x, ts, key=k),
    "PNDM": lambda s, x, ts, k: D.pndm_sample(s, SCHED, x, ts),
}


# --------------------------------------------------------------------------- training
def train_score(key, data, steps, *, width, depth, batch=256, lr=1e-3):
    """DSM training: the foundation's ``fit_to_loss`` if present, else a plain optax loop."""
    k_net, k_fit = jax.random.split(key)
    net = D.ScoreMLP(k_net, data.shape[1], width=width, depth=depth)
    data = jnp.asarray(data)

    def loss_fn(model, k):
        k1, k2 = jax.random.split(k)
        idx = jax.random.randint(k1, (batch,), 0, data.shape[0])
        return D.dsm_loss(model, SCHED, data[idx], k2)

    try:
        from bayesflow_nets.infer import fit_to_loss
    except ImportError:
        fit_to_loss = None
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
    if fit_to_loss is not None:
        return fit_to_loss(k_fit, net, loss_fn, steps, optimizer=opt, progress=False).model
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


# --------------------------------------------------------------------------- metrics
def sliced_w2(key, x, y, n_proj=256):
    d = x.shape[1]
    v = jax.random.normal(key, (d, n_proj))
    v = v / jnp.linalg.norm(v, axis=0)
    px, py = jnp.sort(x @ v, axis=0), jnp.sort(y @ v, axis=0)
    q = (jnp.arange(200) + 0.5) / 200  # quantile midpoints: the extreme order statistics are noise
    qx, qy = jnp.quantile(px, q, axis=0), jnp.quantile(py, q, axis=0)
    return float(jnp.sqrt(jnp.mean((qx - qy) ** 2)))


def mmd2(x, y, bandwidth):
    def k(a, b):
        d2 = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None] - 2 * a @ b.T
        return jnp.exp(-d2 / (2 * bandwidth**2))

    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float(
        (jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
        + (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
        - 2 * jnp.mean(kxy)
    )


def frechet(fx, fy):
    mu1, mu2 = fx.mean(0), fy.mean(0)
    eps = 1e-6 * np.eye(fx.shape[1])  # dead ReLU features make the covariances singular
    c1, c2 = np.cov(fx.T) + eps, np.cov(fy.T) + eps
    covmean = linalg.sqrtm(c1 @ c2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * covmean))


# --------------------------------------------------------------------------- data
def mixture(key, n):
    """8 Gaussians (std 0.15) on a circle of radius 2."""
    k1, k2 = jax.random.split(key)
    ang = 2 * jnp.pi * jax.random.randint(k1, (n,), 0, 8) / 8
    centres = 2.0 * jnp.stack([jnp.cos(ang), jnp.sin(ang)], 1)
    return np.asarray(centres + 0.15 * jax.random.normal(k2, (n, 2)), np.float32)


# --------------------------------------------------------------------------- grids
def cold_times(n):
    """diffusers' leading grid: DDPM indices (n−1)·T/n, …, 0 (+1 in our convention), then clean."""
    idx = np.arange(n)[::-1] * (T // n)
    return jnp.asarray(np.concatenate([idx + 1.0, [0.0]]), jnp.float32)


def late_times(t_s, n):
    """n score evaluations on linspace(0, t_s, n) (DDPM indices, +1), then clean."""
    return jnp.asarray(np.concatenate([np.linspace(t_s, 0, n) + 1.0, [0.0]]), jnp.float32)


_JITTED = {}


def run_sampler(name, score_fn, x_init, times, key):
    """Batched sampler, compiled once per (sampler, score, grid length)."""
    cache_key = (name, id(score_fn), times.shape[0])
    if cache_key not in _JITTED:
        _JITTED[cache_key] = jax.jit(
            jax.vmap(lambda x, ts, k: SAMPLERS[name](score_fn, x, ts, k), in_axes=(0, None, 0))
        )
    keys = jax.random.split(key, x_init.shape[0])
    return np.asarray(_JITTED[cache_key](jnp.asarray(x_init), times, keys))


# --------------------------------------------------------------------------- experiment
def experiment(name, train, val_ref, test_ref, quality, *, steps, width, n_gen, t_grid, key):
    k_train, k_eval = jax.random.split(key)
    t0 = time.perf_counter()
    net = train_score(k_train, train, steps, width=width, depth=3)
    train_s = time.perf_counter() - t0
    score_fn = D.as_score_fn(net, SCHED, "eps")
    d = train.shape[1]
    # floor: real training samples scored like generated ones (sample-size noise of the metric)
    pick = np.random.default_rng(7).choice(len(train), min(n_gen, len(train)), replace=False)
    floor = quality(train[pick], test_ref)
    print(f"{name:8s} floor (real train samples vs test): {floor['primary']:.4f}", flush=True)
    rows = []
    for i_s, sampler in enumerate(SAMPLERS):
        for n in (3, 5, 10):
            k = jax.random.fold_in(k_eval, 100 * i_s + n)
            kc, kl, ks = jax.random.split(k, 3)
            cold = run_sampler(
                sampler, score_fn, jax.random.normal(kc, (n_gen, d)), cold_times(n), ks
            )
            q_cold = quality(cold, test_ref)

            def late_samples(t_s, seed, sampler=sampler, n=n, kl=kl, ks=ks):
                g = D.gaussian_late_start(train, SCHED, float(t_s) + 1.0)
                x0 = g.sample(jax.random.fold_in(kl, seed), n_gen)
                return run_sampler(sampler, score_fn, x0, late_times(t_s, n), ks)

            # sweep on the validation reference (selection), score on the held-out test set
            sweep = D.late_start_sweep(
                lambda t_s: quality(late_samples(t_s, 0), val_ref)["primary"], t_grid
            )
            t_best = float(sweep.start_times[int(np.argmin(sweep.quality))])
            q_best = quality(late_samples(t_best, 1), test_ref)
            q_crit = quality(late_samples(sweep.critical_time, 1), test_ref)
            row = {
                "data": name,
                "floor": floor,
                "sampler": sampler,
                "n": n,
                "cold": q_cold,
                "late_best": q_best,
                "t_s_best": t_best,
                "late_critical": q_crit,
                "t_s_critical": sweep.critical_time,
                "sweep_quality": sweep.quality.tolist(),
                "sweep_t_s": sweep.start_times.tolist(),
            }
            rows.append(row)
            print(
                f"{name:8s} {sampler:5s} n={n:2d}  cold {q_cold['primary']:.4f}  "
                f"late(t_s={t_best:.0f}) {q_best['primary']:.4f}  "
                f"late(t_c={sweep.critical_time:.0f}) {q_crit['primary']:.4f}",
                flush=True,
            )
    return rows, train_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    key = jax.random.key(0)
    q = args.quick
    t_grid = [100, 200, 300, 400, 500, 600, 700, 800] if q else list(range(100, 901, 100))
    out_rows = []
    timings = {}

    # (a) 2-D mixture: exact reference samples
    km = jax.random.fold_in(key, 1)
    train = mixture(jax.random.fold_in(km, 0), 20000)
    val_ref = mixture(jax.random.fold_in(km, 1), 2000)
    test_ref = mixture(jax.random.fold_in(km, 2), 2000)
    kq = jax.random.fold_in(km, 3)

    def q_mix(x, ref):
        sw = sliced_w2(kq, jnp.asarray(x), jnp.asarray(ref), n_proj=64)
        return {"primary": sw, "sw2": sw, "mmd2": mmd2(jnp.asarray(x), jnp.asarray(ref), 0.5)}

    rows, ts = experiment(
        "mixture",
        train,
        val_ref,
        test_ref,
        q_mix,
        steps=2000 if q else 6000,
        width=256,
        n_gen=2000,
        t_grid=t_grid,
        key=km,
    )
    out_rows += rows
    timings["mixture_train_s"] = ts

    # (b) digits: held-out test split; classifier features for a Fréchet distance
    x = load_digits().data.astype(np.float32) / 8.0 - 1.0
    y = load_digits().target
    perm = np.random.default_rng(0).permutation(len(x))
    tr, te = perm[:1500], perm[1500:]
    clf = MLPClassifier((128,), max_iter=500, random_state=0).fit(x[tr], y[tr])
    clf_acc = float(clf.score(x[te], y[te]))

    def feats(v):
        return np.maximum(np.asarray(v, np.float64) @ clf.coefs_[0] + clf.intercepts_[0], 0.0)

    kd = jax.random.fold_in(key, 2)
    val_idx = np.random.default_rng(1).choice(tr, 300, replace=False)

    def q_dig(xg, ref):
        xg = np.clip(xg, -1.5, 1.5)
        fd = frechet(feats(xg), feats(ref))
        return {
            "primary": fd,
            "fd_features": fd,
            "sw2": sliced_w2(kd, jnp.asarray(xg), jnp.asarray(ref)),
            "mmd2": mmd2(jnp.asarray(xg), jnp.asarray(ref), 4.0),
        }

    rows, ts = experiment(
        "digits",
        x[tr],
        x[val_idx],
        x[te],
        q_dig,
        steps=3000 if q else 8000,
        width=512,
        n_gen=1000,
        t_grid=t_grid,
        key=kd,
    )
    out_rows += rows
    timings["digits_train_s"] = ts

    print("\nLower is better. primary = sliced W2 (mixture) / feature Fréchet distance (digits)")
    print(
        f"{'data':8s} {'sampler':7s} {'n':>3s} {'cold':>9s} {'late':>9s} {'t_s':>5s} "
        f"{'late@t_c':>9s} {'t_c':>5s} {'ratio':>6s}"
    )
    wins = []
    for r in out_rows:
        c, lb, lc = r["cold"]["primary"], r["late_best"]["primary"], r["late_critical"]["primary"]
        print(
            f"{r['data']:8s} {r['sampler']:7s} {r['n']:3d} {c:9.4f} {lb:9.4f} "
            f"{r['t_s_best']:5.0f} {lc:9.4f} {r['t_s_critical']:5.0f} {c / lb:6.2f}"
        )
        if r["n"] in (3, 5):
            wins.append(lb < c)
    print(f"late start better at n=3,5: {sum(wins)}/{len(wins)}")
    out = Path(__file__).parent / "results" / "late_start.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"quick": q, "classifier_test_acc": clf_acc, "timings": timings, "rows": out_rows},
            indent=1,
        )
    )
    print(f"classifier test accuracy (feature net): {clf_acc:.3f}\nwrote {out}")


if __name__ == "__main__":
    main()

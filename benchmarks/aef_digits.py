"""AEF vs VAE vs MAF on sklearn digits (8×8, 17 levels): test bits/dim against the latent size.

Models (same conv encoder/decoder and preprocessing for the autoencoders): PartitionAEF with the
"center" and "corner" masks (exact log-likelihood), ExpansionAEF (importance sampling, K=128,
proposal scale picked on held-out training images), VAE (IWAE, K=128) and a MAF density model
(bayesflow_nets.bijectors.masked_autoregressive_flow, no latent size) as anchors.

bits/dim: images x_int ∈ {0..16} are dequantised x = (x_int + u)/17 ∈ [0, 1]^64, preprocessed by
affine squash (α = 0.05) → logit → ActNorm (log-dets included), and
bpd = (−log p_[0,1](x) + 64 log 17) / (64 log 2) on one fixed dequantisation of the test set.

Seeds change the network initialisation; the train/validation split and minibatch order are
fixed across seeds (so XLA programs are reused through JAX's persistent compilation cache).
Writes benchmarks/results/aef_digits.json and docs/figures/aef_bpd_vs_latent.png,
docs/figures/aef_samples.png.

    python benchmarks/aef_digits.py [--quick] [--flows]

``--flows`` adds a core flow g and a prior flow h to the AEFs and the same prior flow to the VAE
(results and figures get a ``_flows`` suffix).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax

jax.config.update("jax_compilation_cache_dir", "/tmp/bayesflow_nets_jax_cache")
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import bayesflow_nets.bijectors as bj  # noqa: E402
from bayesflow_nets import aef  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 8, 8)
D = 64
LEVELS = 17
MODELS = ("PartitionAEF-center", "PartitionAEF-corner", "ExpansionAEF", "VAE")


def latent_flows(key, d):
    """Core flow g (2 MAF layers) and prior flow h (4 MAF layers) on R^d, width 64."""
    kg, kh = jax.random.split(key)
    base = bj.StandardNormal((d,))
    g = bj.masked_autoregressive_flow(kg, base_dist=base, flow_layers=2, nn_width=64)
    h = bj.masked_autoregressive_flow(kh, base_dist=base, flow_layers=4, nn_width=64)
    return g, h


def build(name, key, d, flows=False):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    enc = aef.ConvEncoder(k1, SHAPE, d)
    dec = aef.ConvDecoder(k2, SHAPE, d)
    g, h = latent_flows(k4, d) if flows else (None, None)
    if name.startswith("PartitionAEF"):
        return aef.PartitionAEF(
            enc, dec, SHAPE, d, mask=name.split("-")[1], core_flow=g, prior_flow=h
        )
    if name == "ExpansionAEF":
        return aef.ExpansionAEF(enc, dec, SHAPE, d, key=k3, core_flow=g, prior_flow=h)
    return aef.VAE(enc, dec, SHAPE, d, prior_flow=h)  # the same prior flow; no core to map


def build_maf(key, x_init):
    pre = bj.init_actnorm(bj.logit_preprocessing((D,)), x_init)
    maf = bj.masked_autoregressive_flow(
        key, base_dist=bj.StandardNormal((D,)), flow_layers=5, nn_width=128
    )
    return bj.Transformed(maf.base, bj.Chain([maf.bijector, bj.Invert(pre)]))


def test_log_prob(name, model, x_test, x_select, key):
    """Per-image test log p (exact, IS or IWAE) and the IS scale when one is selected."""
    if name.startswith("PartitionAEF") or name == "MAF":
        return eqx.filter_jit(lambda m, x: m.log_prob(x))(model, x_test), None
    if name == "ExpansionAEF":
        scale, _ = aef.select_is_scale(model, key, x_select, num_samples=128)
        fn = eqx.filter_jit(lambda m, x, k: m.log_prob_is(x, k, 128, scale))
        return fn(model, x_test, key), scale
    return eqx.filter_jit(lambda m, x, k: m.log_prob_iwae(x, k, 128))(model, x_test, key), None


def run_one(name, d, seed, data, x_test, x_select, fit_kw, flows=False):
    init_key = jax.random.key(1000 * seed + d)
    fit_key = jax.random.key(7)  # fixed split / minibatch order across seeds
    t0 = time.perf_counter()
    if name == "MAF":
        x_init = aef.dequantise(jax.random.key(3), data.reshape(len(data), D)[:1000], LEVELS)
        model = build_maf(init_key, x_init)
        res = aef.fit_dequantised(
            fit_key, model, data.reshape(len(data), D), LEVELS, init_actnorm=False, **fit_kw
        )
        xt, xs = x_test.reshape(-1, D), x_select.reshape(-1, D)
    else:
        model = build(name, init_key, d, flows)
        res = aef.fit_dequantised(fit_key, model, data, LEVELS, **fit_kw)
        xt, xs = x_test, x_select
    fit_time = time.perf_counter() - t0
    epochs = len(res.losses["val"])
    lp, scale = test_log_prob(name, res.model, xt, xs, jax.random.key(11))
    bpd = float(jnp.mean(aef.bits_per_dim(lp, D, LEVELS)))
    return res.model, {
        "model": name,
        "d": d,
        "seed": seed,
        "bpd": bpd,
        "epochs": epochs,
        "status": res.status,
        "fit_time_s": fit_time,
        "time_per_epoch_s": fit_time / max(epochs, 1),
        "is_scale": scale,
    }


def sample_images(name, model, key):
    """16 samples: temperature 0.8 with the decoder mean for the autoencoders, 1 for the MAF."""
    if name == "MAF":
        return model.sample(key, (16,)).reshape((16,) + SHAPE)
    return model.sample(key, 16, temperature=0.8, deviations=False)


def summarise(rows, names, ds):
    table = {}
    for name in names:
        for d in ds if name != "MAF" else [None]:
            sel = [r for r in rows if r["model"] == name and (d is None or r["d"] == d)]
            if sel:
                b = np.array([r["bpd"] for r in sel])
                t = np.array([r["time_per_epoch_s"] for r in sel])
                table[(name, d)] = (b.mean(), b.std(ddof=1) if len(b) > 1 else 0.0, t.mean())
    return table


def plot(table, ds, samples, path_curve, path_samples):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in MODELS:
        m = [table[(name, d)][0] for d in ds]
        s = [table[(name, d)][1] for d in ds]
        ax.errorbar(ds, m, yerr=s, marker="o", capsize=3, label=name)
    if ("MAF", None) in table:
        ax.axhline(table[("MAF", None)][0], color="k", ls="--", label="MAF (no latent)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ds, [str(d) for d in ds])
    ax.set_xlabel("latent size d")
    ax.set_ylabel("test bits/dim (lower is better)")
    ax.set_title("sklearn digits 8×8, 17 levels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_curve, dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(samples), figsize=(2.6 * len(samples), 2.8))
    for ax, (title, imgs) in zip(np.atleast_1d(axes), samples.items()):
        n = int(np.sqrt(len(imgs)))
        tiles = np.pad(np.asarray(imgs[: n * n, 0]), ((0, 0), (1, 1), (1, 1)))
        grid = tiles.reshape(n, n, 10, 10).transpose(0, 2, 1, 3)
        ax.imshow(grid.reshape(n * 10, n * 10), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path_samples, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, d ∈ {2, 8}, 4 epochs")
    parser.add_argument("--epochs", type=int, default=150, help="max epochs per model (early stopping ends every run before 150)")
    parser.add_argument("--patience", type=int, default=4, help="early-stopping patience")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the records of earlier runs with the same settings")
    parser.add_argument("--flows", action="store_true",
                        help="give the AEFs a core flow g (2 MAF layers) and a prior flow h "
                             "(4 MAF layers), and the VAE the same prior flow h")
    args = parser.parse_args()
    if args.quick:
        ds, seeds, max_epochs = [2, 8], [0], 4
    else:
        ds, seeds, max_epochs = [2, 4, 8, 16], [0, 1, 2], args.epochs
    fit_kw = dict(
        max_epochs=max_epochs,
        max_patience=args.patience,
        batch_size=64,
        learning_rate=2e-3,
        progress=False,
    )
    data = aef.load_digits(test_prop=0.2, seed=0)
    train, select = data.train[:-150], data.train[-150:]  # held-out images pick the IS scale
    x_test = aef.dequantise(jax.random.key(123), data.test, LEVELS)
    x_select = aef.dequantise(jax.random.key(124), select, LEVELS)
    print(f"train {len(train)} (10% of it for early stopping), scale-selection {len(select)}, "
          f"test {len(data.test)}; epochs ≤ {max_epochs}, batch 64; seeds {seeds}; d {ds}")

    suffix = ("_flows" if args.flows else "") + ("_quick" if args.quick else "")
    # Every finished run is appended to a records file, so a run that dies (e.g. LLVM running
    # out of memory after hundreds of compiled programs) resumes where it stopped.
    records = ROOT / "benchmarks" / "results" / f"aef_digits{suffix}_runs.jsonl"
    setting = {"max_epochs": max_epochs, "patience": args.patience, "flows": args.flows}
    done = {}
    if records.exists() and not (args.fresh or args.quick):
        for line in records.read_text().splitlines():
            rec = json.loads(line)
            if rec["setting"] == setting:
                done[(rec["row"]["model"], rec["row"]["d"], rec["row"]["seed"])] = rec
    else:
        records.parent.mkdir(parents=True, exist_ok=True)
        records.write_text("")
    key_samples = jax.random.key(5)
    rows, samples = [], {"data": np.asarray(x_test[:16]).tolist()}
    t_start = time.perf_counter()
    d_show = 8 if 8 in ds else ds[-1]
    for seed in seeds:
        for d in ds:
            for name in MODELS + ("MAF",):
                if name == "MAF" and d != ds[-1]:
                    continue  # no latent: once per seed
                d_row = 0 if name == "MAF" else d
                rec = done.get((name, d_row, seed))
                if rec is None:
                    model, row = run_one(name, d_row, seed, train, x_test, x_select, fit_kw,
                                         args.flows and name != "MAF")
                    shown = None
                    if seed == seeds[0] and (d == d_show or name == "MAF"):
                        shown = np.asarray(sample_images(name, model, key_samples)).tolist()
                    rec = {"setting": setting, "row": row, "samples": shown}
                    with records.open("a") as f:
                        f.write(json.dumps(rec) + "\n")
                    del model
                    jax.clear_caches()  # bound the number of live XLA programs
                else:
                    row = rec["row"]
                rows.append(row)
                if rec["samples"] is not None and name != "PartitionAEF-corner":
                    samples[name if name == "MAF" else f"{name} d={d_show}"] = rec["samples"]
                print(f"{name:20s} d={d_row:2d} seed={seed} bpd={row['bpd']:.4f} "
                      f"epochs={row['epochs']} {row['time_per_epoch_s']:.2f}s/epoch"
                      + (" (record)" if (name, d_row, seed) in done else ""), flush=True)
    total = time.perf_counter() - t_start

    table = summarise(rows, MODELS + ("MAF",), ds)
    print(f"\nTest bits/dim (mean ± sd over {len(seeds)} seed(s)); lower is better. "
          f"Total {total:.0f}s.")
    print(f"{'model':22s}" + "".join(f"{'d=' + str(d):>18s}" for d in ds) + f"{'s/epoch':>10s}")
    for name in MODELS:
        cells = "".join(f"{table[(name, d)][0]:>11.3f} ± {table[(name, d)][1]:.3f}" for d in ds)
        t = np.mean([table[(name, d)][2] for d in ds])
        print(f"{name:22s}{cells}{t:>10.2f}")
    m, s, t = table[("MAF", None)]
    print(f"{'MAF (5 layers)':22s}{m:>11.3f} ± {s:.3f} (no latent){t:>10.2f}")
    wins = {d: table[("PartitionAEF-center", d)][0] < table[("VAE", d)][0] for d in ds}
    wins_c = {d: table[("PartitionAEF-corner", d)][0] < table[("VAE", d)][0] for d in ds}
    print(f"PartitionAEF-center better than VAE at every d: {all(wins.values())} {wins}")
    print(f"PartitionAEF-corner better than VAE at every d: {all(wins_c.values())} {wins_c}")

    samples = {k: np.clip(np.asarray(v), 0, 1) for k, v in samples.items()}
    # The full run writes the documentation figures; --quick keeps its figures with the results.
    fig_dir = ROOT / "benchmarks" / "results" if args.quick else ROOT / "docs" / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    plot(table, ds, samples, fig_dir / f"aef_bpd_vs_latent{suffix}.png",
         fig_dir / f"aef_samples{suffix}.png")

    out = {
        "benchmark": "aef_digits",
        "quick": args.quick,
        "latent_flows": "core flow g: MAF 2 layers, prior flow h: MAF 4 layers (width 64); "
                        "VAE: the same h" if args.flows else None,
        "settings": {"ds": ds, "seeds": seeds, **{k: v for k, v in fit_kw.items()},
                     "levels": LEVELS, "alpha": 0.05, "num_samples": 128},
        "bpd_definition": "(-log p_[0,1](x) + 64 ln 17) / (64 ln 2), dequantised test set",
        "rows": rows,
        "summary": [
            {"model": n, "d": d, "bpd_mean": m, "bpd_sd": s, "time_per_epoch_s": t}
            for (n, d), (m, s, t) in table.items()
        ],
        "partition_center_beats_vae_every_d": bool(all(wins.values())),
        "partition_corner_beats_vae_every_d": bool(all(wins_c.values())),
        "total_time_s": total,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
                   "(shared with other sessions: timings under load)",
        "jax": jax.__version__,
    }
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    path = res_dir / f"aef_digits{suffix}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

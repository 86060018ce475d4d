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
    python benchmarks/aef_digits.py --npz PATH [--npz-key x_train] [--levels 256] [--train N]
        [--test N] [--ds 2 8] [--seeds 0] [--models PartitionAEF-center VAE]

``--flows`` adds a core flow g and a prior flow h to the AEFs and the same prior flow to the VAE
(results and figures get a ``_flows`` suffix). ``--npz`` runs the same comparison on a local image
array instead of digits (``aef.load_npz_images``: e.g. MNIST or Fashion-MNIST saved as ``.npz``;
nothing downloads), on at most ``--train`` training and ``--test`` test images of its 80/20 split;
results, records and figures get the file's stem as a suffix.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import NamedTuple

import jax

jax.config.update("jax_compilation_cache_dir", "/tmp/bayesflow_nets_jax_cache")
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import bayesflow_nets.bijectors as bj  # noqa: E402
from bayesflow_nets import aef  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("PartitionAEF-center", "PartitionAEF-corner", "ExpansionAEF", "VAE")


class Setup(NamedTuple):
    """The data set's name, image shape (C, H, W) and number of grey levels."""

    name: str
    shape: tuple[int, int, int]
    levels: int

    @property
    def dim(self) -> int:
        return int(np.prod(self.shape))


DIGITS = Setup("sklearn digits 8×8", (1, 8, 8), 17)


def latent_flows(key, d):
    """Core flow g (2 MAF layers) and prior flow h (4 MAF layers) on R^d, width 64."""
    kg, kh = jax.random.split(key)
    base = bj.StandardNormal((d,))
    g = bj.masked_autoregressive_flow(kg, base_dist=base, flow_layers=2, nn_width=64)
    h = bj.masked_autoregressive_flow(kh, base_dist=base, flow_layers=4, nn_width=64)
    return g, h


def build(name, key, d, shape, flows=False):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    enc = aef.ConvEncoder(k1, shape, d)
    dec = aef.ConvDecoder(k2, shape, d)
    g, h = latent_flows(k4, d) if flows else (None, None)
    if name.startswith("PartitionAEF"):
        return aef.PartitionAEF(
            enc, dec, shape, d, mask=name.split("-")[1], core_flow=g, prior_flow=h
        )
    if name == "ExpansionAEF":
        return aef.ExpansionAEF(enc, dec, shape, d, key=k3, core_flow=g, prior_flow=h)
    return aef.VAE(enc, dec, shape, d, prior_flow=h)  # the same prior flow; no core to map


def build_maf(key, x_init, dim):
    pre = bj.init_actnorm(bj.logit_preprocessing((dim,)), x_init)
    maf = bj.masked_autoregressive_flow(
        key, base_dist=bj.StandardNormal((dim,)), flow_layers=5, nn_width=128
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


def run_one(name, d, seed, data, x_test, x_select, fit_kw, setup=DIGITS, flows=False):
    dim, levels = setup.dim, setup.levels
    init_key = jax.random.key(1000 * seed + d)
    fit_key = jax.random.key(7)  # fixed split / minibatch order across seeds
    t0 = time.perf_counter()
    if name == "MAF":
        x_init = aef.dequantise(jax.random.key(3), data.reshape(len(data), dim)[:1000], levels)
        model = build_maf(init_key, x_init, dim)
        res = aef.fit_dequantised(
            fit_key, model, data.reshape(len(data), dim), levels, init_actnorm=False, **fit_kw
        )
        xt, xs = x_test.reshape(-1, dim), x_select.reshape(-1, dim)
    else:
        model = build(name, init_key, d, setup.shape, flows)
        res = aef.fit_dequantised(fit_key, model, data, levels, **fit_kw)
        xt, xs = x_test, x_select
    fit_time = time.perf_counter() - t0
    epochs = len(res.losses["val"])
    lp, scale = test_log_prob(name, res.model, xt, xs, jax.random.key(11))
    bpd = float(jnp.mean(aef.bits_per_dim(lp, dim, levels)))
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


def sample_images(name, model, key, shape):
    """16 samples: temperature 0.8 with the decoder mean for the autoencoders, 1 for the MAF."""
    if name == "MAF":
        return model.sample(key, (16,)).reshape((16,) + tuple(shape))
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


def plot(table, ds, samples, path_curve, path_samples, setup=DIGITS, models=MODELS):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in [n for n in models if n != "MAF"]:
        m = [table[(name, d)][0] for d in ds]
        s = [table[(name, d)][1] for d in ds]
        ax.errorbar(ds, m, yerr=s, marker="o", capsize=3, label=name)
    if ("MAF", None) in table:
        ax.axhline(table[("MAF", None)][0], color="k", ls="--", label="MAF (no latent)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ds, [str(d) for d in ds])
    ax.set_xlabel("latent size d")
    ax.set_ylabel("test bits/dim (lower is better)")
    ax.set_title(f"{setup.name}, {setup.levels} levels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_curve, dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(samples), figsize=(2.6 * len(samples), 2.8))
    for ax, (title, imgs) in zip(np.atleast_1d(axes), samples.items()):
        n = int(np.sqrt(len(imgs)))
        tiles = np.pad(np.asarray(imgs[: n * n, 0]), ((0, 0), (1, 1), (1, 1)))
        th, tw = tiles.shape[1:]
        grid = tiles.reshape(n, n, th, tw).transpose(0, 2, 1, 3)
        ax.imshow(grid.reshape(n * th, n * tw), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path_samples, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, d ∈ {2, 8}, 4 epochs")
    parser.add_argument("--epochs", type=int, default=150, help="max epochs per model (early stopping ends every digits run before 150)")
    parser.add_argument("--patience", type=int, default=4, help="early-stopping patience")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the records of earlier runs with the same settings")
    parser.add_argument("--flows", action="store_true",
                        help="give the AEFs a core flow g (2 MAF layers) and a prior flow h "
                             "(4 MAF layers), and the VAE the same prior flow h")
    parser.add_argument("--npz", help="a local .npz image array to use instead of digits")
    parser.add_argument("--npz-key", default=None, help="the array in --npz (default: the first)")
    parser.add_argument("--levels", type=int, default=256, help="grey levels of the --npz images")
    parser.add_argument("--train", type=int, default=None,
                        help="use at most this many training images (--npz)")
    parser.add_argument("--test", type=int, default=None,
                        help="use at most this many test images (--npz)")
    parser.add_argument("--ds", type=int, nargs="+", default=None, help="latent sizes")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds")
    parser.add_argument("--models", nargs="+", default=None, choices=MODELS + ("MAF",),
                        help="models to train (default: all, with the MAF)")
    args = parser.parse_args()
    if args.quick:
        ds, seeds, max_epochs = [2, 8], [0], 4
    else:
        ds, seeds, max_epochs = [2, 4, 8, 16], [0, 1, 2], args.epochs
    ds, seeds = args.ds or ds, args.seeds or seeds
    names = tuple(args.models) if args.models else MODELS + ("MAF",)
    fit_kw = dict(
        max_epochs=max_epochs,
        max_patience=args.patience,
        batch_size=64,
        learning_rate=2e-3,
        progress=False,
    )
    setting = {"max_epochs": max_epochs, "patience": args.patience, "flows": args.flows}
    if args.npz:
        data = aef.load_npz_images(args.npz, args.npz_key, levels=args.levels, test_prop=0.2)
        stem = Path(args.npz).stem
        setup = Setup(f"{stem} {data.train.shape[-2]}×{data.train.shape[-1]}",
                      tuple(data.train.shape[1:]), args.levels)
        pool = data.train[: (args.train + 150) if args.train else None]
        test_int = data.test[: args.test]
        setting.update(data=stem, train=args.train, test=args.test)
    else:
        data, setup, stem = aef.load_digits(test_prop=0.2, seed=0), DIGITS, None
        pool, test_int = data.train, data.test
    train, select = pool[:-150], pool[-150:]  # held-out images pick the IS scale
    x_test = aef.dequantise(jax.random.key(123), test_int, setup.levels)
    x_select = aef.dequantise(jax.random.key(124), select, setup.levels)
    print(f"{setup.name}: train {len(train)} (10% of it for early stopping), scale-selection "
          f"{len(select)}, test {len(x_test)}; epochs ≤ {max_epochs}, batch 64; seeds {seeds}; "
          f"d {ds}; models {names}")

    suffix = (f"_{stem}" if stem else "") + ("_flows" if args.flows else "") + (
        "_quick" if args.quick else "")
    # Every finished run is appended to a records file, so a run that dies (e.g. LLVM running
    # out of memory after hundreds of compiled programs) resumes where it stopped.
    records = ROOT / "benchmarks" / "results" / f"aef_digits{suffix}_runs.jsonl"
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
            for name in names:
                if name == "MAF" and d != ds[-1]:
                    continue  # no latent: once per seed
                d_row = 0 if name == "MAF" else d
                rec = done.get((name, d_row, seed))
                if rec is None:
                    model, row = run_one(name, d_row, seed, train, x_test, x_select, fit_kw,
                                         setup, args.flows and name != "MAF")
                    shown = None
                    if seed == seeds[0] and (d == d_show or name == "MAF"):
                        shown = np.asarray(
                            sample_images(name, model, key_samples, setup.shape)).tolist()
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

    table = summarise(rows, names, ds)
    latent = [n for n in names if n != "MAF"]
    print(f"\nTest bits/dim (mean ± sd over {len(seeds)} seed(s)); lower is better. "
          f"Total {total:.0f}s.")
    print(f"{'model':22s}" + "".join(f"{'d=' + str(d):>18s}" for d in ds) + f"{'s/epoch':>10s}")
    for name in latent:
        cells = "".join(f"{table[(name, d)][0]:>11.3f} ± {table[(name, d)][1]:.3f}" for d in ds)
        t = np.mean([table[(name, d)][2] for d in ds])
        print(f"{name:22s}{cells}{t:>10.2f}")
    if ("MAF", None) in table:
        m, s, t = table[("MAF", None)]
        print(f"{'MAF (5 layers)':22s}{m:>11.3f} ± {s:.3f} (no latent){t:>10.2f}")
    verdict = {}
    for mask in ("center", "corner"):
        name = f"PartitionAEF-{mask}"
        if name in names and "VAE" in names:
            wins = {d: bool(table[(name, d)][0] < table[("VAE", d)][0]) for d in ds}
            verdict[f"partition_{mask}_beats_vae_every_d"] = all(wins.values())
            print(f"{name} better than VAE at every d: {all(wins.values())} {wins}")

    samples = {k: np.clip(np.asarray(v), 0, 1) for k, v in samples.items()}
    # The full run writes the documentation figures; --quick keeps its figures with the results.
    fig_dir = ROOT / "benchmarks" / "results" if args.quick else ROOT / "docs" / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    plot(table, ds, samples, fig_dir / f"aef_bpd_vs_latent{suffix}.png",
         fig_dir / f"aef_samples{suffix}.png", setup, names)

    out = {
        "benchmark": "aef_digits",
        "data": setup.name,
        "quick": args.quick,
        "latent_flows": "core flow g: MAF 2 layers, prior flow h: MAF 4 layers (width 64); "
                        "VAE: the same h" if args.flows else None,
        "settings": {"ds": ds, "seeds": seeds, "models": list(names),
                     **{k: v for k, v in fit_kw.items()}, "levels": setup.levels,
                     "alpha": 0.05, "num_samples": 128, "n_train": len(train),
                     "n_test": len(x_test)},
        "bpd_definition": f"(-log p_[0,1](x) + {setup.dim} ln {setup.levels}) / "
                          f"({setup.dim} ln 2), dequantised test set",
        "rows": rows,
        "summary": [
            {"model": n, "d": d, "bpd_mean": m, "bpd_sd": s, "time_per_epoch_s": t}
            for (n, d), (m, s, t) in table.items()
        ],
        **verdict,
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

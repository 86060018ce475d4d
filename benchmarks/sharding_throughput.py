"""Data-parallel training throughput: fit_to_data(mesh=n) vs one device, n = 1, 2, 4 host devices.

MAF (5 layers, MADE hidden 2×128, affine), D = 64, batch 1024, float32, Adam. Each device count
runs in its own subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=n`` (JAX reads
it once, at start-up). In that process the anchor is ``fit_to_data(mesh=None)`` (the plain
single-device loop) and the row is ``fit_to_data(mesh=n)``, same keys, same data. Throughput is
training samples per second in steady state: after a warm-up fit that fills a private persistent
compilation cache (so later fits load the compiled epoch instead of recompiling), two fits of
E_short and E_long epochs are timed and the difference (which cancels tracing and start-up) is
divided into (E_long − E_short) × batches × 1024 samples; each epoch also evaluates the validation split (10 %, forward only). Host "devices"
share the machine's cores, so scaling is bounded by the core count, not by the device count.
Writes benchmarks/results/sharding_throughput.json (``--quick``: sharding_throughput_quick.json).

    python benchmarks/sharding_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

D, BATCH, LAYERS, WIDTH, DEPTH = 64, 1024, 5, 128, 2


def worker(n_devices: int, n_batches: int, e_short: int, e_long: int) -> dict:
    """Runs inside the subprocess: time the anchor (mesh=None) and mesh=n_devices."""
    import tempfile

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="bfn_shard_bench_"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    import bayesflow_nets.bijectors as bj
    from bayesflow_nets.infer import fit_to_data

    assert jax.device_count() == n_devices, jax.devices()
    key = jax.random.key(0)
    n_train = n_batches * BATCH
    n = int(round(n_train / 0.9))
    a = jax.random.normal(jax.random.key(1), (D, D)) / jnp.sqrt(D)
    x = jax.random.normal(key, (n, D)) @ a.T + jnp.linspace(-1.0, 1.0, D)
    flow = bj.masked_autoregressive_flow(
        jax.random.key(2),
        base_dist=bj.StandardNormal((D,)),
        flow_layers=LAYERS,
        nn_width=WIDTH,
        nn_depth=DEPTH,
    )

    def timed(mesh, epochs):
        t0 = time.perf_counter()
        res = fit_to_data(
            jax.random.key(3),
            flow,
            x,
            learning_rate=1e-4,
            max_epochs=epochs,
            max_patience=10**6,
            batch_size=BATCH,
            val_prop=0.1,
            progress=False,
            mesh=mesh,
        )
        elapsed = time.perf_counter() - t0
        assert len(res.losses["train"]) == epochs, res.message
        return elapsed, res.losses["train"]

    out = {"devices": n_devices, "batches_per_epoch": n_train // BATCH}
    for label, mesh in (("anchor", None), ("mesh", n_devices)):
        timed(mesh, e_short)  # compile once, fill the cache
        t_short, _ = timed(mesh, e_short)
        t_long, losses = timed(mesh, e_long)
        samples = (e_long - e_short) * (n_train // BATCH) * BATCH
        out[f"{label}_samples_per_s"] = samples / (t_long - t_short)
        out[f"{label}_final_train_loss"] = float(losses[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (fewer batches/epochs)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    n_batches, e_short, e_long = (8, 1, 4) if args.quick else (16, 1, 7)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, n_batches, e_short, e_long)))
        return

    rows = []
    for n in (1, 2, 4):
        env = dict(os.environ)
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
        env["JAX_PLATFORMS"] = "cpu"
        cmd = [sys.executable, __file__, "--worker", str(n)] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"worker for {n} devices failed:\n{proc.stderr[-4000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    base = rows[0]["mesh_samples_per_s"]
    print(
        f"MAF D={D}, {LAYERS} layers, MADE {DEPTH}x{WIDTH}, batch {BATCH}, float32 (CPU host devices)"
    )
    print(
        f"{'devices':>7} | {'anchor (mesh=None)':>18} | {'mesh=n':>10} | {'mesh/anchor':>11} | "
        f"{'vs 1 dev':>8} | {'|Δ final loss|':>14}"
    )
    for r in rows:
        r["mesh_over_anchor"] = r["mesh_samples_per_s"] / r["anchor_samples_per_s"]
        r["speedup_vs_1_device"] = r["mesh_samples_per_s"] / base
        print(
            f"{r['devices']:>7} | {r['anchor_samples_per_s']:>14.0f} /s | "
            f"{r['mesh_samples_per_s']:>8.0f}/s | {r['mesh_over_anchor']:>11.2f} | "
            f"{r['speedup_vs_1_device']:>8.2f} | "
            f"{abs(r['mesh_final_train_loss'] - r['anchor_final_train_loss']):>14.2e}"
        )
    result = {
        "benchmark": "sharding_throughput",
        "quick": args.quick,
        "config": {
            "dim": D,
            "batch_size": BATCH,
            "flow_layers": LAYERS,
            "nn_width": WIDTH,
            "nn_depth": DEPTH,
            "epochs_timed": e_long - e_short,
            "batches_per_epoch": n_batches,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_after": os.getloadavg(),
        },
        "rows": rows,
    }
    name = "sharding_throughput_quick.json" if args.quick else "sharding_throughput.json"
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

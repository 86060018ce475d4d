"""How fast can the RQS coupling flow's splines run on this CPU? Ours (XLA) vs a compiled C loop.

The issue-2 target asks the RQS coupling flow for ≥ 80 % of the matmul limit in its parallel
passes: with its matmuls at the limit, everything else (the 5 layers' splines above all) must fit
in 0.25 × the matmul time. This script times, on the shapes of ``benchmarks/bijectors.py``
(5 layers × 4096 × 32 splines, 8 bins, float32) and round-robin in one process:

* the matmul-limit program of that benchmark (the conditioner's matmuls, no splines);
* our splines alone (:func:`bayesflow_nets.bijectors._rqs.rqs_blocked`, jitted, on stored parameters);
* the same spline written as one C loop (``native/rqs_spline.c``, built here with ``cc -O3
  -march=native -fopenmp``, with and without ``-ffast-math``: gcc vectorises ``expf`` only with
  it), run on both cores;
* the same loop written by hand with AVX-512 intrinsics (``native/rqs_spline_avx512.c`` over the
  package's ``_kernels/rqs_avx512.h``: its own exp and log, masked blends), where the CPU has
  AVX-512F.

Each C build is checked against ours first (the differences are float32 rounding: both are as far
from a float64 evaluation). The script prints each spline time beside the budget, with the best fraction of the limit a flow could
reach if its matmuls ran at the limit and nothing else cost time. Where the package's native
kernel is ready (``bayesflow_nets/bijectors/_native.py``: the AVX-512 loop as an XLA FFI handler
that also adds the conditioners' head bias), it then times the coupling flow of
``benchmarks/bijectors.py`` on the XLA path and with that kernel. Writes
benchmarks/results/rqs_native_floor.json. Needs a C compiler with OpenMP (``cc``, or ``$CC``).

    python benchmarks/rqs_native_floor.py [--repeats N]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from bijectors import KNOTS, LAYERS, D, _perturb, flow_fns, matmul_limit_fns, ours_rqs, timeit_group

from bayesflow_nets.bijectors import _native
from bayesflow_nets.bijectors._rqs import rqs_blocked

BATCH, LO, HI = 4096, -4.0, 4.0
N = BATCH * (D // 2)  # splines per layer (a multiple of 16, as the AVX-512 loop needs)
P = 3 * KNOTS - 1
NATIVE = Path(__file__).parent / "native"
# name: (source, extra flags); the intrinsics build only where the CPU has AVX-512F
BUILDS = {
    "C, -ffast-math": ("rqs_spline.c", ["-ffast-math"]),
    "C, IEEE (-fno-math-errno)": ("rqs_spline.c", ["-fno-math-errno"]),
    "C, AVX-512 by hand": ("rqs_spline_avx512.c", []),
}


def build(source, flags, workdir):
    """Compile ``native/<source>`` with ``flags`` into a shared library; return its function."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("rqs_native_floor: no C compiler found (set $CC); nothing measured.")
    out = Path(workdir) / f"rqs_{abs(hash((source, *flags)))}.so"
    cmd = [cc, "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", *flags, str(NATIVE / source),
           "-o", str(out), "-lm"]
    subprocess.run(cmd, check=True)
    fn = ctypes.CDLL(str(out)).rqs_spline_f32
    ptr = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
    fn.argtypes = [ctypes.c_int, ptr, ptr, ctypes.c_float, ctypes.c_float, ctypes.c_int, ptr, ptr]
    fn.restype = None
    return fn, " ".join(cmd)


def c_layers(fn, xs, params, inverse):
    """The 5 layers' splines with the C loop (outputs into preallocated buffers)."""
    y, ld = np.empty(N, np.float32), np.empty(N, np.float32)

    def run():
        acc = 0.0
        for i in range(LAYERS):
            fn(N, xs[i], params[i], LO, HI, int(inverse), y, ld)
            acc += float(y[0]) + float(ld[0])
        return acc

    return run, (y, ld)


def jax_layers(inverse):
    @jax.jit
    def run(xs, params):
        outs = [rqs_blocked(xs[i], params[i], KNOTS, LO, HI, inverse) for i in range(LAYERS)]
        return jnp.stack([o[0] for o in outs]), jnp.stack([o[1] for o in outs])

    return run


@contextlib.contextmanager
def xla_path():
    """Trace the coupling layers' splines on the XLA path (as ``BAYESFLOW_NETS_NATIVE=0``)."""
    usable, _native.usable = _native.usable, lambda *args: False
    try:
        yield
    finally:
        _native.usable = usable


def flow_rows(repeats, limit):
    """The RQS coupling flow of benchmarks/bijectors.py, density and sampling passes, on the XLA
    path and with the package's native kernel (the default where it is ready)."""
    key = jax.random.key(0)
    flow = _perturb(ours_rqs(key), key)
    x = jax.random.normal(jax.random.key(1), (BATCH, D))
    cases, outs = {"matmul limit": (limit, ())}, {}
    for name, context in (("XLA path", xla_path), ("native kernel", contextlib.nullcontext)):
        bij, dens, samp, _ = flow_fns(flow)  # fresh compiled functions for each variant
        for direction, fn in (("density", dens), ("sampling", samp)):
            with context():  # traced and compiled here
                outs[f"{name}, {direction}"] = jax.block_until_ready(fn(bij, x))
            cases[f"{name}, {direction}"] = (fn, (bij, x))
    times = timeit_group(cases, repeats)
    t_lim = times.pop("matmul limit")
    rows = []
    for name, t in times.items():
        ref = outs[f"XLA path, {name.rsplit(', ', 1)[-1]}"]
        diff = max(float(jnp.max(jnp.abs(a - r))) for a, r in zip(outs[name], ref))
        rows.append({"flow": name, "seconds": t, "matmul_limit_seconds": t_lim,
                     "fraction_of_limit": t_lim / t, "max_abs_diff_vs_xla_path": diff})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "rqs_native_floor.json"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    # idle OpenMP threads sleep rather than spin, so they do not slow the XLA programs beside them
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")

    rng = np.random.default_rng(0)
    # conditioner outputs of a trained-looking flow: O(1) logits; inputs mostly inside (lo, hi)
    params = rng.normal(0.0, 1.5, (LAYERS, P, N)).astype(np.float32)
    xs = rng.normal(0.0, 1.5, (LAYERS, N)).astype(np.float32)
    params_j, xs_j = jnp.asarray(params), jnp.asarray(xs)
    (lim_fn, lim_args), _ = matmul_limit_fns(BATCH, D // 2, (D // 2) * P)

    # two groups, each timed round-robin with the limit program: timed among XLA's programs
    # (its thread pool still busy), the C loop ran at 10-11 ms instead of 7.5 (session 16)
    limit = {"matmul limit": lambda: lim_fn(*lim_args)}
    xla_cases, c_cases, check, commands = dict(limit), dict(limit), {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        libs = {name: build(src, flags, tmp) for name, (src, flags) in BUILDS.items()
                if "AVX-512" not in name or _native.cpu_has_avx512f()}
        for direction, inverse in (("inverse", True), ("forward", False)):
            ours = jax_layers(inverse)
            ref_y, ref_ld = (np.asarray(a) for a in ours(xs_j, params_j))
            xla_cases[f"ours (XLA), {direction}"] = lambda f=ours: f(xs_j, params_j)
            for name, (fn, cmd) in libs.items():
                run, (y, ld) = c_layers(fn, xs, params, inverse)
                # the C loop computes the same function: compare every layer with ours
                dy, dld = [], []
                for i in range(LAYERS):
                    fn(N, xs[i], params[i], LO, HI, int(inverse), y, ld)
                    dy.append(np.abs(y - ref_y[i]))
                    dld.append(np.abs(ld - ref_ld[i]))
                # float32 rounding differs near narrow bins: the 99.9 % quantile shows the bulk
                check[f"{name}, {direction}"] = {
                    "max_abs_err_y": float(np.max(dy)), "max_abs_err_logdet": float(np.max(dld)),
                    "q999_abs_err_y": float(np.quantile(dy, 0.999)),
                    "q999_abs_err_logdet": float(np.quantile(dld, 0.999)),
                }
                c_cases[f"{name}, {direction}"] = run
                commands[name] = cmd
        groups = [timeit_group({n: (f, ()) for n, f in cases.items()}, args.repeats)
                  for cases in (xla_cases, c_cases)]
        flow = []
        if _native.status() is None:
            flow = flow_rows(args.repeats, limit["matmul limit"])
        else:
            print(f"native kernel not ready ({_native.status()}): no flow rows")

    print(f"5 layers × {BATCH} × {D // 2} splines, {KNOTS} bins, float32; median of "
          f"{args.repeats}, round-robin with the matmul-limit program (no splines); the 80 % "
          f"target leaves 0.25 × its time for everything else")
    print(f"{'splines':<34}{'ms':>8}{'limit ms':>10}{'÷ budget':>10}{'best % limit':>14}"
          f"{'max |Δy|':>11}{'max |Δld|':>11}{'99.9% |Δld|':>13}")
    rows = []
    for times in groups:
        t_lim = times.pop("matmul limit")
        for name, t in times.items():
            budget = 0.25 * t_lim  # total ≤ t_lim / 0.8
            best = t_lim / (t_lim + t)  # matmuls at the limit, nothing else but these splines
            err = check.get(name, {})
            errs = "".join(f"{err[k]:>{w}.1e}" if k in err else f"{'-':>{w}}" for k, w in (
                ("max_abs_err_y", 11), ("max_abs_err_logdet", 11), ("q999_abs_err_logdet", 13)))
            print(f"{name:<34}{1e3 * t:>8.2f}{1e3 * t_lim:>10.2f}{t / budget:>10.2f}"
                  f"{100 * best:>13.0f}%{errs}")
            rows.append({"splines": name, "seconds": t, "matmul_limit_seconds": t_lim,
                         "over_budget": t / budget, "best_fraction_of_limit": best, **err})
    if flow:
        print("\nthe RQS coupling flow of benchmarks/bijectors.py (5 layers, batch 4096) on the XLA "
              "path and with the native kernel; % of the matmul limit as in that benchmark")
        print(f"{'flow pass':<28}{'ms':>8}{'limit ms':>10}{'% limit':>9}{'max |Δ| vs XLA':>16}")
        for r in flow:
            print(f"{r['flow']:<28}{1e3 * r['seconds']:>8.2f}{1e3 * r['matmul_limit_seconds']:>10.2f}"
                  f"{100 * r['fraction_of_limit']:>8.0f}%{r['max_abs_diff_vs_xla_path']:>16.1e}")
    result = {
        "config": {"batch": BATCH, "dim": D, "layers": LAYERS, "knots": KNOTS,
                   "repeats": args.repeats, "omp_threads": os.environ["OMP_NUM_THREADS"],
                   "cpus": os.cpu_count(), "jax": jax.__version__},
        "builds": commands,
        "rows": rows,
        "flow_rows": flow,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

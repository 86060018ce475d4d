"""Bijector throughput: bayesflow_nets vs FlowJAX vs NumPyro, same architecture, one process.

MAF (5 layers, MADE hidden 2×128, affine) and RQS coupling flow (5 layers, 8 bins, hidden 2×128),
D = 64, batch 4096, float32. Rows: the parallel and sequential passes with log-det, and one
training step (mean log_prob + gradient). Reports median wall time after compilation, ratios to
the faster anchor, achieved GFLOP/s (matmul FLOPs only, of the work each implementation does:
our sequential pass does 2.4× fewer than the anchors', see ``MaskedAutoregressive``) and the
measured matmul GFLOP/s of the same shapes on this machine (the physical limit). Writes
benchmarks/results/bijectors.json.

    python benchmarks/bijectors.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from functools import partial
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import bayesflow_nets.bijectors as bj

D, WIDTH, DEPTH, LAYERS, KNOTS = 64, 128, 2, 5, 8


def timeit(fn, *args, repeats=20):
    return timeit_group({"_": (fn, args)}, repeats)["_"]


def timeit_group(cases, repeats=20):
    """Median wall time of each ``name: (fn, args)``, compiled first, then timed round-robin.

    Interleaving the repeats (in a rotating order) exposes every candidate to the same bursts of
    load from other processes, so the ratios between them stay meaningful on a shared machine.
    """
    for fn, args in cases.values():
        jax.block_until_ready(fn(*args))
    names = list(cases)
    times = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[: r % len(names)]:
            fn, args = cases[n]
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[n].append(time.perf_counter() - t0)
    return {n: float(np.median(v)) for n, v in times.items()}


def mlp_flops(batch, n_in, n_out, width=WIDTH, depth=DEPTH):
    sizes = [n_in] + [width] * depth + [n_out]
    return 2.0 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def matmul_limit_fns(batch, n_in, n_out):
    """A bare chain of matmuls (+relu) with the conditioner's shapes over LAYERS layers: its
    forward and gradient programs and their arguments (timed beside ours: the physical limit).

    As in a flow, each layer's input is the previous layer's output (its first ``n_in``
    columns), so the gradient program does the same matmuls as a flow's training step: weight
    gradients everywhere and input gradients for every layer but the first. (Until session 11
    every layer read the same input, so its gradient skipped the input-gradient matmuls: for MAF
    7 % fewer FLOPs than counted, which overstated the train-step limit.)"""
    key = jax.random.key(0)
    sizes = [n_in] + [WIDTH] * DEPTH + [n_out]
    ws = [
        [jax.random.normal(jax.random.fold_in(key, 10 * li + i), (a, b)) / np.sqrt(a)
         for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
        for li in range(LAYERS)
    ]
    x = jax.random.normal(key, (batch, n_in))

    @jax.jit
    def fwd(ws, x):
        acc = jnp.zeros(())
        for layer in ws:
            h = x
            for i, w in enumerate(layer):
                h = h @ w
                if i < len(layer) - 1:
                    h = jax.nn.relu(h)
            acc = acc + h.sum()
            x = h[:, :n_in]
        return acc

    return (fwd, (ws, x)), (jax.jit(jax.grad(fwd)), (ws, x))


# ---------------------------------------------------------------- ours
def ours_maf(key):
    return bj.masked_autoregressive_flow(
        key, base_dist=bj.StandardNormal((D,)), flow_layers=LAYERS, nn_width=WIDTH, nn_depth=DEPTH
    )


def ours_rqs(key):
    return bj.coupling_flow(
        key, base_dist=bj.StandardNormal((D,)), flow_layers=LAYERS, nn_width=WIDTH,
        nn_depth=DEPTH, knots=KNOTS, interval=4.0,
    )


def _perturb(module, key, scale=0.02):
    leaves, tdef = jax.tree_util.tree_flatten(module)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tdef,
        [leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype) if eqx.is_inexact_array(leaf)
         else leaf for leaf, k in zip(leaves, keys)],
    )


def flow_fns(flow, density_is_inverse=True):
    """(parallel/density pass, sampling pass, train step) for a flow with our/FlowJAX API."""
    bij = flow.bijector if hasattr(flow, "bijector") else flow.bijection

    @eqx.filter_jit
    def density_pass(b, x):
        return eqx.filter_vmap(b.inverse_and_log_det)(x)

    @eqx.filter_jit
    def sample_pass(b, z):
        return eqx.filter_vmap(b.transform_and_log_det)(z)

    @eqx.filter_jit
    def train_step(f, x):
        params, static = eqx.partition(f, eqx.is_inexact_array)

        def loss(p):
            return -jnp.mean(eqx.combine(p, static).log_prob(x))

        return jax.value_and_grad(loss)(params)

    return bij, density_pass, sample_pass, train_step


# ---------------------------------------------------------------- NumPyro IAF stack
def numpyro_iaf(key):
    from numpyro.distributions.flows import InverseAutoregressiveTransform
    from numpyro.distributions.transforms import PermuteTransform
    from numpyro.nn import AutoregressiveNN

    params, applies, perms = [], [], []
    for _ in range(LAYERS):
        k1, k2, key = jax.random.split(key, 3)
        init_fn, apply_fn = AutoregressiveNN(D, [WIDTH] * DEPTH, param_dims=[1, 1])
        _, p = init_fn(k1, (D,))
        params.append(p)
        applies.append(apply_fn)
        perms.append(np.asarray(jax.random.permutation(k2, D)))

    def build(params):
        ts = []
        for p, a, perm in zip(params, applies, perms):
            ts.append(InverseAutoregressiveTransform(partial(a, p)))
            ts.append(PermuteTransform(perm))
        return ts

    @jax.jit
    def forward(params, x):
        total = jnp.zeros(x.shape[:-1])
        for t in build(params):
            y, inter = t.call_with_intermediates(x)
            total = total + t.log_abs_det_jacobian(x, y, inter)
            x = y
        return x, total

    @jax.jit
    def inverse(params, y):
        total = jnp.zeros(y.shape[:-1])
        for t in reversed(build(params)):
            x = t._inverse(y)
            total = total - t.log_abs_det_jacobian(x, y)
            y = x
        return y, total

    @jax.jit
    def train_step(params, x):
        def loss(p):
            z, ld = forward(p, x)
            base = -0.5 * jnp.sum(z**2, -1) - 0.5 * D * np.log(2 * np.pi)
            return -jnp.mean(base + ld)

        return jax.value_and_grad(loss)(params)

    return params, forward, inverse, train_step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 512, 5 repeats")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=None, help="JSON path (default results/bijectors[_quick].json)")
    args = parser.parse_args()
    if args.out is None:
        name = "bijectors_quick.json" if args.quick else "bijectors.json"
        args.out = str(Path(__file__).parent / "results" / name)
    batch = 512 if args.quick else 4096
    repeats = 5 if args.quick else args.repeats

    import flowjax.distributions as fdist
    import flowjax.flows as fflows
    from flowjax.bijections import RationalQuadraticSpline as FRQS

    key = jax.random.key(0)
    x = jax.random.normal(jax.random.key(1), (batch, D))
    rows = []

    n_c = D // 2
    lim_maf_f, lim_maf_g = matmul_limit_fns(batch, D, 2 * D)
    lim_rqs_f, lim_rqs_g = matmul_limit_fns(batch, n_c, (D - n_c) * (3 * KNOTS - 1))
    flops_maf = LAYERS * mlp_flops(batch, D, 2 * D)
    flops_rqs = LAYERS * mlp_flops(batch, n_c, (D - n_c) * (3 * KNOTS - 1))
    # our sequential pass solves one coordinate per pass: a rank-1 update of the first layer,
    # the hidden-to-hidden layers, and the 2 output rows of that coordinate (FlowJAX and
    # NumPyro re-run the whole network: D * flops_maf)
    flops_maf_seq = LAYERS * D * 2.0 * batch * (WIDTH + (DEPTH - 1) * WIDTH**2 + 2 * WIDTH)

    # MAF
    ours = _perturb(ours_maf(key), key)
    fj = _perturb(
        fflows.masked_autoregressive_flow(
            key, base_dist=fdist.Normal(jnp.zeros(D)), flow_layers=LAYERS, nn_width=WIDTH,
            nn_depth=DEPTH,
        ),
        key,
    )
    b_o, dens_o, samp_o, step_o = flow_fns(ours)
    b_f, dens_f, samp_f, step_f = flow_fns(fj)
    np_params, np_fwd, np_inv, np_step = numpyro_iaf(key)
    z = x * 0.5
    t, lim = {}, {}

    def group(row, cases, limit=None, reps=repeats):
        if limit is not None:
            cases = {**cases, "limit": limit}
        out = timeit_group(cases, reps)
        if limit is not None:
            lim[row] = out.pop("limit")
        t.update({(row, name): v for name, v in out.items()})

    group("MAF parallel pass + log-det", {
        "ours": (dens_o, (b_o, x)), "flowjax": (dens_f, (b_f, x)), "numpyro": (np_fwd, (np_params, x)),
    }, lim_maf_f)
    group("MAF sequential pass + log-det", {
        "ours": (samp_o, (b_o, z)), "flowjax": (samp_f, (b_f, z)), "numpyro": (np_inv, (np_params, z)),
    }, lim_maf_f, max(3, repeats // 4))
    group("MAF train step (log_prob + grad)", {
        "ours": (step_o, (ours, x)), "flowjax": (step_f, (fj, x)), "numpyro": (np_step, (np_params, x)),
    }, lim_maf_g)
    # Sanity: identical architectures produce finite, matching-shaped outputs.
    assert np.all(np.isfinite(np.asarray(dens_o(b_o, x)[1])))

    # RQS coupling
    ours_c = _perturb(ours_rqs(key), key)
    fj_c = _perturb(
        fflows.coupling_flow(
            key, base_dist=fdist.Normal(jnp.zeros(D)), transformer=FRQS(knots=KNOTS, interval=4.0),
            flow_layers=LAYERS, nn_width=WIDTH, nn_depth=DEPTH,
        ),
        key,
    )
    b_o, dens_o, samp_o, step_o = flow_fns(ours_c)
    b_f, dens_f, samp_f, step_f = flow_fns(fj_c)
    group("RQS coupling inverse + log-det (density)",
          {"ours": (dens_o, (b_o, x)), "flowjax": (dens_f, (b_f, x))}, lim_rqs_f)
    group("RQS coupling forward + log-det (sampling)",
          {"ours": (samp_o, (b_o, x)), "flowjax": (samp_f, (b_f, x))}, lim_rqs_f)
    group("RQS coupling train step (log_prob + grad)",
          {"ours": (step_o, (ours_c, x)), "flowjax": (step_f, (fj_c, x))}, lim_rqs_g)

    # (flops of our pass, flops of the limit program timed beside it, parallel direction?)
    meta = {
        "MAF parallel pass + log-det": (flops_maf, flops_maf, True),
        "MAF sequential pass + log-det": (flops_maf_seq, flops_maf, False),
        "MAF train step (log_prob + grad)": (3 * flops_maf, 3 * flops_maf, True),
        "RQS coupling inverse + log-det (density)": (flops_rqs, flops_rqs, True),
        "RQS coupling forward + log-det (sampling)": (flops_rqs, flops_rqs, True),
        "RQS coupling train step (log_prob + grad)": (3 * flops_rqs, 3 * flops_rqs, True),
    }
    limits = {row: lim_flops / lim[row] / 1e9 for row, (_, lim_flops, _) in meta.items()}
    print(f"device: {jax.devices()[0]}, batch {batch}, D {D}, {LAYERS} layers, hidden {DEPTH}x{WIDTH}")
    print("matmul limit (same shapes, timed round-robin with each row): "
          + ", ".join(f"{row.split(' + ')[0].split(' (')[0]} {v:.0f}" for row, v in limits.items())
          + " GFLOP/s")
    hdr = f"{'row':<44}{'ours ms':>9}{'flowjax':>9}{'numpyro':>9}{'speedup':>9}{'GFLOP/s':>9}{'% limit':>9}"
    print(hdr)
    print("-" * len(hdr))
    for row, (flops, _, parallel) in meta.items():
        limit = limits[row]
        o = t[(row, "ours")]
        f = t[(row, "flowjax")]
        n = t.get((row, "numpyro"))
        best = min(f, n) if n is not None else f
        gf = flops / o / 1e9
        rows.append({
            "row": row, "ours_s": o, "flowjax_s": f, "numpyro_s": n,
            "speedup_vs_fastest_anchor": best / o, "gflops": gf,
            "limit_gflops": limit, "fraction_of_limit": gf / limit if parallel else None,
            "parallel": parallel,
        })
        nstr = f"{1e3 * n:>9.2f}" if n is not None else f"{'-':>9}"
        pct = f"{100 * gf / limit:>8.0f}%" if parallel else f"{'-':>9}"
        print(f"{row:<44}{1e3 * o:>9.2f}{1e3 * f:>9.2f}{nstr}{best / o:>8.2f}x{gf:>9.0f}{pct}")

    out = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "device": str(jax.devices()[0]), "jax": jax.__version__},
        "config": {"batch": batch, "dim": D, "layers": LAYERS, "width": WIDTH, "depth": DEPTH,
                   "knots": KNOTS, "repeats": repeats},
        "matmul_limit_gflops": limits,
        "timing": "each row's candidates and its matmul-limit program timed round-robin "
                  "(median of the repeats), after compilation",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

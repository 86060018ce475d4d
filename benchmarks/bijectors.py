"""Bijector throughput: bayesflow_nets vs FlowJAX vs NumPyro, same architecture, one process.

MAF (5 layers, MADE hidden 2×128, affine) and RQS coupling flow (5 layers, 8 bins, hidden 2×128),
D = 64, batch 4096, float32. Rows: the parallel and sequential passes with log-det, and one
training step (mean log_prob + gradient). Reports median wall time after compilation, ratios to
the faster anchor, achieved GFLOP/s (matmul FLOPs only) and the measured matmul GFLOP/s of the
same shapes on this machine (the physical limit). Writes benchmarks/results/bijectors.json.

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
    out = fn(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def mlp_flops(batch, n_in, n_out, width=WIDTH, depth=DEPTH):
    sizes = [n_in] + [width] * depth + [n_out]
    return 2.0 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def matmul_limit(batch, n_in, n_out, repeats):
    """Time a bare chain of matmuls (+relu) with the conditioner's shapes over LAYERS layers."""
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
        return acc

    grad = jax.jit(jax.grad(fwd))
    t_f = timeit(fwd, ws, x, repeats=repeats)
    t_g = timeit(grad, ws, x, repeats=repeats)
    flops = LAYERS * mlp_flops(batch, n_in, n_out)
    return flops / t_f / 1e9, 3 * flops / t_g / 1e9


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
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bijectors.json"))
    args = parser.parse_args()
    batch = 512 if args.quick else 4096
    repeats = 5 if args.quick else args.repeats

    import flowjax.distributions as fdist
    import flowjax.flows as fflows
    from flowjax.bijections import RationalQuadraticSpline as FRQS

    key = jax.random.key(0)
    x = jax.random.normal(jax.random.key(1), (batch, D))
    rows = []

    lim_maf_f, lim_maf_g = matmul_limit(batch, D, 2 * D, repeats)
    n_c = D // 2
    lim_rqs_f, lim_rqs_g = matmul_limit(batch, n_c, (D - n_c) * (3 * KNOTS - 1), repeats)
    flops_maf = LAYERS * mlp_flops(batch, D, 2 * D)
    flops_rqs = LAYERS * mlp_flops(batch, n_c, (D - n_c) * (3 * KNOTS - 1))

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
    t = {
        ("MAF parallel pass + log-det", "ours"): timeit(dens_o, b_o, x, repeats=repeats),
        ("MAF parallel pass + log-det", "flowjax"): timeit(dens_f, b_f, x, repeats=repeats),
        ("MAF parallel pass + log-det", "numpyro"): timeit(np_fwd, np_params, x, repeats=repeats),
        ("MAF sequential pass + log-det", "ours"): timeit(samp_o, b_o, z, repeats=max(3, repeats // 4)),
        ("MAF sequential pass + log-det", "flowjax"): timeit(samp_f, b_f, z, repeats=max(3, repeats // 4)),
        ("MAF sequential pass + log-det", "numpyro"): timeit(np_inv, np_params, z, repeats=max(3, repeats // 4)),
        ("MAF train step (log_prob + grad)", "ours"): timeit(step_o, ours, x, repeats=repeats),
        ("MAF train step (log_prob + grad)", "flowjax"): timeit(step_f, fj, x, repeats=repeats),
        ("MAF train step (log_prob + grad)", "numpyro"): timeit(np_step, np_params, x, repeats=repeats),
    }
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
    t.update({
        ("RQS coupling inverse + log-det (density)", "ours"): timeit(dens_o, b_o, x, repeats=repeats),
        ("RQS coupling inverse + log-det (density)", "flowjax"): timeit(dens_f, b_f, x, repeats=repeats),
        ("RQS coupling forward + log-det (sampling)", "ours"): timeit(samp_o, b_o, x, repeats=repeats),
        ("RQS coupling forward + log-det (sampling)", "flowjax"): timeit(samp_f, b_f, x, repeats=repeats),
        ("RQS coupling train step (log_prob + grad)", "ours"): timeit(step_o, ours_c, x, repeats=repeats),
        ("RQS coupling train step (log_prob + grad)", "flowjax"): timeit(step_f, fj_c, x, repeats=repeats),
    })

    meta = {
        "MAF parallel pass + log-det": (flops_maf, lim_maf_f, True),
        "MAF sequential pass + log-det": (D * flops_maf, lim_maf_f, False),
        "MAF train step (log_prob + grad)": (3 * flops_maf, lim_maf_g, True),
        "RQS coupling inverse + log-det (density)": (flops_rqs, lim_rqs_f, True),
        "RQS coupling forward + log-det (sampling)": (flops_rqs, lim_rqs_f, True),
        "RQS coupling train step (log_prob + grad)": (3 * flops_rqs, lim_rqs_g, True),
    }
    print(f"device: {jax.devices()[0]}, batch {batch}, D {D}, {LAYERS} layers, hidden {DEPTH}x{WIDTH}")
    print(f"matmul limit (same shapes): MAF fwd {lim_maf_f:.0f} GFLOP/s, grad {lim_maf_g:.0f}; "
          f"RQS fwd {lim_rqs_f:.0f}, grad {lim_rqs_g:.0f}")
    hdr = f"{'row':<44}{'ours ms':>9}{'flowjax':>9}{'numpyro':>9}{'speedup':>9}{'GFLOP/s':>9}{'% limit':>9}"
    print(hdr)
    print("-" * len(hdr))
    for row, (flops, limit, parallel) in meta.items():
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
        "matmul_limit_gflops": {"maf_fwd": lim_maf_f, "maf_grad": lim_maf_g,
                                "rqs_fwd": lim_rqs_f, "rqs_grad": lim_rqs_g},
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

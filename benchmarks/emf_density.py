"""EMF density estimation on synthetic time series (MATH.md §1, "EMF family"; issue 3).

Series (simulated here with a seeded NumPy generator, nothing downloads), length 30, 1000
training (10% of them used for early stopping) and 1000 test sequences:

- Brownian motion: x₀ ~ N(0, 0.1²), x_t = x_{t−1} + 0.1 ξ_t.
- Ornstein–Uhlenbeck (exact discretisation, θ = 0.5, Δt = 0.5, σ = 0.3, mean 0): x₀ ~ N(1, 0.2²),
  x_t = a x_{t−1} + σ √((1 − a²)/2θ) ξ_t with a = e^{−θΔt}.
- Lorenz (MATH.md §1 parameters): 3-D, Euler step 0.02, σ=10, ρ=28, β=8/3, innovation sd
  0.1·√0.02, x₀ ~ N(0, I); all three coordinates, flattened time-major (90 numbers).

Models (same flow sizes: 2 layers, hidden width 2·dim, followed by a triangular affine layer):
- EMF-MAF / EMF-RQS: ``EMFDensity`` (gated) whose embedded program is a continuity prior
  x₀ ~ N(m₀, s₀), x_t ~ N(x_{t−1}, s) with trainable ``numpyro.param`` sites m₀, s₀, s (per
  coordinate), initialised from the training data (like the baselines' standardisation);
- MAF / RQS: ``masked_autoregressive_flow`` / ``coupling_flow`` with the same layers and a trainable
  elementwise affine initialised to the training mean and standard deviation.
All are trained by ``bayesflow_nets.infer.fit_to_data`` (Adam 1e-3, batch 100, early stopping).
Reported: test NLL per sequence (nats), mean ± s.e. over test sequences per seed, and the mean
over seeds ± s.e. over seeds. Seeds change initialisation and minibatch order (the data set is
fixed). Times: wall seconds on a shared, loaded 2-core machine, compilation included.

    .venv/bin/python benchmarks/emf_density.py --quick
    .venv/bin/python benchmarks/emf_density.py [--seeds 3 --series brownian,ou,lorenz]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax

jax.config.update("jax_compilation_cache_dir", "/tmp/bayesflow_nets_jax_cache")
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.distributions import constraints  # noqa: E402

from bayesflow_nets.bijectors import (  # noqa: E402
    Affine,
    Chain,
    StandardNormal,
    Transformed,
    TriangularAffine,
    coupling_flow,
    masked_autoregressive_flow,
)
from bayesflow_nets.emf import EMFDensity  # noqa: E402
from bayesflow_nets.infer import fit_to_data  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "results" / "emf_density.json"
SERIES = ("brownian", "ou", "lorenz")
MODELS = ("EMF-MAF", "EMF-RQS", "MAF", "RQS")
T = 30


# ------------------------------------------------------------------------------------------
# simulators
# ------------------------------------------------------------------------------------------
def simulate(series: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sequences of length ``T`` (Lorenz: flattened (T, 3) time-major), float32."""
    if series == "brownian":
        x0 = 0.1 * rng.standard_normal((n, 1))
        x = x0 + np.cumsum(
            np.concatenate([np.zeros((n, 1)), 0.1 * rng.standard_normal((n, T - 1))], 1), 1
        )
    elif series == "ou":
        theta, dt, sigma = 0.5, 0.5, 0.3
        a = np.exp(-theta * dt)
        sd = sigma * np.sqrt((1 - a**2) / (2 * theta))
        x = np.empty((n, T))
        x[:, 0] = 1.0 + 0.2 * rng.standard_normal(n)
        for t in range(1, T):
            x[:, t] = a * x[:, t - 1] + sd * rng.standard_normal(n)
    elif series == "lorenz":
        dt, s, r, b = 0.02, 10.0, 28.0, 8.0 / 3.0
        noise = 0.1 * np.sqrt(dt)
        z = np.empty((n, T, 3))
        z[:, 0] = rng.standard_normal((n, 3))
        for t in range(1, T):
            p = z[:, t - 1]
            drift = np.stack(
                [
                    s * (p[:, 1] - p[:, 0]),
                    p[:, 0] * (r - p[:, 2]) - p[:, 1],
                    p[:, 0] * p[:, 1] - b * p[:, 2],
                ],
                1,
            )
            z[:, t] = p + dt * drift + noise * rng.standard_normal((n, 3))
        x = z.reshape(n, T * 3)
    else:
        raise ValueError(f"unknown series {series!r}; choose from {SERIES}")
    return x.astype(np.float32)


# ------------------------------------------------------------------------------------------
# the embedded program: a continuity (Brownian-motion) prior with trainable scales
# ------------------------------------------------------------------------------------------
def continuity_prior(loc0, scale0, step, num_steps=T):
    """x₀ ~ N(m₀, s₀), x_t ~ N(x_{t−1}, s); one site per time step (vector-valued for d > 1)."""
    m0 = numpyro.param("loc0", loc0)
    s0 = numpyro.param("scale0", scale0, constraint=constraints.positive)
    s = numpyro.param("step", step, constraint=constraints.positive)
    x = numpyro.sample("x_0", dist.Normal(m0, s0).to_event(1))
    for t in range(1, num_steps):
        x = numpyro.sample(f"x_{t}", dist.Normal(x, s).to_event(1))


def program_init(train: np.ndarray, d: int) -> dict:
    seq = train.reshape(train.shape[0], T, d)
    inc = np.diff(seq, axis=1).reshape(-1, d)
    return dict(
        loc0=jnp.asarray(seq[:, 0].mean(0)),
        scale0=jnp.asarray(seq[:, 0].std(0) + 1e-3),
        step=jnp.asarray(inc.std(0) + 1e-3),
    )


def build(model: str, key, train: np.ndarray, d: int, width: int):
    dim = train.shape[1]
    if model.startswith("EMF"):
        backbone = "maf" if model == "EMF-MAF" else "rqs"
        return EMFDensity(
            continuity_prior,
            backbone,
            gated=True,
            key=key,
            model_kwargs=program_init(train, d),
            flow_layers=2,
            nn_width=width,
        )
    base = StandardNormal((dim,))
    make = masked_autoregressive_flow if model == "MAF" else coupling_flow
    flow = make(key, base_dist=base, flow_layers=2, nn_width=width)
    standardise = Affine(jnp.asarray(train.mean(0)), jnp.asarray(train.std(0) + 1e-3))
    tri = TriangularAffine(jnp.zeros(dim), jnp.eye(dim))
    return Transformed(base, Chain([flow.bijector, tri, standardise]))


def n_params(m) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_inexact_array))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--series", default=",".join(SERIES))
    ap.add_argument("--epochs", type=int, default=None, help="default 200 (30 with --quick)")
    args = ap.parse_args()
    seeds = args.seeds or (1 if args.quick else 3)
    epochs = args.epochs or (30 if args.quick else 200)
    n_train, n_test = (300, 300) if args.quick else (1000, 1000)
    series_list = args.series.split(",")
    out = OUT.with_name("emf_density_quick.json") if args.quick else OUT
    rows = []
    for series in series_list:
        rng = np.random.default_rng(12345)
        train = simulate(series, n_train, rng)
        test = jnp.asarray(simulate(series, n_test, rng))
        d = 3 if series == "lorenz" else 1
        width = 2 * train.shape[1]
        for model in MODELS:
            for seed in range(seeds):
                k_init, k_fit = jax.random.split(jax.random.PRNGKey(seed))
                t0 = time.perf_counter()
                flow = build(model, k_init, train, d, width)
                res = fit_to_data(
                    k_fit,
                    flow,
                    train,
                    learning_rate=1e-3,
                    max_epochs=epochs,
                    max_patience=10,
                    batch_size=100,
                    progress=False,
                )
                nll = -np.asarray(eqx.filter_jit(lambda m, x: m.log_prob(x))(res.model, test))
                dt = time.perf_counter() - t0
                row = dict(
                    series=series,
                    model=model,
                    seed=seed,
                    nll=float(nll.mean()),
                    nll_se=float(nll.std() / np.sqrt(nll.size)),
                    epochs=len(res.losses["val"]),
                    status=res.status,
                    params=n_params(flow),
                    time=dt,
                )
                if isinstance(res.model, EMFDensity):
                    row["program_params"] = {
                        k: np.asarray(v).tolist() for k, v in res.model.constrained_params().items()
                    }
                rows.append(row)
                print(
                    f"{series:9s} {model:8s} seed {seed}  test NLL {row['nll']:9.3f} ± {row['nll_se']:.3f}"
                    f"  epochs {row['epochs']:3d}  params {row['params']:6d}  {dt:6.1f}s",
                    flush=True,
                )
            out.write_text(json.dumps(dict(config=vars(args), rows=rows), indent=1))
    table = []
    print(
        "\n| series | model | test NLL (mean over seeds ± s.e.) | per-seed s.e. over sequences | params |"
    )
    print("|---|---|---|---|---|")
    for series in series_list:
        for model in MODELS:
            rs = [r for r in rows if r["series"] == series and r["model"] == model]
            v = np.array([r["nll"] for r in rs])
            se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
            table.append(
                dict(
                    series=series,
                    model=model,
                    nll=float(v.mean()),
                    se_seeds=se,
                    se_test=float(np.mean([r["nll_se"] for r in rs])),
                    seeds=len(rs),
                    params=rs[0]["params"],
                )
            )
            print(
                f"| {series} | {model} | {v.mean():.3f} ± {se:.3f} | {table[-1]['se_test']:.3f} | {rs[0]['params']} |"
            )
    out.write_text(json.dumps(dict(config=vars(args), rows=rows, table=table), indent=1))


if __name__ == "__main__":
    main()

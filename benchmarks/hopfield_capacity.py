"""Capacity curve: recall of stored ±1 patterns by a DSM-trained score vs modern Hopfield.

For N random ±1 patterns in R^32 (N = 2 … 2048), probes are stored patterns with 10 % of the bits
flipped. Recall (every sign right) by
- the modern Hopfield update (β = 1/t_start, one iteration and to convergence),
- DDIM (η = 0, 10 steps) from t_start with the exact empirical score of the N patterns (the
  memorising, Hopfield-equivalent score),
- DDIM with a score MLP trained here by denoising score matching on the N patterns
  (``capacity_curve`` with a ``train_fn`` that trains).
The anchor is the Hopfield recall computed in the same process. Writes
benchmarks/results/hopfield_capacity.json.

    python benchmarks/hopfield_capacity.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import optax

from bayesflow_nets import diffusion as D
from bayesflow_nets.infer import fit_to_loss

DIM = 32
FLIP = 0.1


def dsm_trainer(steps: int, width: int):
    """``train_fn`` for ``capacity_curve``: a ScoreMLP trained by DSM on the patterns."""
    schedule = D.VESchedule(sigma_min=0.01, sigma_max=2.0)

    def train(key, patterns):
        k_net, k_fit = jax.random.split(key)
        net = D.ScoreMLP(k_net, patterns.shape[1], width=width, depth=3)

        def loss_fn(model, k):
            k1, k2 = jax.random.split(k)
            idx = jax.random.randint(k1, (256,), 0, patterns.shape[0])
            return D.dsm_loss(model, schedule, patterns[idx], k2, t_sampling="log")

        opt = optax.adam(optax.cosine_decay_schedule(1e-3, steps))
        res = fit_to_loss(k_fit, net, loss_fn, steps, optimizer=opt, progress=False)
        return D.as_score_fn(res.model, schedule, "eps")

    return train


def exact_trainer(key, patterns):
    schedule = D.VESchedule()
    return lambda x, t: D.empirical_score(schedule, patterns, x, t)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N ≤ 32, short training")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "hopfield_capacity.json")
    )
    args = parser.parse_args()
    counts = [2, 8, 32] if args.quick else [2, 8, 32, 128, 512, 2048]
    steps = 300 if args.quick else 4000
    key = jax.random.key(0)
    common = dict(dim=DIM, pattern_counts=counts, flip_fraction=FLIP, num_probes=200)
    t0 = time.perf_counter()
    exact = D.capacity_curve(key, exact_trainer, **common, num_steps=10)
    exact_1 = D.capacity_curve(key, exact_trainer, **common, num_steps=1)
    hop_conv = D.capacity_curve(key, exact_trainer, **common, num_steps=1, hopfield_iters=10)
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    dsm = D.capacity_curve(key, dsm_trainer(steps, 256), **common, num_steps=10)
    t_dsm = time.perf_counter() - t0
    rows = []
    print(
        f"d = {DIM}, {int(FLIP * 100)} % flipped bits, 200 probes; recall = all signs right\n"
        f"{'N':>6}{'Hopfield 1 it':>15}{'Hopfield 10 it':>16}{'exact score 1 st':>18}"
        f"{'exact score DDIM10':>20}{'DSM net DDIM10':>16}"
    )
    for i, n in enumerate(counts):
        row = {
            "num_patterns": int(n),
            "hopfield_1_iter": float(exact.hopfield_accuracy[i]),
            "hopfield_10_iter": float(hop_conv.hopfield_accuracy[i]),
            "exact_score_1_step": float(exact_1.score_accuracy[i]),
            "exact_score_ddim10": float(exact.score_accuracy[i]),
            "dsm_net_ddim10": float(dsm.score_accuracy[i]),
        }
        rows.append(row)
        print(
            f"{n:>6}{row['hopfield_1_iter']:>15.3f}{row['hopfield_10_iter']:>16.3f}"
            f"{row['exact_score_1_step']:>18.3f}{row['exact_score_ddim10']:>20.3f}"
            f"{row['dsm_net_ddim10']:>16.3f}"
        )
    print(f"time: exact/Hopfield {t_exact:.1f} s, DSM ({steps} steps per N) {t_dsm:.1f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "dim": DIM,
                "flip_fraction": FLIP,
                "dsm_steps": steps,
                "rows": rows,
                "time_s": {"exact_and_hopfield": t_exact, "dsm": t_dsm},
                "device": str(jax.devices()[0]),
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

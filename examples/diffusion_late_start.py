"""Gaussian late start vs cold start with 3 sampling steps (MATH.md §5).

Trains a ScoreMLP by DSM (discrete DDPM schedule) on a 2-D ring of 8 Gaussians, then draws with
DDIM in n = 3 steps (a) from N(0, I) at DDPM index 666 and (b) from the Gaussian of the noised
training data at t_s on linspace(0, t_s, 3), and plots both beside the data.

    python examples/diffusion_late_start.py [--quick] [--out late_start.png] [--t-s 300]
"""

from __future__ import annotations

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from bayesflow_nets import diffusion as D  # noqa: E402


def ring(key, n):
    k1, k2 = jax.random.split(key)
    ang = 2 * jnp.pi * jax.random.randint(k1, (n,), 0, 8) / 8
    return 2.0 * jnp.stack([jnp.cos(ang), jnp.sin(ang)], 1) + 0.15 * jax.random.normal(k2, (n, 2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="diffusion_late_start.png")
    ap.add_argument("--t-s", type=float, default=300.0)
    args = ap.parse_args()
    sched = D.DDPMSchedule()
    data = ring(jax.random.key(0), 20000)
    steps = 500 if args.quick else 6000
    net = D.ScoreMLP(jax.random.key(1), 2, width=256, depth=3)
    opt = optax.adam(optax.cosine_decay_schedule(1e-3, steps))
    state = opt.init(eqx.filter(net, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(net, state, key):
        k1, k2 = jax.random.split(key)
        idx = jax.random.randint(k1, (256,), 0, data.shape[0])
        loss, g = eqx.filter_value_and_grad(lambda n: D.dsm_loss(n, sched, data[idx], k2))(net)
        upd, state = opt.update(g, state, net)
        return eqx.apply_updates(net, upd), state, loss

    for key in jax.random.split(jax.random.key(2), steps):
        net, state, _ = step(net, state, key)
    score = D.as_score_fn(net, sched, "eps")
    n_gen, n = 2000, 3
    sample = jax.jit(jax.vmap(lambda x, ts: D.ddim_sample(score, sched, x, ts), in_axes=(0, None)))

    cold_times = jnp.array([667.0, 334.0, 1.0, 0.0])  # DDPM indices 666, 333, 0, then clean
    cold = sample(jax.random.normal(jax.random.key(3), (n_gen, 2)), cold_times)
    t_s = args.t_s
    g = D.gaussian_late_start(np.asarray(data), sched, t_s + 1.0)
    late_times = jnp.concatenate([jnp.linspace(t_s, 0.0, n) + 1.0, jnp.zeros(1)])
    late = sample(g.sample(jax.random.key(4), n_gen), late_times)

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4), sharex=True, sharey=True)
    for ax, pts, title in zip(
        axes,
        (data[:n_gen], cold, late),
        ("data", "cold start, n=3", f"late start t_s={t_s:.0f}, n=3"),
    ):
        ax.scatter(*np.asarray(pts).T, s=2, alpha=0.5)
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

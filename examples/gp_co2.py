"""Mauna Loa CO₂: an improper GP forecast with a band plot (MATH.md §3).

Monthly means of statsmodels' bundled weekly CO₂ record. Train on 1958–1988, forecast 1989–2001
(held out) and on to 2010. Kernels, hyperparameters by REML (L-BFGS):

* improper: SmoothWalk (non-reverting trend) + Periodic(1 yr)·SE (decaying seasonal cycle);
* proper reference: SE + Periodic·SE with a flat constant mean (reverts to that mean).

Writes docs/figures/gp_co2.png.

    python examples/gp_co2.py [--quick]
"""

from __future__ import annotations

import argparse
import os

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import statsmodels.api as sm  # noqa: E402

from bayesflow_nets.gp import (  # noqa: E402
    ImproperGP,
    Periodic,
    SmoothWalk,
    SquaredExponential,
    fit_reml,
    plot_gp,
)

FIGURE = os.path.join(os.path.dirname(__file__), "..", "docs", "figures", "gp_co2.png")


def load():
    df = sm.datasets.co2.load_pandas().data.dropna().resample("MS").mean().dropna()
    t = df.index.year + (df.index.month - 0.5) / 12.0
    return np.asarray(t, float), df["co2"].to_numpy(float)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer optimiser steps")
    parser.add_argument("--out", default=FIGURE)
    args = parser.parse_args()
    steps = 15 if args.quick else 80

    t, y = load()
    train = t < 1989.0
    t_tr, y_tr, t_te, y_te = t[train], y[train], t[~train], y[~train]
    mu, sd = y_tr.mean(), y_tr.std()
    ys = jnp.asarray((y_tr - mu) / sd)
    x = jnp.asarray(t_tr - 1958.0)
    x_plot = jnp.linspace(0.0, 2010.0 - 1958.0, 700)

    seasonal = Periodic(1.0, 1.0, 0.01) * SquaredExponential(50.0, 1.0)
    models = {
        "SmoothWalk + seasonal (improper)": SmoothWalk(10.0, 0.01) + seasonal,
        "SE + seasonal (proper, flat mean)": SquaredExponential(10.0, 1.0) + seasonal,
    }
    fig, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for ax, (name, kernel) in zip(axes, models.items()):
        gp = ImproperGP(kernel, x, 1e-3, flat_mean=True)
        res = fit_reml(gp, ys, steps=steps)
        gp = res.gp
        post = gp.predict(ys, jnp.asarray(t_te - 1958.0))
        mean = np.asarray(post.mean) * sd + mu
        var = (np.asarray(post.variance) + float(gp.noise[0])) * sd**2
        rmse = float(np.sqrt(np.mean((mean - y_te) ** 2)))
        mpld = float(np.mean(-0.5 * (np.log(2 * np.pi * var) + (y_te - mean) ** 2 / var)))
        reml = float(gp.log_marginal_likelihood(ys))
        print(f"{name:36s} REML {reml:9.2f}  held-out RMSE {rmse:.3f} ppm  MPLD {mpld:.3f}")
        # Plot on the standardised scale, then relabel the axes to ppm / years.
        plot_gp(
            gp,
            ys,
            x_plot,
            heldout=(t_te - 1958.0, (y_te - mu) / sd),
            ax=ax,
            label=name.split(" (")[0],
            title=f"{name}: held-out RMSE {rmse:.2f} ppm",
        )
        ticks = ax.get_yticks()
        ax.set_yticks(ticks, [f"{v * sd + mu:.0f}" for v in ticks])
        ax.set_ylabel("CO₂ (ppm)")
    xt = axes[-1].get_xticks()
    axes[-1].set_xticks(xt, [f"{v + 1958:.0f}" for v in xt])
    axes[-1].set_xlabel("year (train < 1989; dotted line = end of training data)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()

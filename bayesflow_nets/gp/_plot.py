"""Posterior band plots (mean ± k sd, with extrapolation beyond the data)."""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike

from ._gp import ImproperGP

__all__ = ["plot_gp"]


def plot_gp(
    gp: ImproperGP,
    y: ArrayLike,
    X_test: ArrayLike,
    *,
    method: str = "contrast",
    num_sd: float = 2.0,
    heldout: tuple[ArrayLike, ArrayLike] | None = None,
    include_noise: bool = True,
    ax=None,
    label: str | None = None,
    title: str | None = None,
):
    """Plot the posterior mean ± ``num_sd`` sd at 1-D ``X_test`` with the data; returns the figure.

    ``include_noise`` widens the band by the (mean) observation noise (predictive band for new
    observations); ``heldout = (X_heldout, y_heldout)`` is drawn as well when given.
    """
    import matplotlib.pyplot as plt

    X = np.asarray(gp.X).reshape(gp.n, -1)
    if X.shape[1] != 1:
        raise ValueError(f"plot_gp needs 1-D inputs, got X with shape {gp.X.shape}.")
    if num_sd <= 0:
        raise ValueError(f"plot_gp: num_sd must be positive, got {num_sd}.")
    post = gp.predict(y, X_test, method=method)
    xt = np.asarray(X_test).reshape(-1)
    order = np.argsort(xt)
    mean = np.asarray(post.mean)[order]
    var = np.asarray(post.variance)[order]
    if include_noise:
        var = var + float(np.mean(np.asarray(gp.noise)))
    sd = np.sqrt(np.clip(var, 0.0, None))
    if ax is None:
        fig, ax = plt.subplots(figsize=(9, 4))
    else:
        fig = ax.figure
    ax.plot(X[:, 0], np.asarray(y), ".", ms=2.5, color="k", label="data")
    if heldout is not None:
        xh, yh = (np.asarray(a).reshape(-1) for a in heldout)
        if xh.shape != yh.shape:
            raise ValueError(
                f"plot_gp: heldout inputs and targets differ in length: {xh.shape} vs {yh.shape}."
            )
        ax.plot(xh, yh, ".", ms=2.5, color="tab:red", label="held out")
    name = label or type(gp.kernel).__name__
    ax.plot(xt[order], mean, color="tab:blue", lw=1.2, label=f"{name} mean")
    ax.fill_between(
        xt[order],
        mean - num_sd * sd,
        mean + num_sd * sd,
        color="tab:blue",
        alpha=0.25,
        label=f"± {num_sd:g} sd",
    )
    ax.axvline(X[:, 0].max(), color="grey", ls=":", lw=1)
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return fig

"""plot_gp draws the posterior mean and the ± num_sd band returned by predict."""

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bayesflow_nets.gp import Brownian, ImproperGP, plot_gp  # noqa: E402


def test_plot_gp_band_matches_predict(x64):
    x = jnp.linspace(0.0, 5.0, 12)
    y = jnp.sin(x)
    gp = ImproperGP(Brownian(0.5), x, 0.01)
    xt = jnp.linspace(-1.0, 8.0, 40)
    fig = plot_gp(gp, y, xt, heldout=(xt[:3], jnp.zeros(3)), include_noise=False)
    ax = fig.axes[0]
    post = gp.predict(y, xt)
    mean_line = [ln for ln in ax.get_lines() if ln.get_label().endswith("mean")][0]
    np.testing.assert_allclose(mean_line.get_ydata(), post.mean, rtol=1e-12)
    band = ax.collections[0].get_paths()[0].vertices
    upper = np.max(band[:, 1])
    np.testing.assert_allclose(upper, np.max(post.mean + 2 * np.sqrt(post.variance)), rtol=1e-9)
    with pytest.raises(ValueError, match="num_sd must be positive"):
        plot_gp(gp, y, xt, num_sd=0.0)
    import matplotlib.pyplot as plt

    plt.close("all")

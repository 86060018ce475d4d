"""The EMF paper's VI benchmark models as NumPyro models (MATH.md §1, "Paper's VI benchmark models").

Observations are pinned to one seeded prior draw (:func:`emf_vi_problem`). Time series use one
latent site per step (``x_0``, ``x_1``, ...) so a structured layer sees the Markov structure; the
collider trees use one plated site per level.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from ._models import eight_schools, eight_schools_noncentered

LIKELIHOODS = ("regression", "classification")


def _check(likelihood: str, num_steps: int):
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"argument 'likelihood' must be one of {LIKELIHOODS}, got {likelihood!r}.")
    if not (isinstance(num_steps, int) and num_steps >= 2):
        raise ValueError(f"argument 'num_steps' must be an int >= 2, got {num_steps!r}.")


def bridge_index(num_steps: int = 30) -> np.ndarray:
    """Observed steps of the "bridge" variants: t ∈ [0, T/3) ∪ [2T/3, T) ([0,10) ∪ [20,30))."""
    third = num_steps // 3
    return np.concatenate([np.arange(third), np.arange(num_steps - third, num_steps)])


def _observe(values, y, likelihood, bridge, scale, logit_scale):
    if bridge:
        values = values[bridge_index(values.shape[0])]
    if likelihood == "regression":
        numpyro.sample("y", dist.Normal(values, scale).to_event(1), obs=y)
    else:
        numpyro.sample("y", dist.Bernoulli(logits=logit_scale * values).to_event(1), obs=y)


def brownian_motion(
    y=None, *, likelihood: str = "regression", bridge: bool = False, num_steps: int = 30
):
    """x₀ ~ N(0, 0.1), x_t ~ N(x_{t−1}, 0.1); y_t ~ N(x_t, 0.15) or Bernoulli(logit 5 x_t),
    observed at every step ("smoothing") or at t ∈ [0,10) ∪ [20,30) ("bridge")."""
    _check(likelihood, num_steps)
    x = numpyro.sample("x_0", dist.Normal(0.0, 0.1))
    xs = [x]
    for t in range(1, num_steps):
        x = numpyro.sample(f"x_{t}", dist.Normal(x, 0.1))
        xs.append(x)
    _observe(jnp.stack(xs), y, likelihood, bridge, 0.15, 5.0)


def _lorenz_drift(x, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    return jnp.stack([sigma * (x[1] - x[0]), x[0] * (rho - x[2]) - x[1], x[0] * x[1] - beta * x[2]])


def lorenz_system(
    y=None,
    *,
    likelihood: str = "regression",
    bridge: bool = False,
    num_steps: int = 30,
    dt: float = 0.02,
):
    """3-D Lorenz system, Euler step ``dt`` (σ=10, ρ=28, β=8/3), innovation sd 0.1·√dt,
    x₀ ~ N(0, I); the first coordinate observed with N(x¹, 1) or Bernoulli(logit 2x¹)."""
    _check(likelihood, num_steps)
    noise = 0.1 * float(np.sqrt(dt))
    x = numpyro.sample("x_0", dist.Normal(jnp.zeros(3), 1.0).to_event(1))
    xs = [x[0]]
    for t in range(1, num_steps):
        x = numpyro.sample(f"x_{t}", dist.Normal(x + dt * _lorenz_drift(x), noise).to_event(1))
        xs.append(x[0])
    _observe(jnp.stack(xs), y, likelihood, bridge, 1.0, 2.0)


def collider_tree(y=None, *, depth: int = 4, link: str = "linear"):
    """Binary collider tree: 2^depth leaves ~ N(0, s₀); each parent ~ N(g(a) − g(b), s) of its two
    children; the root is observed. ``link`` "linear" (g = id, s₀=0.2, s=0.15) or "tanh"
    (s₀=0.1, s=0.05). One plated site per level (``level_depth`` … ``level_1``)."""
    if link not in ("linear", "tanh"):
        raise ValueError(f"argument 'link' must be 'linear' or 'tanh', got {link!r}.")
    if not (isinstance(depth, int) and depth >= 1):
        raise ValueError(f"argument 'depth' must be an int >= 1, got {depth!r}.")
    g = (lambda v: v) if link == "linear" else jnp.tanh
    s0, s = (0.2, 0.15) if link == "linear" else (0.1, 0.05)
    z = numpyro.sample(f"level_{depth}", dist.Normal(0.0, s0).expand([2**depth]).to_event(1))
    for level in range(depth - 1, 0, -1):
        z = numpyro.sample(f"level_{level}", dist.Normal(g(z[0::2]) - g(z[1::2]), s).to_event(1))
    numpyro.sample("y", dist.Normal(g(z[0:1]) - g(z[1:2]), s).to_event(1), obs=y)


def _bm(likelihood, bridge):
    return lambda y=None: brownian_motion(y, likelihood=likelihood, bridge=bridge)


def _lorenz(likelihood, bridge):
    return lambda y=None: lorenz_system(y, likelihood=likelihood, bridge=bridge)


def _tree(depth, link):
    return lambda y=None: collider_tree(y, depth=depth, link=link)


def _schools(y=None):
    return eight_schools_noncentered(eight_schools()["sigma"], y)


_BUILDERS: tuple[tuple[str, Callable[[], Callable]], ...] = tuple(
    [
        (f"{sys}_{kind}_{lik}", (lambda f=f, lik=lik, b=(kind == "bridge"): f(lik, b)))
        for sys, f in (("brownian", _bm), ("lorenz", _lorenz))
        for kind in ("smoothing", "bridge")
        for lik in LIKELIHOODS
    ]
    + [("eight_schools", lambda: _schools)]
    + [
        (f"tree_{link}_d{d}", (lambda d=d, link=link: _tree(d, link)))
        for link in ("linear", "tanh")
        for d in (4, 8)
    ]
)

EMF_VI_MODELS: tuple[str, ...] = tuple(name for name, _ in _BUILDERS)
"""Names accepted by :func:`emf_vi_problem`."""


def emf_vi_problem(name: str, seed: int = 0) -> tuple[Callable, np.ndarray]:
    """``(model, y)``: the model ``model(y=None)`` and its observation ``y``.

    ``y`` is one prior draw with PRNG seed ``seed`` (the real data for ``"eight_schools"``).
    """
    builders = dict(_BUILDERS)
    if name not in builders:
        raise ValueError(f"argument 'name' must be one of {EMF_VI_MODELS}, got {name!r}.")
    model = builders[name]()
    if name == "eight_schools":
        return model, eight_schools()["y"]
    tr = handlers.trace(handlers.seed(model, jax.random.PRNGKey(seed))).get_trace()
    return model, np.asarray(tr["y"]["value"])


__all__ = [
    "EMF_VI_MODELS",
    "LIKELIHOODS",
    "bridge_index",
    "brownian_motion",
    "collider_tree",
    "emf_vi_problem",
    "lorenz_system",
]

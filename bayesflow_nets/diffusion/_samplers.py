"""Samplers for ``x_t = m x_0 + s ε`` processes, from any start time (MATH.md §5).

Every sampler moves ONE unbatched sample along a decreasing time grid ``times`` (length
``n + 1``): the score is evaluated at ``times[:-1]`` (``n`` evaluations) and the result lives at
``times[-1]`` (``0`` means clean data: ``m = 1``, ``s = 0``). Batch with ``jax.vmap`` over
initial states and keys. ``score_fn(x, t)`` is an unbatched score (see :func:`as_score_fn`).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._schedules import AbstractSchedule

__all__ = [
    "time_grid",
    "ddim_sample",
    "ddpm_sample",
    "pndm_sample",
    "euler_maruyama_sample",
    "probability_flow_sample",
]

ScoreFn = Callable[[Array, Array], Array]


def time_grid(
    t_start: float, n: int, t_end: float = 0.0, *, spacing: str = "linear"
) -> Float[Array, " n1"]:
    """``n`` steps from ``t_start`` down to ``t_end`` (``n + 1`` times).

    ``spacing="linear"``: uniform in ``t`` (``linspace``; the DDPM/late-start convention);
    ``"sqrt"``: uniform in ``√t`` (uniform in σ for :class:`VESchedule`, where DDIM is Euler in σ).
    """
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"time_grid: n must be an int >= 1, got {n!r}.")
    if not t_start > t_end >= 0:
        raise ValueError(f"time_grid: need t_start > t_end >= 0, got {t_start} and {t_end}.")
    if spacing == "linear":
        return jnp.linspace(t_start, t_end, n + 1)
    if spacing == "sqrt":
        return jnp.linspace(t_start**0.5, t_end**0.5, n + 1) ** 2
    raise ValueError(f"time_grid: spacing must be 'linear' or 'sqrt', got {spacing!r}.")


def _check(name: str, schedule, x, times, key, needs_key: bool) -> tuple[Array, Array]:
    if not isinstance(schedule, AbstractSchedule):
        raise TypeError(
            f"{name}: schedule must be an AbstractSchedule (e.g. VESchedule()), got "
            f"{type(schedule).__name__}."
        )
    x = jnp.asarray(x)
    times = jnp.asarray(times, x.dtype)
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(
            f"{name}: times must be a 1-D grid of at least 2 decreasing times, got shape "
            f"{times.shape}."
        )
    if not isinstance(times, jax.core.Tracer):
        values = np.asarray(times)
        if not (np.all(np.isfinite(values)) and np.all(values >= 0)):
            raise ValueError(f"{name}: times must be finite and >= 0, got {values}.")
        if np.any(np.diff(values) >= 0):
            raise ValueError(f"{name}: times must be strictly decreasing, got {values}.")
    times = eqx.error_if(
        times, jnp.any(jnp.diff(times) >= 0), f"{name}: times must be strictly decreasing."
    )
    if needs_key and key is None:
        raise ValueError(f"{name}: this sampler is stochastic; pass key=jax.random.key(...).")
    return x, times


def _coeffs(schedule: AbstractSchedule, t):
    return schedule.mean_coeff(t), schedule.std(t)


def _transfer(schedule, x, eps, t, t_next, eta, noise):
    """DDIM transfer ``x_t → x_{t'}`` with predicted ε and stochasticity η (generic m, s)."""
    m, s = _coeffs(schedule, t)
    m_n, s_n = _coeffs(schedule, t_next)
    x0 = (x - s * eps) / m
    # Posterior std of q(x_{t'} | x_t, x_0): s' √(s² − (m/m')² s'²) / s.
    post = s_n * jnp.sqrt(jnp.maximum(s**2 - (m / m_n) ** 2 * s_n**2, 0.0)) / s
    sig = eta * post
    return m_n * x0 + jnp.sqrt(jnp.maximum(s_n**2 - sig**2, 0.0)) * eps + sig * noise


def ddim_sample(
    score_fn: ScoreFn,
    schedule: AbstractSchedule,
    x_init: Float[ArrayLike, "*shape"],
    times: Float[ArrayLike, " n1"],
    *,
    eta: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> Float[Array, "*shape"]:
    """DDIM (Song et al.) with stochasticity ``eta`` (0: deterministic, 1: DDPM ancestral)."""
    x, times = _check("ddim_sample", schedule, x_init, times, key, eta != 0.0)
    key = jax.random.key(0) if key is None else key
    keys = jax.random.split(key, times.shape[0] - 1)

    def step(x, inp):
        t, t_next, k = inp
        eps = -schedule.std(t) * score_fn(x, t)
        noise = jax.random.normal(k, x.shape, x.dtype)
        return _transfer(schedule, x, eps, t, t_next, eta, noise), None

    x, _ = jax.lax.scan(step, x, (times[:-1], times[1:], keys))
    return x


def ddpm_sample(
    score_fn: ScoreFn,
    schedule: AbstractSchedule,
    x_init: Float[ArrayLike, "*shape"],
    times: Float[ArrayLike, " n1"],
    *,
    key: PRNGKeyArray,
) -> Float[Array, "*shape"]:
    """DDPM ancestral sampling on a (strided) grid: draws from ``q(x_{t'} | x_t, x̂_0)``."""
    return ddim_sample(score_fn, schedule, x_init, times, eta=1.0, key=key)


# Adams–Bashforth weights (newest first) used by PLMS; orders 1–3 start the multistep.
_AB = jnp.array(
    [
        [1.0, 0.0, 0.0, 0.0],
        [3.0 / 2, -1.0 / 2, 0.0, 0.0],
        [23.0 / 12, -16.0 / 12, 5.0 / 12, 0.0],
        [55.0 / 24, -59.0 / 24, 37.0 / 24, -9.0 / 24],
    ]
)


def pndm_sample(
    score_fn: ScoreFn,
    schedule: AbstractSchedule,
    x_init: Float[ArrayLike, "*shape"],
    times: Float[ArrayLike, " n1"],
) -> Float[Array, "*shape"]:
    """PNDM / PLMS (Liu et al. 2022): 4th-order pseudo-linear multistep on ε, DDIM transfer.

    ``ε' = (55 ε_k − 59 ε_{k−1} + 37 ε_{k−2} − 9 ε_{k−3})/24``; the first three steps use
    Adams–Bashforth orders 1–3 (not the original pseudo Runge–Kutta warm-up), so ``n`` steps cost
    exactly ``n`` score evaluations.
    """
    x, times = _check("pndm_sample", schedule, x_init, times, None, False)
    hist0 = jnp.zeros((4, *x.shape), x.dtype)

    def step(carry, inp):
        x, hist = carry
        t, t_next, i = inp
        eps = -schedule.std(t) * score_fn(x, t)
        hist = jnp.concatenate([eps[None], hist[:-1]], axis=0)
        w = _AB.astype(x.dtype)[jnp.minimum(i, 3)]
        eps_comb = jnp.tensordot(w, hist, axes=1)
        x = _transfer(schedule, x, eps_comb, t, t_next, 0.0, jnp.zeros_like(x))
        return (x, hist), None

    n = times.shape[0] - 1
    (x, _), _ = jax.lax.scan(step, (x, hist0), (times[:-1], times[1:], jnp.arange(n)))
    return x


def euler_maruyama_sample(
    score_fn: ScoreFn,
    schedule: AbstractSchedule,
    x_init: Float[ArrayLike, "*shape"],
    times: Float[ArrayLike, " n1"],
    *,
    key: PRNGKeyArray,
) -> Float[Array, "*shape"]:
    """Reverse SDE ``dx = [f x − g² ∇log p_t] dt + g dW̄`` by Euler–Maruyama."""
    x, times = _check("euler_maruyama_sample", schedule, x_init, times, key, True)
    keys = jax.random.split(key, times.shape[0] - 1)

    def step(x, inp):
        t, t_next, k = inp
        dt = t_next - t  # negative
        f = schedule.drift_coeff(t)
        g2 = schedule.diffusion2(t)
        drift = f * x - g2 * score_fn(x, t)
        noise = jax.random.normal(k, x.shape, x.dtype)
        return x + drift * dt + jnp.sqrt(g2 * -dt) * noise, None

    x, _ = jax.lax.scan(step, x, (times[:-1], times[1:], keys))
    return x


def probability_flow_sample(
    score_fn: ScoreFn,
    schedule: AbstractSchedule,
    x_init: Float[ArrayLike, "*shape"],
    times: Float[ArrayLike, " n1"],
    *,
    method: str = "heun",
) -> Float[Array, "*shape"]:
    """Probability-flow ODE ``dx/dt = f x − ½ g² ∇log p_t`` by ``"euler"`` or ``"heun"``.

    Heun falls back to Euler on a final step that ends at ``t = 0`` (the score is not defined
    there); Heun costs two evaluations per step otherwise.
    """
    if method not in ("euler", "heun"):
        raise ValueError(
            f"probability_flow_sample: method must be 'euler' or 'heun', got {method!r}."
        )
    x, times = _check("probability_flow_sample", schedule, x_init, times, None, False)

    def velocity(x, t):
        return schedule.drift_coeff(t) * x - 0.5 * schedule.diffusion2(t) * score_fn(x, t)

    def step(x, inp):
        t, t_next = inp
        dt = t_next - t
        v = velocity(x, t)
        x_euler = x + v * dt
        if method == "euler":
            return x_euler, None
        safe_next = jnp.where(t_next > 0, t_next, t)
        v_next = velocity(x_euler, safe_next)
        x_heun = x + 0.5 * (v + v_next) * dt
        return jnp.where(t_next > 0, x_heun, x_euler), None

    x, _ = jax.lax.scan(step, x, (times[:-1], times[1:]))
    return x

"""Exact empirical score and modern Hopfield identities (MATH.md §5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesflow_nets import diffusion as D


def _patterns(equal_norm: bool, n=6, d=5):
    xi = jax.random.normal(jax.random.key(0), (n, d), jnp.float64)
    if equal_norm:
        xi = 2.0 * xi / jnp.linalg.norm(xi, axis=1, keepdims=True)
    return xi


@pytest.mark.parametrize(
    "schedule", [D.VESchedule(), D.VPSchedule(), D.DDPMSchedule()], ids=lambda s: type(s).__name__
)
def test_empirical_score_is_gradient_of_log_density(schedule, x64):
    data = _patterns(False)
    x = jnp.linspace(-1.0, 1.0, 5)
    t = schedule.t_min + 0.05 * (schedule.t_max - schedule.t_min)
    grad = jax.grad(lambda v: D.empirical_log_density(schedule, data, v, t))(x)
    np.testing.assert_allclose(D.empirical_score(schedule, data, x, t), grad, rtol=1e-10)


def test_empirical_log_density_matches_mixture(x64):
    from scipy.stats import multivariate_normal

    ve = D.VESchedule()
    data = _patterns(False)
    x, t = jnp.full(5, 0.2), 0.8
    ref = np.log(
        np.mean(
            [multivariate_normal(np.asarray(y), t * np.eye(5)).pdf(np.asarray(x)) for y in data]
        )
    )
    np.testing.assert_allclose(D.empirical_log_density(ve, data, x, t), ref, rtol=1e-10)


@pytest.mark.parametrize("equal_norm", [True, False])
def test_hopfield_energy_identity(equal_norm, x64):
    """−σ² log p_σ(x) = E_Hopfield(x; β = 1/σ²) + const, the same const for every x."""
    ve = D.VESchedule()
    xi = _patterns(equal_norm)
    sigma2 = 0.37
    c = D.hopfield_energy_constant(xi, sigma2, equal_norm=equal_norm)
    for k in range(4):
        x = jax.random.normal(jax.random.key(10 + k), (5,), jnp.float64)
        lhs = -sigma2 * D.empirical_log_density(ve, xi, x, sigma2)
        rhs = D.hopfield_energy(xi, x, 1.0 / sigma2, equal_norm=equal_norm) + c
        np.testing.assert_allclose(lhs, rhs, rtol=1e-11)


@pytest.mark.parametrize("equal_norm", [True, False])
def test_hopfield_update_is_one_euler_step(equal_norm, x64):
    """x + σ² ∇log p_σ(x) = Ξᵀ softmax(βΞx [− β‖ξ‖²/2]) with β = 1/σ²."""
    ve = D.VESchedule()
    xi = _patterns(equal_norm)
    sigma2 = 0.5
    x = jnp.array([0.3, -0.1, 0.8, 0.0, -0.5])
    step = x + sigma2 * D.empirical_score(ve, xi, x, sigma2)
    np.testing.assert_allclose(
        D.hopfield_update(xi, x, 1.0 / sigma2, equal_norm=equal_norm), step, rtol=1e-11
    )
    # and the Hopfield update is a gradient step on its energy: x − ∇E(x)·1 (step size 1)
    grad_e = jax.grad(lambda v: D.hopfield_energy(xi, v, 1.0 / sigma2, equal_norm=equal_norm))(x)
    np.testing.assert_allclose(x - grad_e, step, rtol=1e-11)


def test_hopfield_retrieves_stored_pattern():
    """At low temperature a corrupted ±1 pattern is recalled in one step."""
    xi = jnp.sign(jax.random.normal(jax.random.key(0), (10, 64)))
    probe = xi[3].at[:8].multiply(-1.0)
    out = D.hopfield_update(xi, probe, 1.0, equal_norm=True)
    np.testing.assert_allclose(out, xi[3], atol=1e-5)


def test_empirical_errors():
    # The public functions are shape-annotated (jaxtyping rejects these under pytest); the
    # boundary check below is what users without runtime type checking get.
    from bayesflow_nets.diffusion._empirical import _check_data

    with pytest.raises(ValueError, match=r"data must have shape \(N, d\)"):
        _check_data(jnp.zeros(3), jnp.zeros(3), "empirical_score")
    with pytest.raises(ValueError, match=r"hopfield_update: x has shape \(2,\)"):
        _check_data(jnp.zeros((4, 3)), jnp.zeros(2), "hopfield_update")


def test_capacity_one_step_score_recall_equals_hopfield():
    """With the exact score, one DDIM step from t_s is the Hopfield update at β = 1/t_s
    (t_s = 4f = 0.8 by default)."""
    ve = D.VESchedule()

    def exact(key, patterns):
        return lambda x, t: D.empirical_score(ve, patterns, x, t)

    curve = D.capacity_curve(
        jax.random.key(0),
        exact,
        dim=32,
        pattern_counts=[4, 1024],
        flip_fraction=0.2,
        num_probes=32,
        num_steps=1,
    )
    np.testing.assert_allclose(curve.score_accuracy, curve.hopfield_accuracy)
    # few patterns are recalled perfectly; far beyond capacity recall fails
    assert curve.hopfield_accuracy[0] == 1.0
    assert curve.hopfield_accuracy[-1] < curve.hopfield_accuracy[0]


def test_corrupt_flips_exact_count():
    xi = D.random_patterns(jax.random.key(0), 5, 40)
    probes = D.corrupt(jax.random.key(1), xi, 0.25)
    np.testing.assert_array_equal(np.sum(np.asarray(probes != xi), axis=1), 10)
    with pytest.raises(ValueError, match=r"flip_fraction must be in \[0, 0.5\)"):
        D.corrupt(jax.random.key(1), xi, 0.6)

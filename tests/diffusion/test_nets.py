"""Score networks: shapes, time dependence, jit/vmap, errors, and that DSM training learns."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bayesflow_nets import diffusion as D


def test_mlp_shapes_and_time_dependence():
    net = D.ScoreMLP(jax.random.key(0), 6, width=32, depth=2)
    x = jnp.ones(6)
    out = net(x, 0.3)
    assert out.shape == (6,)
    assert not np.allclose(out, net(x, 0.9))
    batched = jax.jit(jax.vmap(net))(jnp.ones((5, 6)), jnp.linspace(0.1, 1.0, 5))
    np.testing.assert_allclose(batched[2], net(x, jnp.linspace(0.1, 1.0, 5)[2]), rtol=1e-5)


@pytest.mark.slow  # ~25 s of XLA compilation on 2 shared cores
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_unet_shapes(shape):
    net = D.ScoreUNet(jax.random.key(0), shape, channels=(8, 16, 16), time_dim=16)
    x = jax.random.normal(jax.random.key(1), shape)
    f = eqx.filter_jit(net)
    out = f(x, jnp.asarray(0.5))
    assert out.shape == shape
    assert np.all(np.isfinite(out))
    assert not np.allclose(out, f(x, jnp.asarray(50.0)))


def test_net_errors():
    with pytest.raises(ValueError, match="dim must be an int"):
        D.ScoreMLP(jax.random.key(0), 0)
    net = D.ScoreMLP(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        net(jnp.ones(4), 0.5)
    with pytest.raises(ValueError, match="divisible by 4"):
        D.ScoreUNet(jax.random.key(0), (1, 10, 10))
    with pytest.raises(ValueError, match="dim must be an even int"):
        D.sinusoidal_embedding(0.5, 3)


@pytest.mark.slow
def test_dsm_training_learns_gaussian_score():
    """A small MLP trained by DSM on N(μ, diag) data recovers the exact score at moderate t."""
    vp = D.VPSchedule()
    mu = jnp.array([1.0, -0.5])
    sd = jnp.array([0.5, 1.5])
    data = mu + sd * jax.random.normal(jax.random.key(0), (4096, 2))
    net = D.ScoreMLP(jax.random.key(1), 2, width=64, depth=2)
    opt = optax.adam(3e-3)
    state = opt.init(eqx.filter(net, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(net, state, key):
        k1, k2 = jax.random.split(key)
        idx = jax.random.randint(k1, (256,), 0, data.shape[0])
        loss, g = eqx.filter_value_and_grad(lambda n: D.dsm_loss(n, vp, data[idx], k2))(net)
        upd, state = opt.update(g, state, net)
        return eqx.apply_updates(net, upd), state, loss

    for key in jax.random.split(jax.random.key(2), 800):
        net, state, _ = step(net, state, key)
    score = D.as_score_fn(net, vp, "eps")
    t = 0.3
    m, s2 = vp.mean_coeff(t), vp.variance(t)
    xs = m * mu + jnp.sqrt(m**2 * sd**2 + s2) * jax.random.normal(jax.random.key(3), (200, 2))
    exact = -(xs - m * mu) / (m**2 * sd**2 + s2)
    learned = jax.vmap(lambda x: score(x, t))(xs)
    rel = jnp.linalg.norm(learned - exact) / jnp.linalg.norm(exact)
    assert rel < 0.15, rel

"""AEF tests: bijection round trip and log-det vs jax.jacobian, IS/IWAE oracles, bits/dim, bad input."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import bayesflow_nets.bijectors as bj
from bayesflow_nets import aef

SHAPE = (1, 4, 4)
D = 16
LATENT = 2


def _perturb(module, key, scale=0.05):
    leaves, treedef = jax.tree_util.tree_flatten(module)
    keys = jax.random.split(key, len(leaves))
    new = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        if eqx.is_inexact_array(leaf)
        else leaf
        for leaf, k in zip(leaves, keys)
    ]
    return jax.tree_util.tree_unflatten(treedef, new)


@functools.cache
def _flows(seed):
    """Core flow g (one affine MAF layer) and prior flow h (triangular affine), built once."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    g = bj.masked_autoregressive_flow(
        k1, base_dist=bj.StandardNormal((LATENT,)), flow_layers=1, nn_width=8
    )
    h = bj.TriangularAffine(jnp.array([0.3, -0.2]), jnp.array([[1.2, 0.0], [0.4, 0.8]]))
    return g, h


def _images(seed, n=3):
    rng = np.random.default_rng(seed)  # numpy: no eager JAX ops to compile
    return jnp.asarray(rng.uniform(0.02, 0.98, (n,) + SHAPE))


@eqx.filter_jit
def _partition_model(key, g, h):
    # Built inside one jit: a single compilation instead of one per eager op.
    k = jax.random.split(key, 4)
    model = aef.PartitionAEF(
        aef.MLPEncoder(k[0], SHAPE, LATENT, width=8, depth=1),
        aef.MLPDecoder(k[1], SHAPE, LATENT, width=8, depth=1),
        SHAPE,
        LATENT,
        mask="center",
        core_flow=g,
        prior_flow=h,
    )
    model = _perturb(model, k[3])
    pre = bj.init_actnorm(model.preprocess, jax.random.uniform(k[3], (8,) + SHAPE))
    return eqx.tree_at(lambda m: m.preprocess, model, pre)


def test_partition_round_trip_and_log_det(x64):
    model = _partition_model(jax.random.key(0), *_flows(10))
    assert model.encoder.mlp.layers[0].weight.dtype == jnp.float64
    x = _images(1, 2)

    @eqx.filter_jit
    def run(model, x):
        z0, e, ld = model.encode_and_log_det(x)
        x_rec = model.decode(z0, e)

        def flat(v):
            z0_, e_, _ = model.encode_and_log_det(v.reshape(SHAPE))
            return jnp.concatenate([z0_, e_])

        logabs = jnp.linalg.slogdet(jax.jacfwd(flat)(x[0].ravel()))[1]
        return z0, e, ld, x_rec, logabs, model.log_prob(x)

    z0, e, ld, x_rec, logabs, lp = (np.asarray(a) for a in run(model, x))
    assert z0.shape == (2, LATENT) and e.shape == (2, D - LATENT)
    np.testing.assert_allclose(x_rec, x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ld[0], logabs, rtol=1e-9, atol=1e-9)
    normal = -0.5 * (np.sum(z0**2, -1) + np.sum(e**2, -1)) - 0.5 * D * np.log(2 * np.pi)
    np.testing.assert_allclose(lp, normal + ld, rtol=1e-10, atol=1e-10)


@eqx.filter_jit
def _expansion_model(key, g, h):
    k = jax.random.split(key, 5)
    model = aef.ExpansionAEF(
        aef.MLPEncoder(k[0], SHAPE, LATENT, width=8, depth=1),
        aef.MLPDecoder(k[1], SHAPE, LATENT, width=8, depth=1),
        SHAPE,
        LATENT,
        key=k[4],
        core_flow=g,
        prior_flow=h,
    )
    return _perturb(model, k[3])


def test_expansion_round_trip_and_log_det(x64):
    model = _expansion_model(jax.random.key(2), *_flows(10))
    x = _images(3, 2)
    w = jnp.asarray(np.random.default_rng(4).normal(size=(2, LATENT)))

    @eqx.filter_jit
    def run(model, x, w):
        z0, e, ld = model.encode_and_log_det(x, w)
        x_rec, w_rec = model.decode(z0, e)

        def flat(v):
            z0_, e_, _ = model.encode_and_log_det(v[:D].reshape(SHAPE), v[D:])
            return jnp.concatenate([z0_, e_])

        v = jnp.concatenate([x[0].ravel(), w[0]])
        logabs = jnp.linalg.slogdet(jax.jacfwd(flat)(v))[1]
        return ld, x_rec, w_rec, logabs

    ld, x_rec, w_rec, logabs = run(model, x, w)
    np.testing.assert_allclose(x_rec, x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(w_rec, w, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ld[0], logabs, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- IS / IWAE oracles
# Linear-Gaussian AEF on (1, 2, 2) images (D = 4), d = 2: encoder μ = A y, σ = s_e; decoder
# μ = B z, σ = s_d; no preprocessing, no flows. Then p(x) = N(0, B Bᵀ + s_d² I) in closed form.
# With Bᵀ B = b² I the posterior of z (and of w = (z − A x)/s_e) is isotropic.
LG_SHAPE = (1, 2, 2)


class _LinearEncoder(eqx.Module):
    A: jax.Array
    s: float = eqx.field(static=True)

    def __call__(self, y):
        mu = self.A @ y.ravel()
        return mu, jnp.full_like(mu, self.s)


class _LinearDecoder(eqx.Module):
    B: jax.Array
    s: float = eqx.field(static=True)

    def __call__(self, z):
        mu = (self.B @ z).reshape(LG_SHAPE)
        return mu, jnp.full_like(mu, self.s)


def _linear_gaussian():
    # numpy throughout: the oracle needs no JAX compilation.
    b, s_d, s_e = 1.5, 0.7, 0.4
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 2)))
    B = b * q
    A = np.random.default_rng(1).normal(size=(2, 4))
    post_var = 1.0 / (1.0 + b**2 / s_d**2)  # S = post_var · I
    cov = B @ B.T + s_d**2 * np.eye(4)
    return A, B, s_d, s_e, post_var, cov


def _exact_expansion(key):
    A, B, s_d, s_e, post_var, cov = _linear_gaussian()
    model = aef.ExpansionAEF(
        _LinearEncoder(jnp.asarray(A), s_e), _LinearDecoder(jnp.asarray(B), s_d), LG_SHAPE, 2,
        key=key, preprocess=None,
    )
    # Exact posterior of w: N((S Bᵀ x / s_d² − A x) / s_e, S / s_e²).
    W_exact = (post_var * B.T / s_d**2 - A) / s_e
    model = eqx.tree_at(lambda m: m.W, model, jnp.asarray(W_exact))
    return model, np.sqrt(post_var) / s_e, cov


def _is_estimate(model, x, key, k, scale):
    return eqx.filter_jit(lambda m, xx, kk: m.log_prob_is(xx, kk, k, scale))(model, x, key)


def _draw_x(cov, n, seed):
    x = np.random.default_rng(seed).normal(size=(n, 4)) @ np.linalg.cholesky(cov).T
    return x.reshape((n,) + LG_SHAPE)


def test_is_exact_with_exact_posterior_proposal(x64):
    model, s_exact, cov = _exact_expansion(jax.random.key(0))
    x = _draw_x(cov, 5, 1)
    truth = multivariate_normal(np.zeros(4), cov).logpdf(x.reshape(5, 4))
    for k in (1, 64):
        est = _is_estimate(model, x, jax.random.key(k), k, float(s_exact))
        # Every weight equals p(x): logsumexp = log p + log K, so the −log K term makes it exact.
        np.testing.assert_allclose(est, truth, rtol=1e-10, atol=1e-10)


def test_is_converges_and_log_k_matters(x64):
    model, s_exact, cov = _exact_expansion(jax.random.key(0))
    model = eqx.tree_at(lambda m: m.W, model, jnp.asarray(np.asarray(model.W) + 0.1))  # wrong mean
    x = _draw_x(cov, 4, 2)
    truth = multivariate_normal(np.zeros(4), cov).logpdf(x.reshape(4, 4))
    k, scale = 4096, float(1.5 * s_exact)
    est = _is_estimate(model, x, jax.random.key(3), k, scale)
    np.testing.assert_allclose(est, truth, atol=0.03)
    assert np.all(np.abs(est + np.log(k) - truth) > 8.0)  # omitting −log K is off by log K
    small = _is_estimate(model, x, jax.random.key(4), 1, scale)
    assert np.mean(np.abs(small - truth)) > 3 * np.mean(np.abs(est - truth))


def test_iwae_exact_with_exact_posterior(x64):
    A, B, s_d, _, post_var, cov = _linear_gaussian()

    class PosteriorEncoder(eqx.Module):
        M: jax.Array

        def __call__(self, y):
            mu = self.M @ y.ravel()
            return mu, jnp.full_like(mu, np.sqrt(post_var))

    vae = aef.VAE(
        PosteriorEncoder(jnp.asarray(post_var * B.T / s_d**2)), _LinearDecoder(jnp.asarray(B), s_d),
        LG_SHAPE, 2,
        preprocess=None,
    )
    x = _draw_x(cov, 3, 5)
    truth = multivariate_normal(np.zeros(4), cov).logpdf(x.reshape(3, 4))
    iwae = eqx.filter_jit(lambda m, xx, kk: m.log_prob_iwae(xx, kk, 16))
    np.testing.assert_allclose(iwae(vae, x, jax.random.key(1)), truth, rtol=1e-10, atol=1e-10)
    elbo = eqx.filter_jit(lambda m, xx, kk: m.elbo(kk, xx))
    np.testing.assert_allclose(elbo(vae, x, jax.random.key(0)), truth, rtol=1e-10, atol=1e-10)


def test_iwae_exact_with_prior_flow(x64):
    # Prior z = h(z₀) = m + c·z₀ (an affine prior flow): z ~ N(m, c²I), x ~ N(Bm, c²BBᵀ + s_d²I).
    # BᵀB = b²I, so the exact posterior N(v(Bᵀx/s_d² + m/c²), vI) is diagonal and every
    # importance weight equals p(x): the IWAE and the ELBO are exact iff the flow's log-det is used.
    _, B, s_d, _, _, _ = _linear_gaussian()
    m, c = np.array([0.5, -1.0]), 1.7
    b2 = float((B.T @ B)[0, 0])  # the helper's b², read from B rather than restated
    v = 1.0 / (1.0 / c**2 + b2 / s_d**2)

    class PosteriorEncoder(eqx.Module):
        M: jax.Array
        off: jax.Array

        def __call__(self, y):
            mu = self.M @ y.ravel() + self.off
            return mu, jnp.full_like(mu, np.sqrt(v))

    vae = aef.VAE(
        PosteriorEncoder(jnp.asarray(v * B.T / s_d**2), jnp.asarray(v * m / c**2)),
        _LinearDecoder(jnp.asarray(B), s_d),
        LG_SHAPE, 2,
        preprocess=None,
        prior_flow=bj.Affine(jnp.asarray(m), jnp.full(2, c)),
    )
    cov = c**2 * B @ B.T + s_d**2 * np.eye(4)
    x = _draw_x(cov, 3, 6) + (B @ m).reshape(LG_SHAPE)
    truth = multivariate_normal(B @ m, cov).logpdf(x.reshape(3, 4))
    iwae = eqx.filter_jit(lambda mm, xx, kk: mm.log_prob_iwae(xx, kk, 8))
    np.testing.assert_allclose(iwae(vae, x, jax.random.key(1)), truth, rtol=1e-10, atol=1e-10)
    plain = eqx.tree_at(lambda mm: mm.prior_flow, vae, None, is_leaf=lambda n: n is None)
    assert np.all(np.abs(iwae(plain, x, jax.random.key(1)) - truth) > 1e-3)


# --------------------------------------------------------------------------- data helpers
def test_bits_per_dim():
    # Uniform density on [0, 1]^D (log p = 0) costs exactly log2(L) bits per dim.
    np.testing.assert_allclose(aef.bits_per_dim(0.0, 64, 17), np.log2(17), rtol=1e-6)
    np.testing.assert_allclose(
        aef.bits_per_dim(jnp.array([-3.0, 5.0]), 2, 256),
        [(3 + 2 * np.log(256)) / (2 * np.log(2)), (-5 + 2 * np.log(256)) / (2 * np.log(2))],
        rtol=1e-6,
    )


def test_dequantise_and_digits():
    data = aef.load_digits()
    assert data.levels == 17 and data.train.shape[1:] == (1, 8, 8)
    assert len(data.train) + len(data.test) == 1797
    x = aef.dequantise(jax.random.key(0), data.test, 17)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    np.testing.assert_array_equal(np.floor(np.asarray(x) * 17), data.test)


def test_npz_loader(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, size=(10, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "m.npz", x_train=imgs)
    data = aef.load_npz_images(tmp_path / "m.npz", "x_train", test_prop=0.2)
    assert data.train.shape == (8, 1, 4, 4) and data.levels == 256
    np.savez(tmp_path / "bad.npz", x=imgs.astype(np.float32) / 255.0 + 0.5)
    with pytest.raises(ValueError, match="integer levels"):
        aef.load_npz_images(tmp_path / "bad.npz")


def test_masks():
    center = aef.core_mask((1, 8, 8), 4, "center")[0]
    assert center[3:5, 3:5].all() and center.sum() == 4
    corner = aef.core_mask((1, 8, 8), 4, "corner")[0]
    assert corner[:2, :2].all() and corner.sum() == 4
    sixteen = aef.core_mask((1, 8, 8), 16, "center")[0]
    assert sixteen[2:6, 2:6].all()


def test_actnorm_data_init():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (200, 2, 3, 3))
    y = jax.jit(lambda x: jax.vmap(bj.ActNorm((2, 3, 3), (2, 1, 1)).from_data(x).transform)(x))(x)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 2, 3)), 1.0, atol=1e-4)


# --------------------------------------------------------------------------- bad input
def _zeros_like_module(ctor, *args):
    """Build a module abstractly and fill it with numpy zeros: no compilation (bad-input tests)."""
    abstract = eqx.filter_eval_shape(ctor, *args)
    return jax.tree_util.tree_map(
        lambda s: np.zeros(s.shape, s.dtype) if isinstance(s, jax.ShapeDtypeStruct) else s,
        abstract,
    )


def _nets(key, channels=1, latent=LATENT):
    shape = (channels, 4, 4)
    return (_zeros_like_module(aef.MLPEncoder, key, shape, latent, 8, 1),
            _zeros_like_module(aef.MLPDecoder, key, shape, latent, 8, 1))


def test_bad_mask_size():
    enc, dec = _nets(jax.random.key(0))
    mask = np.zeros(SHAPE, bool)
    mask[0, 0, :3] = True
    with pytest.raises(ValueError, match="3 core .True. entries but latent_dim=2"):
        aef.PartitionAEF(enc, dec, SHAPE, LATENT, mask=mask)
    with pytest.raises(ValueError, match="argument 'mask' has shape"):
        aef.PartitionAEF(enc, dec, SHAPE, LATENT, mask=np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="argument 'mask' must be one of"):
        aef.PartitionAEF(enc, dec, SHAPE, LATENT, mask="spiral")


def test_bad_channels_and_latent():
    enc3 = _zeros_like_module(aef.ConvEncoder, jax.random.key(0), (3, 4, 4), LATENT)
    _, dec = _nets(jax.random.key(1))
    with pytest.raises(ValueError, match="argument 'encoder' .ConvEncoder. cannot take an input"):
        aef.PartitionAEF(enc3, dec, SHAPE, LATENT)
    enc, _ = _nets(jax.random.key(0), latent=3)
    with pytest.raises(ValueError, match="argument 'encoder' must map an input"):
        aef.ExpansionAEF(enc, dec, SHAPE, LATENT, key=jax.random.key(0))


def test_bad_images():
    enc, dec = _nets(jax.random.key(0))
    model = aef.PartitionAEF(enc, dec, SHAPE, LATENT)
    with pytest.raises(ValueError, match="declared data range"):
        model.log_prob(jnp.full((2,) + SHAPE, 3.0))
    with pytest.raises(ValueError, match="trailing dimensions must equal"):
        model.log_prob(jnp.full((2, 3, 4, 4), 0.5))
    with pytest.raises(ValueError, match="integer levels in \\{0, …, 16\\}"):
        aef.fit_dequantised(jax.random.key(0), model, jnp.full((10,) + SHAPE, 20.0), 17)
    with pytest.raises(ValueError, match="expected \\(n,\\) \\+ \\(1, 4, 4\\)"):
        aef.fit_dequantised(jax.random.key(0), model, jnp.zeros((10, 3, 4, 4)), 17)
    with pytest.raises(ValueError, match="argument 'latent_dim'"):
        aef.PartitionAEF(enc, dec, SHAPE, 16)


@pytest.mark.slow
def test_training_improves_digits_likelihood():
    data = aef.load_digits()
    k1, k2 = jax.random.split(jax.random.key(0))
    shape = (1, 8, 8)
    model = aef.PartitionAEF(aef.ConvEncoder(k1, shape, 4), aef.ConvDecoder(k2, shape, 4), shape, 4)
    res = aef.fit_dequantised(jax.random.key(1), model, data.train, 17, max_epochs=8,
                              batch_size=128, learning_rate=2e-3, progress=False)
    assert res.losses["val"][-1] < res.losses["val"][0] - 5.0
    x = aef.dequantise(jax.random.key(2), data.test, 17)
    bpd = float(jnp.mean(aef.bits_per_dim(res.model.log_prob(x), 64, 17)))
    assert bpd < np.log2(17)  # better than the uniform density

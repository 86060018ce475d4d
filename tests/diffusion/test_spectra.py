"""Score-Jacobian spectra, matrix-free top-k, gaps and intrinsic dimension (MATH.md §5)."""

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from bayesflow_nets import diffusion as D


def linear_score(cov, schedule=None):
    """Exact score of x₀ ~ N(0, C) (C may be singular) under VE, or under ``schedule``."""
    d = cov.shape[0]

    def score(x, t):
        if schedule is None:
            c = cov + t * jnp.eye(d, dtype=cov.dtype)
        else:
            c = schedule.mean_coeff(t) ** 2 * cov + schedule.variance(t) * jnp.eye(
                d, dtype=cov.dtype
            )
        return -jnp.linalg.solve(c, x)

    return score


def manifold(d=12, m=4, seed=0):
    f = jax.random.normal(jax.random.key(seed), (d, m), jnp.float64)
    cov = f @ f.T
    lam = jnp.linalg.eigvalsh(cov)[-m:]
    return f, cov, lam


@pytest.mark.parametrize("t", [1e-3, 0.1, 1.0, 30.0])
def test_linear_manifold_spectrum_ve(t, x64):
    """t·J has eigenvalues {−t/(λ_i+t)} ∪ {−1}^(d−m) (exact)."""
    d, m = 12, 4
    f, cov, lam = manifold(d, m)
    x = f @ jnp.ones(m)
    spec = D.score_jacobian_spectrum(linear_score(cov), x, t)
    np.testing.assert_allclose(spec, D.linear_manifold_spectrum(lam, d, t), rtol=1e-9, atol=1e-12)


def test_linear_manifold_spectrum_vp_reads_tau(x64):
    d, m = 10, 3
    f, cov, lam = manifold(d, m, seed=1)
    vp = D.VPSchedule()
    for t in (0.01, 0.3, 0.9):
        spec = D.score_jacobian_spectrum(linear_score(cov, vp), f @ jnp.ones(m), t, vp)
        oracle = D.linear_manifold_spectrum(lam, d, vp.tau(t))
        np.testing.assert_allclose(spec, oracle, rtol=1e-9, atol=1e-12)


def test_gap_and_intrinsic_dimension_exact(x64):
    d, m = 12, 4
    f, cov, _ = manifold(d, m)
    score = linear_score(cov)
    x = f @ jnp.array([0.3, -1.0, 0.2, 0.5])
    spec = D.score_jacobian_spectrum(score, x, 1e-4)
    gap = D.spectral_gap(spec)
    assert int(gap.index) == d - m
    assert int(D.gap_intrinsic_dimension(spec)) == m
    res = D.stanczuk_intrinsic_dimension(score, x, 1e-4, jax.random.key(0), D.VESchedule())
    assert int(res.dimension) == m
    assert res.singular_values.shape == (d,)


def test_spectral_gap_simple():
    gap = D.spectral_gap(jnp.array([0.0, -1.0, -0.95, -0.1, -1.0]))
    assert int(gap.index) == 3
    np.testing.assert_allclose(gap.size, 0.85, rtol=1e-6)
    with pytest.raises(ValueError, match="at least 2 values"):
        D.spectral_gap(jnp.array([1.0]))


def test_full_jacobian_chunked_matches_jacfwd(x64):
    data = jax.random.normal(jax.random.key(0), (9, 7), jnp.float64)
    ve = D.VESchedule()
    score = lambda x, t: D.empirical_score(ve, data, x, t)
    x = jnp.linspace(-1, 1, 7)
    ref = jax.jacfwd(score)(x, 0.4)
    for chunk in (None, 3):  # all at once (jacfwd-like) and lax.map in chunks
        np.testing.assert_allclose(
            D.score_jacobian(score, x, 0.4, chunk_size=chunk), ref, rtol=1e-12
        )
    # image-shaped inputs are flattened
    img_score = lambda x, t: score(x.reshape(7), t).reshape(7, 1)
    np.testing.assert_allclose(
        D.score_jacobian(img_score, x.reshape(7, 1), 0.4, chunk_size=2), ref, rtol=1e-12
    )
    with pytest.raises(ValueError, match="chunk_size must be None or an int >= 1"):
        D.score_jacobian(score, x, 0.4, chunk_size=0)


def _distinct_spectrum_score(d=64, t=0.05):
    """s(x) = −(C + tI)⁻¹ x with a precomputed inverse (the test is about Lanczos, not solves)."""
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(3), (d, d), jnp.float64))
    lam = 0.02 * 1.3 ** jnp.arange(d)  # top of |J| = 1/(λ+t) well separated
    prec = (q / (lam + t)) @ q.T
    return (lambda x, _t: -prec @ x), prec


@pytest.mark.parametrize("method", ["lanczos", "rsvd"])
def test_matrix_free_topk_equals_full_svd(method, x64):
    d, k, t = 64, 6, 0.05
    score, _ = _distinct_spectrum_score(d)
    x = jnp.ones(d)
    full = jnp.linalg.svd(D.score_jacobian(score, x, t), compute_uv=False)[:k]
    top = D.score_jacobian_topk(score, x, t, jax.random.key(0), k, method=method)
    np.testing.assert_allclose(jnp.abs(top), full, rtol=1e-8)


def test_lanczos_vectors_are_eigenvectors(x64):
    a = jax.random.normal(jax.random.key(0), (30, 30), jnp.float64)
    a = a + a.T
    vals, vecs = D.lanczos_eigh(
        lambda v: a @ v, 30, jax.random.key(1), 4, num_iter=30, dtype=jnp.float64
    )
    ref = np.linalg.eigvalsh(np.asarray(a))
    np.testing.assert_allclose(np.sort(np.abs(vals)), np.sort(np.abs(ref))[-4:], rtol=1e-9)
    np.testing.assert_allclose(a @ vecs, vecs * vals, atol=1e-8)
    with pytest.raises(ValueError, match="k must be an int in"):
        D.lanczos_eigh(lambda v: a @ v, 30, jax.random.key(1), 0)


def test_two_variance_t_max(x64):
    """The intermediate gap t/(γ₊(σ₂)+t) − t/(γ₋(σ₁)+t) peaks at √(γ₋(σ₁) γ₊(σ₂))."""
    d = 16
    lam1 = jnp.array([4.0, 5.0, 6.0])  # σ₁ block, γ₋(σ₁) = 4
    lam2 = jnp.array([0.05, 0.07, 0.1])  # σ₂ block, γ₊(σ₂) = 0.1
    cov = jnp.diag(jnp.concatenate([lam1, lam2, jnp.zeros(d - 6)]))
    score = linear_score(cov)
    times = jnp.geomspace(1e-3, 1e3, 301)
    spectra = D.spectra_over_time(score, jnp.zeros(d), times)
    gaps = spectra[:, d - 3] - spectra[:, d - 4]  # between the two blocks
    np.testing.assert_allclose(gaps, D.two_variance_gap(times, 4.0, 0.1), rtol=1e-9, atol=1e-12)
    t_max = D.two_variance_t_max(4.0, 0.1)
    np.testing.assert_allclose(t_max, np.sqrt(0.4))
    assert abs(np.log(times[int(jnp.argmax(gaps))]) - np.log(t_max)) <= np.log(1e6) / 300
    # stationary point exactly at t_max
    slope = jax.grad(lambda t: D.two_variance_gap(t, 4.0, 0.1))(t_max)
    np.testing.assert_allclose(slope, 0.0, atol=1e-12)
    # phases: trivial at large t, coverage in between, consolidation at small t
    phases = D.spectral_phases(spectra, trivial_tol=0.05)
    assert phases[0] == "consolidation" and phases[-1] == "trivial"
    assert phases[int(jnp.argmax(gaps))] == "coverage"


def test_marchenko_pastur_edges():
    d, m = 800, 200
    f = jax.random.normal(jax.random.key(0), (d, m)) / np.sqrt(d)
    eig = np.linalg.eigvalsh(np.asarray(f.T @ f))
    lo, hi = D.marchenko_pastur_edges(1.0, m / d)
    np.testing.assert_allclose([eig.min(), eig.max()], [lo, hi], atol=0.06)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_symmetric_eigvalsh_solvers_agree_under_jit_and_vmap(dtype, request):
    if dtype == jnp.float64:
        request.getfixturevalue("x64")
    a = jax.random.normal(jax.random.key(0), (3, 20, 20), dtype)
    sym = 0.5 * (a + jnp.swapaxes(a, -1, -2))
    ref = np.linalg.eigvalsh(np.asarray(sym, np.float64))
    tol = 1e-4 if dtype == jnp.float32 else 1e-11
    for solver in ("auto", "jax", "lapack"):
        f = jax.jit(jax.vmap(lambda s, solver=solver: D.symmetric_eigvalsh(s, solver=solver)))
        out = f(sym)
        assert out.dtype == dtype
        np.testing.assert_allclose(out, ref, atol=tol, rtol=tol)
    with pytest.raises(ValueError, match="'solver' must be 'auto', 'jax' or 'lapack'"):
        D.symmetric_eigvalsh(sym[0], solver="numpy")


def test_spectrum_lapack_matches_jax_solver():
    net = D.ScoreMLP(jax.random.key(0), 16, width=32, depth=2)
    x = jax.random.normal(jax.random.key(1), (16,))
    a = D.score_jacobian_spectrum(net, x, 0.1, solver="lapack")
    b = D.score_jacobian_spectrum(net, x, 0.1, solver="jax")
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind,solver", [("eig", "jax"), ("eig", "lapack"), ("svd", "jax")])
def test_low_rank_spectrum_equals_dense(kind, solver, x64):
    # J = A B of rank 6 in d = 20: the factored route gives the dense spectrum, zeros included.
    a = jax.random.normal(jax.random.key(0), (20, 6))
    b = jax.random.normal(jax.random.key(1), (6, 20))
    jac = np.asarray(a @ b)
    ref = (
        np.linalg.eigvalsh(0.5 * (jac + jac.T))
        if kind == "eig"
        else np.linalg.svd(jac, compute_uv=False)
    )
    out = jax.jit(lambda a, b: D.low_rank_spectrum(a, b, kind=kind, solver=solver))(a, b)
    assert out.shape == (20,)
    if solver == "lapack":  # the host call under vmap, and NaN in gives NaN out
        batch = jax.vmap(lambda a: D.low_rank_spectrum(a, b, solver=solver))(jnp.stack([a, a]))
        np.testing.assert_allclose(batch[1], ref, atol=1e-11)
        bad = D.low_rank_spectrum(a.at[0, 0].set(jnp.nan), b, solver=solver)
        assert np.isnan(np.asarray(bad)).any()
    np.testing.assert_allclose(out, ref, atol=1e-11)
    # Our ValueError, or jaxtyping's shape check first when the test run enables it.
    with pytest.raises((ValueError, jaxtyping.TypeCheckError)):
        D.low_rank_spectrum(a, b.T)


@pytest.mark.parametrize("kind", ["eig", "svd"])
def test_score_mlp_factored_spectrum_matches_dense(kind, x64):
    # Width 8 < d/2 = 12: "auto" takes the factored route; same values as the dense Jacobian.
    net = D.ScoreMLP(jax.random.key(0), 24, width=8, depth=2)
    x = jax.random.normal(jax.random.key(1), (24,))
    a, b = net.jacobian_factors(x, 0.3)
    np.testing.assert_allclose(a @ b, jax.jacfwd(lambda v: net(v, 0.3))(x), atol=1e-12)
    sched = D.VPSchedule()
    auto = D.score_jacobian_spectrum(net, x, 0.3, sched, kind=kind)
    dense = D.score_jacobian_spectrum(net, x, 0.3, sched, kind=kind, low_rank=False)
    np.testing.assert_allclose(auto, dense, atol=1e-12)
    grid = D.spectra_over_time(net, x, jnp.array([0.1, 0.5]), kind=kind, low_rank=True)
    np.testing.assert_allclose(
        grid[1], D.score_jacobian_spectrum(net, x, 0.5, kind=kind, low_rank=False), atol=1e-12
    )


@pytest.mark.parametrize("kind", ["eig", "svd"])
def test_score_mlp_core_route_with_reused_basis(kind, x64):
    # J = U H V: the fixed outer factors and the (x, t) core give the network's Jacobian, and a
    # basis computed once serves every point and time (also inside spectra_over_time).
    net = D.ScoreMLP(jax.random.key(2), 30, width=6, depth=3)
    u, v = net.jacobian_outer()
    basis = D.outer_basis(u, v, kind=kind)
    for seed, t in [(1, 0.3), (2, 2.0)]:
        x = jax.random.normal(jax.random.key(seed), (30,))
        h = net.jacobian_core(x, t)
        np.testing.assert_allclose(u @ h @ v, jax.jacfwd(lambda w, t=t: net(w, t))(x), atol=1e-12)
        with_basis = jax.jit(
            lambda x, b, t=t: D.score_jacobian_spectrum(net, x, t, kind=kind, basis=b)
        )(x, basis)
        dense = D.score_jacobian_spectrum(net, x, t, kind=kind, low_rank=False)
        np.testing.assert_allclose(with_basis, dense, atol=1e-12)
    grid = D.spectra_over_time(net, x, jnp.array([0.7, 2.0]), kind=kind)
    np.testing.assert_allclose(grid[1], dense, atol=1e-12)
    other = "svd" if kind == "eig" else "eig"
    with pytest.raises(ValueError, match="argument 'basis' was built for"):
        D.score_jacobian_spectrum(net, x, 0.3, kind=other, basis=basis)
    with pytest.raises(ValueError, match="core_spectrum: the basis is for a core H of shape"):
        D.core_spectrum(basis, jnp.eye(5), 30)
    with pytest.raises(ValueError, match="core_spectrum: the basis is for a core H of shape"):
        D.core_spectrum(basis, h, 5)


def test_low_rank_true_needs_factors():
    def score(v, t):
        return -v / (1.0 + t)

    with pytest.raises(ValueError, match="jacobian_factors"):
        D.score_jacobian_spectrum(score, jnp.ones(4), 0.1, low_rank=True)
    with pytest.raises(ValueError, match="'low_rank' must be"):
        D.score_jacobian_spectrum(score, jnp.ones(4), 0.1, low_rank="yes")
    np.testing.assert_allclose(
        D.score_jacobian_spectrum(score, jnp.ones(4), 0.1), np.full(4, -0.1 / 1.1), rtol=1e-6
    )


def test_lapack_eigvalsh_nan_input_gives_nan():
    sym = jnp.full((300, 300), jnp.nan)
    assert np.isnan(np.asarray(D.symmetric_eigvalsh(sym, solver="lapack"))).all()

"""Score-Jacobian spectra, gaps and intrinsic dimension (MATH.md §5).

Linear manifold ``x₀ = F z`` (``C = F Fᵀ`` of rank ``m``) under VE: ``J = −(C + tI)⁻¹``, so the
normalised ``t·J`` has eigenvalues ``−t/(λ_i + t)`` on the manifold and ``−1`` (``d − m`` times)
off it. For a general schedule the normalisation is ``s²(t)·J`` and ``t`` reads ``τ(t)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from ._schedules import AbstractSchedule

__all__ = [
    "score_jacobian",
    "score_jacobian_spectrum",
    "symmetric_eigvalsh",
    "low_rank_spectrum",
    "OuterBasis",
    "outer_basis",
    "core_spectrum",
    "spectra_over_time",
    "lanczos_eigh",
    "randomized_svd",
    "score_jacobian_topk",
    "spectral_gap",
    "SpectralGap",
    "gap_intrinsic_dimension",
    "stanczuk_intrinsic_dimension",
    "StanczukResult",
    "spectral_phases",
    "linear_manifold_spectrum",
    "marchenko_pastur_edges",
    "two_variance_t_max",
    "two_variance_gap",
]

ScoreFn = Callable[[Array, Array], Array]


def _flat_score(score_fn: ScoreFn, x: Array, t) -> tuple[Callable, Array]:
    shape = x.shape

    def f(v):
        return jnp.ravel(score_fn(v.reshape(shape), t))

    return f, jnp.ravel(x)


def score_jacobian(
    score_fn: ScoreFn,
    x: Float[ArrayLike, "*shape"],
    t: ArrayLike,
    *,
    chunk_size: int | None = 64,
) -> Float[Array, "d d"]:
    """Full Jacobian ``J_ij = ∂s_i/∂x_j`` (``x`` flattened) by forward mode in column chunks.

    ``chunk_size`` columns are pushed through ``jvp`` at once (``None``: all ``d`` at once, i.e.
    ``jax.jacfwd``); memory grows with the chunk, time with ``d / chunk_size`` sequential passes.
    """
    x = jnp.asarray(x)
    if chunk_size is not None and not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(
            f"score_jacobian: chunk_size must be None or an int >= 1, got {chunk_size!r}."
        )
    f, xf = _flat_score(score_fn, x, t)
    d = xf.shape[0]
    eye = jnp.eye(d, dtype=xf.dtype)

    def column(v):
        return jax.jvp(f, (xf,), (v,))[1]

    if chunk_size is None or chunk_size >= d:
        cols = jax.vmap(column)(eye)
    else:
        cols = jax.lax.map(column, eye, batch_size=chunk_size)
    return cols.T


def _lapack_values(s: np.ndarray) -> np.ndarray:
    """LAPACK ``?syevd`` values only, from the lower triangle of a writable Fortran-order ``s``
    (overwritten); NaN out for non-finite input, as ``jnp.linalg.eigvalsh``, not an exception."""
    if not np.isfinite(s).all():
        return np.full(s.shape[:-1], np.nan, dtype=s.dtype)
    vals = scipy.linalg.eigh(
        s, lower=True, eigvals_only=True, driver="evd", check_finite=False, overwrite_a=True
    )
    return np.asarray(vals, dtype=s.dtype)


def _lapack_eigvalsh(s):
    return _lapack_values(np.array(s, order="F"))  # a copy: the callback's buffer is read-only


def _lapack_saddle_eigvalsh(a, b):
    """Eigenvalues of ``[[A, B], [Bᵀ, 0]]``, assembled straight into LAPACK's Fortran layout."""
    a, b = np.asarray(a), np.asarray(b)
    r = a.shape[0]
    s = np.zeros((r + b.shape[1],) * 2, dtype=a.dtype, order="F")
    s[:r, :r] = a
    s[r:, :r] = b.T
    return _lapack_values(s)


def _use_lapack(solver: str, n: int) -> bool:
    if solver not in ("auto", "jax", "lapack"):
        raise ValueError(f"argument 'solver' must be 'auto', 'jax' or 'lapack', got {solver!r}.")
    return solver == "lapack" or (solver == "auto" and jax.default_backend() == "cpu" and n >= 256)


def symmetric_eigvalsh(
    sym: Float[Array, "d d"], *, solver: str = "auto"
) -> Float[Array, " d"]:
    """Eigenvalues (ascending) of a symmetric matrix.

    ``solver="lapack"`` calls LAPACK's values-only driver (``?syevd``, ``jobz='N'``) through
    ``jax.pure_callback``: about 2× faster than ``jnp.linalg.eigvalsh``, which also computes the
    eigenvectors, but not differentiable. ``"jax"``: ``jnp.linalg.eigvalsh`` (differentiable, any
    backend). ``"auto"``: LAPACK on the CPU backend for ``d ≥ 256`` (below that the callback's
    overhead outweighs the saving), JAX otherwise.
    """
    if not _use_lapack(solver, sym.shape[-1]):
        return jnp.linalg.eigvalsh(sym)
    out = jax.ShapeDtypeStruct(sym.shape[:-1], sym.dtype)
    return jax.pure_callback(_lapack_eigvalsh, out, sym, vmap_method="sequential")


def _saddle_eigvalsh(a: Array, b: Array, solver: str) -> Array:
    """Eigenvalues (ascending) of the symmetric ``[[A, B], [Bᵀ, 0]]`` (``A`` symmetric)."""
    n = a.shape[0] + b.shape[1]
    if not _use_lapack(solver, n):
        return jnp.linalg.eigvalsh(jnp.block([[a, b], [b.T, jnp.zeros((b.shape[1],) * 2, a.dtype)]]))
    out = jax.ShapeDtypeStruct((n,), a.dtype)
    return jax.pure_callback(_lapack_saddle_eigvalsh, out, a, b, vmap_method="sequential")


def _insert_zeros(vals: Array, d: int) -> Array:
    """Ascending ``vals`` with ``d − len(vals)`` exact zeros put in order (a gather, not a sort)."""
    n = vals.shape[0]
    k = jnp.sum(vals < 0)
    i = jnp.arange(d)
    src = jnp.clip(jnp.where(i < k, i, i - (d - n)), 0, n - 1)
    return jnp.where((i >= k) & (i < k + d - n), jnp.zeros((), vals.dtype), vals[src])


def _dense_spectrum(jac: Array, kind: str, solver: str) -> Array:
    if kind == "eig":
        return symmetric_eigvalsh(0.5 * (jac + jac.T), solver=solver)
    return jnp.linalg.svd(jac, compute_uv=False)


class OuterBasis(eqx.Module):
    """R factors of the fixed outer factors of ``J = U H V`` (:func:`outer_basis`): ``r`` of
    ``[U, Vᵀ]`` for eigenvalues, or ``r_u``, ``r_v`` of ``U``, ``Vᵀ`` for singular values."""

    kind: str = eqx.field(static=True)
    r: Array | None = None
    r_u: Array | None = None
    r_v: Array | None = None


def _check_kind(fn: str, kind: str) -> None:
    if kind not in ("eig", "svd"):
        raise ValueError(f"{fn}: kind must be 'eig' or 'svd', got {kind!r}.")


def _span(kind: str, r: int) -> int:
    """How many values of a rank-``r`` factored Jacobian's spectrum can be nonzero: the ``2r``
    eigenvalues of its symmetric part, or its ``r`` singular values."""
    return 2 * r if kind == "eig" else r


def outer_basis(
    u: Float[Array, "d r"], v: Float[Array, "r d"], *, kind: str = "eig"
) -> OuterBasis:
    """QR factors of ``J = U H V``'s fixed outer factors, for :func:`core_spectrum`.

    Compute it once per network (e.g. from ``ScoreMLP.jacobian_outer()``) and pass it to
    :func:`score_jacobian_spectrum` at many ``(x, t)``: each point then costs the ``r × r`` core
    and the ``2r × 2r`` eigensolver only (``benchmarks/score_jacobian.py`` times both).
    """
    _check_kind("outer_basis", kind)
    if u.ndim != 2 or v.ndim != 2 or v.shape != (u.shape[1], u.shape[0]):
        raise ValueError(
            f"outer_basis: expected U of shape (d, r) and V of shape (r, d), got "
            f"{u.shape} and {v.shape}."
        )
    if kind == "eig":
        return OuterBasis(kind, r=jnp.linalg.qr(jnp.concatenate([u, v.T], axis=1), mode="r"))
    return OuterBasis(kind, r_u=jnp.linalg.qr(u, mode="r"), r_v=jnp.linalg.qr(v.T, mode="r"))


def core_spectrum(
    basis: OuterBasis, h: Float[Array, "r r"], d: int, *, solver: str = "auto"
) -> Float[Array, " d"]:
    """Spectrum of ``J = U H V`` (``d × d``, rank ≤ ``r``) from ``basis = outer_basis(U, V)``.

    Eigenvalues (``basis.kind == "eig"``, ascending): with ``[U, Vᵀ] = Q R``, ``J + Jᵀ =
    Q (P + Pᵀ) Qᵀ`` where ``P = R[:, :r] H R[:, r:]ᵀ``, so the nonzero eigenvalues are those of
    the ``2r × 2r`` matrix ``½ (P + Pᵀ)`` and the other ``d − 2r`` are exact zeros. Singular
    values (descending): those of ``R_U H R_Vᵀ`` (``r × r``), then ``d − r`` zeros.
    """
    r = basis.r.shape[0] // 2 if basis.kind == "eig" else basis.r_u.shape[0]
    if h.shape != (r, r) or d < _span(basis.kind, r):
        raise ValueError(
            f"core_spectrum: the basis is for a core H of shape ({r}, {r}) and d >= "
            f"{_span(basis.kind, r)}; got H of shape {h.shape} and d = {d}."
        )
    if basis.kind == "eig":
        # R is upper triangular, so P's last r rows are zero: P = [[M, N], [0, 0]] with
        # [M, N] = R[:r, :r] H R[:, r:]ᵀ, and ½ (P + Pᵀ) = [[½ (M + Mᵀ), ½ N], [½ Nᵀ, 0]].
        m, n = jnp.split((basis.r[:r, :r] @ h) @ basis.r[:, r:].T, 2, axis=1)
        return _insert_zeros(_saddle_eigvalsh(0.5 * (m + m.T), 0.5 * n, solver), d)
    vals = jnp.linalg.svd(basis.r_u @ h @ basis.r_v.T, compute_uv=False)
    return jnp.concatenate([vals, jnp.zeros(d - r, vals.dtype)])


def low_rank_spectrum(
    a: Float[Array, "d r"], b: Float[Array, "r d"], *, kind: str = "eig", solver: str = "auto"
) -> Float[Array, " d"]:
    """Spectrum of ``J = A B`` (rank ≤ ``r``) from ``r``-sized problems; the rest are exact zeros.

    ``kind="eig"``: eigenvalues of ``(J + Jᵀ)/2 = ½ C K Cᵀ`` with ``C = [A, Bᵀ] = Q R`` and
    ``K = [[0, I], [I, 0]]``, i.e. those of the ``2r × 2r`` matrix ``½ R K Rᵀ``, ascending.
    ``kind="svd"``: singular values of ``R_A R_Bᵀ`` (``A = Q_A R_A``, ``Bᵀ = Q_B R_B``), descending.
    ``solver``: the ``2r × 2r`` eigensolver, as in :func:`symmetric_eigvalsh`. (This is
    :func:`core_spectrum` with ``H = I``.)
    """
    _check_kind("low_rank_spectrum", kind)
    if a.ndim != 2 or b.ndim != 2 or b.shape != (a.shape[1], a.shape[0]):
        raise ValueError(
            f"low_rank_spectrum: expected A of shape (d, r) and B of shape (r, d), got "
            f"{a.shape} and {b.shape}."
        )
    d, r = a.shape
    if _span(kind, r) >= d:
        return _dense_spectrum(a @ b, kind, solver)
    return core_spectrum(outer_basis(a, b, kind=kind), jnp.eye(r, dtype=a.dtype), d, solver=solver)


def _has_core(score_fn) -> bool:
    """Whether the score's Jacobian comes as ``U H(x, t) V`` (``jacobian_outer``/``_core``)."""
    return hasattr(score_fn, "jacobian_outer") and hasattr(score_fn, "jacobian_core")


def _use_factors(score_fn, x: Array, t, kind: str, low_rank) -> bool:
    if low_rank not in ("auto", True, False):
        raise ValueError(f"argument 'low_rank' must be 'auto', True or False, got {low_rank!r}.")
    factors = getattr(score_fn, "jacobian_factors", None)
    if low_rank is True and factors is None:
        raise ValueError(
            "low_rank=True needs a score_fn with a jacobian_factors(x, t) -> (A, B) method "
            f"(e.g. ScoreMLP); {type(score_fn).__name__} has none."
        )
    if low_rank is False or factors is None or x.ndim != 1:
        return False
    a_shape = jax.eval_shape(factors, x, t)[0].shape
    return low_rank is True or _span(kind, a_shape[1]) < a_shape[0]


def score_jacobian_spectrum(
    score_fn: ScoreFn,
    x: Float[ArrayLike, "*shape"],
    t: ArrayLike,
    schedule: AbstractSchedule | None = None,
    *,
    kind: str = "eig",
    chunk_size: int | None = 64,
    solver: str = "auto",
    low_rank: bool | str = "auto",
    basis: OuterBasis | None = None,
) -> Float[Array, " d"]:
    """Spectrum of ``s²(t)·J`` at ``(x, t)`` (``s² = t`` if no schedule is given: VE).

    ``kind="eig"``: eigenvalues of the symmetric part ``(J + Jᵀ)/2``, ascending (in ``[−1, 0]``
    for an exact score), by ``symmetric_eigvalsh(..., solver=solver)`` (pass ``solver="jax"`` to
    differentiate through it). ``kind="svd"``: singular values, descending. ``low_rank="auto"``:
    a score with ``jacobian_factors`` (``J = A B``, e.g. a :class:`ScoreMLP` narrower than ``d/2``)
    goes through :func:`low_rank_spectrum`, the same values without the ``d × d`` eigensolver;
    one that also has ``jacobian_outer``/``jacobian_core`` (``J = U H V``) through
    :func:`core_spectrum`, with ``basis = outer_basis(*score_fn.jacobian_outer(), kind=kind)``
    (computed here unless passed in: pass it when computing many spectra of one network).
    """
    _check_kind("score_jacobian_spectrum", kind)
    x = jnp.asarray(x)
    if basis is not None and basis.kind != kind:
        raise ValueError(
            f"argument 'basis' was built for kind={basis.kind!r}, the spectrum asks for {kind!r}."
        )
    if _use_factors(score_fn, x, t, kind, low_rank):
        if _has_core(score_fn):
            if basis is None:
                basis = outer_basis(*score_fn.jacobian_outer(), kind=kind)
            vals = core_spectrum(basis, score_fn.jacobian_core(x, t), x.shape[0], solver=solver)
        else:
            vals = low_rank_spectrum(*score_fn.jacobian_factors(x, t), kind=kind, solver=solver)
    else:
        jac = score_jacobian(score_fn, x, t, chunk_size=chunk_size)
        vals = _dense_spectrum(jac, kind, solver)
    scale = jnp.asarray(t, vals.dtype) if schedule is None else schedule.variance(t)
    return scale * vals


def spectra_over_time(
    score_fn: ScoreFn,
    x: Float[ArrayLike, "*shape"],
    times: Float[ArrayLike, " n_t"],
    schedule: AbstractSchedule | None = None,
    *,
    kind: str = "eig",
    chunk_size: int | None = 64,
    solver: str = "auto",
    low_rank: bool | str = "auto",
) -> Float[Array, "n_t d"]:
    """:func:`score_jacobian_spectrum` at every ``t`` of a grid (rows follow ``times``); a score
    with ``jacobian_outer`` has its :func:`outer_basis` computed once for the whole grid."""
    times = jnp.asarray(times)
    x = jnp.asarray(x)
    basis = None
    if _has_core(score_fn) and _use_factors(score_fn, x, times[0], kind, low_rank):
        basis = outer_basis(*score_fn.jacobian_outer(), kind=kind)
    return jax.lax.map(
        lambda t: score_jacobian_spectrum(
            score_fn, x, t, schedule, kind=kind, chunk_size=chunk_size, solver=solver,
            low_rank=low_rank, basis=basis,
        ),
        times,
    )


# --------------------------------------------------------------------------- matrix-free
def lanczos_eigh(
    matvec: Callable[[Array], Array],
    dim: int,
    key: PRNGKeyArray,
    k: int,
    *,
    num_iter: int | None = None,
    dtype=jnp.float32,
) -> tuple[Float[Array, " k"], Float[Array, "dim k"]]:
    """Top-``k`` (largest ``|λ|``) eigenpairs of a symmetric operator by Lanczos.

    Full re-orthogonalisation (twice) against all previous vectors; ``num_iter`` Krylov steps
    (default ``min(dim, max(2k + 20, 3k))``). Returns eigenvalues sorted by decreasing ``|λ|``
    and the Ritz vectors as columns.
    """
    if not (isinstance(k, int) and 1 <= k <= dim):
        raise ValueError(f"lanczos_eigh: k must be an int in [1, dim={dim}], got {k!r}.")
    m = min(dim, max(2 * k + 20, 3 * k)) if num_iter is None else int(num_iter)
    if not k <= m <= dim:
        raise ValueError(f"lanczos_eigh: num_iter must be in [k={k}, dim={dim}], got {m}.")
    v0 = jax.random.normal(key, (dim,), dtype)
    v0 = v0 / jnp.linalg.norm(v0)
    basis = jnp.zeros((m + 1, dim), dtype).at[0].set(v0)
    alphas = jnp.zeros(m, dtype)
    betas = jnp.zeros(m, dtype)
    tiny = jnp.finfo(dtype).eps

    def body(j, carry):
        basis, alphas, betas = carry
        v = basis[j]
        w = matvec(v)
        a = jnp.dot(w, v)
        for _ in range(2):  # full re-orthogonalisation, twice ("twice is enough")
            w = w - basis.T @ (basis @ w)
        b = jnp.linalg.norm(w)
        nxt = jnp.where(b > tiny * 10, w / jnp.maximum(b, tiny), 0.0)
        return basis.at[j + 1].set(nxt), alphas.at[j].set(a), betas.at[j].set(b)

    basis, alphas, betas = jax.lax.fori_loop(0, m, body, (basis, alphas, betas))
    tri = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    theta, s = jnp.linalg.eigh(tri)
    order = jnp.argsort(-jnp.abs(theta))[:k]
    return theta[order], basis[:m].T @ s[:, order]


def randomized_svd(
    matvec: Callable[[Array], Array],
    rmatvec: Callable[[Array], Array],
    dim: int,
    key: PRNGKeyArray,
    k: int,
    *,
    oversample: int = 10,
    power_iters: int = 2,
    dtype=jnp.float32,
) -> tuple[Float[Array, "dim k"], Float[Array, " k"], Float[Array, "k dim"]]:
    """Top-``k`` SVD ``(U, S, Vᵀ)`` of a square operator from ``J v``, ``Jᵀ u`` (Halko et al.)."""
    if not (isinstance(k, int) and 1 <= k <= dim):
        raise ValueError(f"randomized_svd: k must be an int in [1, dim={dim}], got {k!r}.")
    p = min(dim, k + oversample)
    omega = jax.random.normal(key, (p, dim), dtype)
    mv = jax.vmap(matvec)
    rmv = jax.vmap(rmatvec)
    q, _ = jnp.linalg.qr(mv(omega).T)  # (dim, p)
    for _ in range(power_iters):
        z, _ = jnp.linalg.qr(rmv(q.T).T)
        q, _ = jnp.linalg.qr(mv(z.T).T)
    b = rmv(q.T)  # rows: Jᵀ q_i, i.e. B = Qᵀ J
    ub, s, vt = jnp.linalg.svd(b, full_matrices=False)
    return (q @ ub)[:, :k], s[:k], vt[:k]


def score_jacobian_topk(
    score_fn: ScoreFn,
    x: Float[ArrayLike, "*shape"],
    t: ArrayLike,
    key: PRNGKeyArray,
    k: int,
    *,
    method: str = "lanczos",
    **kwargs,
) -> Float[Array, " k"]:
    """Top-``k`` of the score Jacobian without forming it, by ``jvp``/``vjp`` only.

    ``method="lanczos"``: eigenvalues of the symmetric part by decreasing ``|λ|``;
    ``method="rsvd"``: singular values (descending).
    """
    x = jnp.asarray(x)
    f, xf = _flat_score(score_fn, x, t)
    d = xf.shape[0]
    _, vjp_fn = jax.vjp(f, xf)

    def jv(v):
        return jax.jvp(f, (xf,), (v,))[1]

    def jtv(u):
        return vjp_fn(u)[0]

    if method == "lanczos":
        vals, _ = lanczos_eigh(
            lambda v: 0.5 * (jv(v) + jtv(v)), d, key, k, dtype=xf.dtype, **kwargs
        )
        return vals
    if method == "rsvd":
        return randomized_svd(jv, jtv, d, key, k, dtype=xf.dtype, **kwargs)[1]
    raise ValueError(f"score_jacobian_topk: method must be 'lanczos' or 'rsvd', got {method!r}.")


# --------------------------------------------------------------------------- gaps & dimension
class SpectralGap(NamedTuple):
    """``index``: number of sorted values below the largest consecutive jump; ``size``: the jump."""

    index: Int[Array, ""]
    size: Float[Array, ""]


def spectral_gap(values: Float[ArrayLike, " d"]) -> SpectralGap:
    """Largest consecutive gap of the ascending-sorted values (MATH.md §5)."""
    values = jnp.sort(jnp.asarray(values))
    if values.shape[0] < 2:
        raise ValueError(f"spectral_gap: need at least 2 values, got {values.shape[0]}.")
    diffs = jnp.diff(values)
    i = jnp.argmax(diffs)
    return SpectralGap(i + 1, diffs[i])


def gap_intrinsic_dimension(normalised_eigs: Float[ArrayLike, " d"]) -> Int[Array, ""]:
    """``k̂ = d − #(eigenvalues of s²J below the largest gap)``; the ≈−1 values are normal."""
    normalised_eigs = jnp.asarray(normalised_eigs)
    return normalised_eigs.shape[0] - spectral_gap(normalised_eigs).index


class StanczukResult(NamedTuple):
    dimension: Int[Array, ""]
    singular_values: Float[Array, " d"]


def stanczuk_intrinsic_dimension(
    score_fn: ScoreFn,
    x0: Float[ArrayLike, " d"],
    t: ArrayLike,
    key: PRNGKeyArray,
    schedule: AbstractSchedule,
    *,
    num_samples: int | None = None,
) -> StanczukResult:
    """Stanczuk et al.: SVD of centred scores at ``K`` perturbations of ``x0`` (MATH.md §5).

    ``x⁽ⁱ⁾ = m(t) x0 + s(t) ε_i`` (``K = 4d`` by default), scores stacked and centred; the
    singular values split at the largest gap into ``d − k`` normal directions and ``k`` tangent.
    """
    x0 = jnp.asarray(x0)
    if x0.ndim != 1:
        raise ValueError(
            f"stanczuk_intrinsic_dimension: x0 must be one point (d,), got {x0.shape}."
        )
    d = x0.shape[0]
    n = 4 * d if num_samples is None else int(num_samples)
    keys = jax.random.split(key, n)
    xs = jax.vmap(lambda k: schedule.marginal_sample(k, x0, t)[0])(keys)
    scores = jax.vmap(lambda x: score_fn(x, t))(xs)
    scores = scores - jnp.mean(scores, axis=0)
    sv = jnp.linalg.svd(scores, compute_uv=False)
    sv = jnp.concatenate([sv, jnp.zeros(d - sv.shape[0], sv.dtype)]) if sv.shape[0] < d else sv
    # Ascending sort: the k small (tangent) values lie below the largest gap, d − k normal above.
    return StanczukResult(spectral_gap(sv).index, sv)


def spectral_phases(spectra: Float[ArrayLike, "n_t d"], *, trivial_tol: float = 0.05) -> list[str]:
    """Label each row of normalised eigen-spectra (times ascending) as a phase (MATH.md §5).

    ``"trivial"``: every value within ``trivial_tol`` of −1; ``"consolidation"``: the largest gap
    has the index it has at the smallest time (the final ``d − m`` gap); else ``"coverage"``.
    """
    spectra = np.asarray(spectra)
    final_index = int(spectral_gap(spectra[0]).index)
    out = []
    for row in spectra:
        if np.max(row) < -1.0 + trivial_tol:
            out.append("trivial")
        elif int(spectral_gap(row).index) == final_index:
            out.append("consolidation")
        else:
            out.append("coverage")
    return out


# --------------------------------------------------------------------------- closed forms
def linear_manifold_spectrum(
    cov_eigs: Float[ArrayLike, " m"], d: int, t: ArrayLike
) -> Float[Array, " d"]:
    """Exact ascending spectrum of ``t·J`` under VE: ``{−t/(λ_i+t)} ∪ {−1}^(d−m)`` (MATH.md §5)."""
    cov_eigs = jnp.asarray(cov_eigs)
    m = cov_eigs.shape[0]
    if m > d:
        raise ValueError(f"linear_manifold_spectrum: need m <= d, got m={m}, d={d}.")
    on = -t / (cov_eigs + t)
    return jnp.sort(jnp.concatenate([on, -jnp.ones(d - m, on.dtype)]))


def marchenko_pastur_edges(s2: ArrayLike, alpha: ArrayLike) -> tuple[Array, Array]:
    """``γ± = s²(1 ± √α)²`` for ``C = F Fᵀ``, ``F_ij ~ N(0, s²/d)``, ``α = m/d`` (MATH.md §5)."""
    s2 = jnp.asarray(s2, float)
    r = jnp.sqrt(jnp.asarray(alpha, float))
    return s2 * (1 - r) ** 2, s2 * (1 + r) ** 2


def two_variance_gap(t: ArrayLike, gamma_minus_1: ArrayLike, gamma_plus_2: ArrayLike) -> Array:
    """Intermediate gap ``t/(γ₊(σ₂)+t) − t/(γ₋(σ₁)+t)`` between two variance blocks."""
    return t / (gamma_plus_2 + t) - t / (gamma_minus_1 + t)


def two_variance_t_max(gamma_minus_1: ArrayLike, gamma_plus_2: ArrayLike) -> Array:
    """``t_max = √(γ₋(σ₁) γ₊(σ₂))`` maximises :func:`two_variance_gap` (MATH.md §5)."""
    return jnp.sqrt(jnp.asarray(gamma_minus_1, float) * jnp.asarray(gamma_plus_2, float))

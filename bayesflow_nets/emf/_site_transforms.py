"""Site transforms: bijections ε ↦ u pushing N(0, 1) to a NumPyro site's prior (MATH.md §1).

Every map acts on the site's **unconstrained** value ``u`` (NumPyro ``biject_to(support)``):
``z = F⁻¹(Φ(ε))`` is followed by ``u = T⁻¹(z)`` and the log-derivative is
``log φ(ε) − log p(z) − log|T'(u)|``, so a standard-normal ε gives exactly the site's density in
unconstrained space ("Constrained sites" in MATH.md §1).

One registry, :data:`SITE_TRANSFORM_RULES`, maps distributions to maps; rules are tried in order
and the first match builds the map. Classes deliberately left out are listed in
:data:`UNSUPPORTED_DISTRIBUTIONS` with the reason; a meta-test checks that every continuous NumPyro
distribution is in exactly one of the two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import log_ndtr, ndtr, ndtri
from jax.scipy.stats import norm
from numpyro.distributions import constraints, transforms as ntransforms
from numpyro.distributions.transforms import biject_to
from numpyro.distributions.truncated import (
    DoublyTruncatedPowerLaw,
    LeftTruncatedDistribution,
    LeftTruncatedGamma,
    LowerTruncatedPowerLaw,
    RightTruncatedDistribution,
    RightTruncatedGamma,
    TruncatedPolyaGamma,
    TwoSidedTruncatedDistribution,
    TwoSidedTruncatedGamma,
)
from numpyro.distributions.util import sum_rightmost

from ._solve import monotone_inverse

# --------------------------------------------------------------------------------------------
# Site maps: built at trace time from a distribution whose parameters may be tracers.
# --------------------------------------------------------------------------------------------


def _gate_logs(gate_logit):
    return jax.nn.log_sigmoid(gate_logit), jax.nn.log_sigmoid(-gate_logit)


class SiteMap(ABC):
    """A bijection on one site's unconstrained value (any batch shape), plus its gated form.

    ``forward(eps) -> (u, log|det du/dε|)`` and ``inverse(u) -> (eps, log|det dε/du|)`` return
    scalar log-determinants summed over the site. The gated forms implement
    ``x = λ f(ε) + (1 − λ) ε`` with ``λ = sigmoid(gate_logit)`` (scalar or per element).
    """

    elementwise: bool = True

    @abstractmethod
    def forward(self, eps): ...

    @abstractmethod
    def inverse(self, u): ...

    @abstractmethod
    def gated_forward(self, eps, gate_logit): ...

    @abstractmethod
    def gated_inverse(self, x, gate_logit): ...


class AffineMap(SiteMap):
    """``u = loc + scale ε`` elementwise (Normal; closed-form gate of MATH.md §1)."""

    def __init__(self, loc, scale):
        self.loc = loc
        self.scale = scale

    def _full(self, eps):
        return (
            jnp.broadcast_to(self.loc, eps.shape).astype(eps.dtype),
            jnp.broadcast_to(self.scale, eps.shape).astype(eps.dtype),
        )

    def forward(self, eps):
        loc, scale = self._full(eps)
        return loc + scale * eps, jnp.sum(jnp.log(scale))

    def inverse(self, u):
        loc, scale = self._full(u)
        return (u - loc) / scale, -jnp.sum(jnp.log(scale))

    def _gated(self, shape, dtype, gate_logit):
        loc = jnp.broadcast_to(self.loc, shape).astype(dtype)
        scale = jnp.broadcast_to(self.scale, shape).astype(dtype)
        lam = jnp.broadcast_to(jax.nn.sigmoid(gate_logit), shape).astype(dtype)
        return lam * loc, lam * (scale - 1.0) + 1.0

    def gated_forward(self, eps, gate_logit):
        shift, slope = self._gated(eps.shape, eps.dtype, gate_logit)
        return shift + slope * eps, jnp.sum(jnp.log(slope))

    def gated_inverse(self, x, gate_logit):
        shift, slope = self._gated(x.shape, x.dtype, gate_logit)
        return (x - shift) / slope, -jnp.sum(jnp.log(slope))


class TrilMap(SiteMap):
    """``u = loc + L ε`` over the last axis (MVN, any parametrisation; MATH.md §1)."""

    elementwise = False

    def __init__(self, loc, scale_tril):
        self.loc = loc
        self.scale_tril = scale_tril

    def _params(self, shape, dtype):
        k = shape[-1]
        loc = jnp.broadcast_to(self.loc, shape).astype(dtype)
        tril = jnp.broadcast_to(self.scale_tril, shape + (k,)).astype(dtype)
        return loc, tril

    def forward(self, eps):
        loc, tril = self._params(eps.shape, eps.dtype)
        u = loc + jnp.einsum("...ij,...j->...i", tril, eps)
        return u, jnp.sum(jnp.log(jnp.diagonal(tril, axis1=-2, axis2=-1)))

    def inverse(self, u):
        loc, tril = self._params(u.shape, u.dtype)
        eps = solve_triangular(tril, (u - loc)[..., None], lower=True)[..., 0]
        return eps, -jnp.sum(jnp.log(jnp.diagonal(tril, axis1=-2, axis2=-1)))

    def _gated(self, shape, dtype, gate_logit):
        loc, tril = self._params(shape, dtype)
        lam = jnp.broadcast_to(jax.nn.sigmoid(gate_logit), shape).astype(dtype)
        eye = jnp.eye(shape[-1], dtype=dtype)
        mat = lam[..., :, None] * tril + (1.0 - lam)[..., :, None] * eye
        return lam * loc, mat

    def gated_forward(self, eps, gate_logit):
        shift, mat = self._gated(eps.shape, eps.dtype, gate_logit)
        x = shift + jnp.einsum("...ij,...j->...i", mat, eps)
        return x, jnp.sum(jnp.log(jnp.diagonal(mat, axis1=-2, axis2=-1)))

    def gated_inverse(self, x, gate_logit):
        shift, mat = self._gated(x.shape, x.dtype, gate_logit)
        eps = solve_triangular(mat, (x - shift)[..., None], lower=True)[..., 0]
        return eps, -jnp.sum(jnp.log(jnp.diagonal(mat, axis1=-2, axis2=-1)))


class MonotoneMap(SiteMap):
    """An elementwise increasing map given by ``fwd(eps) -> (u, log u'(ε))`` and its inverse
    ``inv(u) -> (eps, log ε'(u))``. The gated inverse is a bracketed root search (MATH.md §1)."""

    def __init__(self, fwd: Callable, inv: Callable):
        self.fwd = fwd
        self.inv = inv

    def forward(self, eps):
        u, ld = self.fwd(eps)
        return u, jnp.sum(ld)

    def inverse(self, u):
        eps, ld = self.inv(u)
        return eps, jnp.sum(ld)

    def _gated_elem(self, eps, gate_logit):
        log_lam, log_1m = _gate_logs(gate_logit)
        lam = jnp.exp(log_lam)
        u, ld = self.fwd(eps)
        x = lam * u + (1.0 - lam) * eps
        # keep λ = 1 exact (f may saturate in the far tails where (1 − λ)ε is 0·finite)
        x = jnp.where(log_1m == -jnp.inf, u, x)
        return x, jnp.logaddexp(log_lam + ld, log_1m)

    def gated_forward(self, eps, gate_logit):
        x, ld = self._gated_elem(eps, gate_logit)
        return x, jnp.sum(ld)

    def gated_inverse(self, x, gate_logit):
        # Root search over u = f(ε), not ε: x = λu + (1 − λ) f⁻¹(u) is increasing in u and
        # calls only ``inv`` (a CDF), where ``fwd`` may itself be a root search (numerically
        # inverted CDFs, Dirichlet sticks). Where ``inv`` saturates (|ε| ≳ 8 in float64) a
        # gate below ~1e-3 cannot reach such x; λ = 0 is exact (x = ε).
        log_lam, log_1m = _gate_logs(gate_logit)
        lam = jnp.exp(log_lam)
        u = monotone_inverse(lambda v: lam * v + (1.0 - lam) * self.inv(v)[0], x)
        eps, ld_inv = self.inv(u)
        # log dx/dε = log(λ f'(ε) + 1 − λ), with log f'(ε) = −log ε'(u)
        ld = jnp.logaddexp(log_lam - ld_inv, log_1m)
        identity = log_lam == -jnp.inf
        eps, ld = jnp.where(identity, x, eps), jnp.where(identity, 0.0, ld)
        return eps, -jnp.sum(ld)


class GenericMap(SiteMap):
    """A non-elementwise bijection with scalar log-det (no closed-form or monotone gate)."""

    elementwise = False

    def __init__(self, fwd: Callable, inv: Callable, description: str):
        self.fwd = fwd
        self.inv = inv
        self.description = description

    def forward(self, eps):
        return self.fwd(eps)

    def inverse(self, u):
        return self.inv(u)

    def gated_forward(self, eps, gate_logit):
        raise NotImplementedError(
            f"gating is not available for {self.description} (its site map is neither "
            "affine nor elementwise); use an ungated StructuredLayer (gated=False)."
        )

    gated_inverse = gated_forward


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def _clip_prob(p):
    tiny = jnp.finfo(p.dtype).tiny
    return jnp.clip(p, tiny, 1.0 - jnp.finfo(p.dtype).epsneg)


def _support_sign(t) -> float:
    sign = _concrete_sign([t])
    if sign is None:
        raise NotImplementedError(f"cannot determine the monotonicity of {t!r}")
    return sign


def _quantile_map(d, cdf_inverse: Callable) -> MonotoneMap:
    """u = T⁻¹(Q(Φ(±ε))) with ``Q = cdf_inverse``; the sign makes u increasing in ε when
    ``T = biject_to(support)`` is decreasing (e.g. ``less_than``); log-derivative from the density.
    """
    t = biject_to(d.support)
    sign = _support_sign(t)

    def fwd(eps):
        z = cdf_inverse(_clip_prob(ndtr(sign * eps)))
        u = t.inv(z)
        ld = norm.logpdf(eps) - d.log_prob(z) - t.log_abs_det_jacobian(u, z)
        return u, ld

    def inv(u):
        z = t(u)
        eps = sign * ndtri(_clip_prob(d.cdf(z)))
        ld = norm.logpdf(eps) - d.log_prob(z) - t.log_abs_det_jacobian(u, z)
        return eps, -ld

    return MonotoneMap(fwd, inv)


def _build_normal(d, name):
    return AffineMap(d.loc, d.scale)


def _build_mvn(d, name):
    return TrilMap(d.loc, d.scale_tril)


def _build_random_walk(d, name):
    # x = cumsum(scale ε) = scale · (lower-triangular ones) ε: a triangular map on the walk
    steps = d.event_shape[-1]
    ones = jnp.tril(jnp.ones((steps, steps)))
    return TrilMap(0.0, jnp.asarray(d.scale)[..., None, None] * ones)


class IdentityMap(SiteMap):
    """``u = ε``: the map for a site the layer does not embed (its prior is not used)."""

    elementwise = True

    def forward(self, eps):
        return eps, jnp.zeros((), eps.dtype)

    def inverse(self, u):
        return u, jnp.zeros((), u.dtype)

    def gated_forward(self, eps, gate_logit):
        return self.forward(eps)

    def gated_inverse(self, x, gate_logit):
        return self.inverse(x)


def _build_uniform(d, name):
    # z = a + (b − a)Φ(ε) and biject_to(interval) = a + (b − a)·sigmoid(u) ⇒ u = logit Φ(ε).
    def fwd(eps):
        lp, lq = log_ndtr(eps), log_ndtr(-eps)
        return jnp.broadcast_to(lp - lq, eps.shape), norm.logpdf(eps) - lp - lq

    def inv(u):
        eps = ndtri(_clip_prob(jax.nn.sigmoid(u)))
        lp, lq = log_ndtr(eps), log_ndtr(-eps)
        return eps, -(norm.logpdf(eps) - lp - lq)

    return MonotoneMap(fwd, inv)


def _build_quantile(d, name):
    return _quantile_map(d, d.icdf)


def _build_numerical_cdf(d, name):
    """Bracketed root search of cdf(T(u)) = Φ(±ε) in unconstrained space (MATH.md §1)."""
    t = biject_to(d.support)
    sign = _support_sign(t)

    def solve(p):
        # G(u) = Φ⁻¹-free, increasing in u: cdf(T(u)) for increasing T, 1 − cdf(T(u)) otherwise
        if sign > 0:
            return monotone_inverse(lambda u: d.cdf(t(u)), p)
        return monotone_inverse(lambda u: 1.0 - d.cdf(t(u)), p)

    def fwd(eps):
        u = solve(_clip_prob(ndtr(eps)))
        z = t(u)
        return u, norm.logpdf(eps) - d.log_prob(z) - t.log_abs_det_jacobian(u, z)

    def inv(u):
        z = t(u)
        eps = sign * ndtri(_clip_prob(d.cdf(z)))
        return eps, -(norm.logpdf(eps) - d.log_prob(z) - t.log_abs_det_jacobian(u, z))

    return MonotoneMap(fwd, inv)


def _build_dirichlet(d, name):
    """Stick-breaking: v_i ~ Beta(α_i, Σ_{j>i} α_j) independent; NumPyro's stick-breaking
    coordinate is u_i = logit(v_i) + log(K − 1 − i), so the map is elementwise and exact."""
    conc = d.concentration
    tail = jnp.flip(jnp.cumsum(jnp.flip(conc, -1), -1), -1)[..., 1:]  # Σ_{j>i} α_j
    a = conc[..., :-1]
    k1 = conc.shape[-1] - 1
    offset = jnp.log(k1 - jnp.arange(k1)).astype(conc.dtype)

    def cdf(v):
        return jax.scipy.special.betainc(a, tail, v)

    def fwd(eps):
        p = _clip_prob(ndtr(eps))
        logit_v = monotone_inverse(lambda s: cdf(jax.nn.sigmoid(s)), p)
        v = jax.nn.sigmoid(logit_v)
        lp = dist.Beta(a, tail).log_prob(v)
        ld = norm.logpdf(eps) - lp - jax.nn.log_sigmoid(logit_v) - jax.nn.log_sigmoid(-logit_v)
        return logit_v + offset, ld

    def inv(u):
        logit_v = u - offset
        v = jax.nn.sigmoid(logit_v)
        lp = dist.Beta(a, tail).log_prob(v)
        eps = ndtri(_clip_prob(cdf(v)))
        ld = norm.logpdf(eps) - lp - jax.nn.log_sigmoid(logit_v) - jax.nn.log_sigmoid(-logit_v)
        return eps, -ld

    return MonotoneMap(fwd, inv)


def _build_improper(d, name):
    # Flat prior: no push-forward exists; the identity in unconstrained space (MATH.md §1 choice).
    return AffineMap(0.0, 1.0)


def _is_exp_to_positive(d) -> bool:
    return (
        len(d.transforms) == 1
        and type(d.transforms[0]) is ntransforms.ExpTransform
        and d.base_dist.support is constraints.real
        and type(biject_to(d.support)) is ntransforms.ExpTransform
    )


def _build_transformed(d, name):
    """Base map, then the distribution's transforms, then T⁻¹ of the site's support."""
    base = site_map(d.base_dist, name)
    if _is_exp_to_positive(d):  # LogNormal-type: u = base value, keeps the closed-form gate
        return base
    t_base = _strip_independent(biject_to(d.base_dist.support))
    t_site = _strip_independent(biject_to(d.support))
    chain = [_strip_independent(tr) for tr in d.transforms]

    def total(ld):
        return ld if elementwise else jnp.sum(ld)

    def post(u_base):
        z = t_base(u_base)
        ld = total(t_base.log_abs_det_jacobian(u_base, z))
        for tr in chain:
            z_new = tr(z)
            ld = ld + total(tr.log_abs_det_jacobian(z, z_new))
            z = z_new
        u = t_site.inv(z)
        return u, ld - total(t_site.log_abs_det_jacobian(u, z))

    def pre(u):
        z = t_site(u)
        ld = total(t_site.log_abs_det_jacobian(u, z))  # log|dz/du|
        for tr in reversed(chain):
            z_old = tr.inv(z)
            ld = ld - total(tr.log_abs_det_jacobian(z_old, z))
            z = z_old
        u_base = t_base.inv(z)
        return u_base, ld - total(t_base.log_abs_det_jacobian(u_base, z))

    elementwise = (
        base.elementwise
        and all(tr.domain.event_dim == 0 and tr.codomain.event_dim == 0 for tr in chain)
        and t_base.domain.event_dim == 0
        and t_site.domain.event_dim == 0
    )
    sign = _concrete_sign(chain + [t_base, t_site]) if elementwise else None
    if sign is None:
        desc = f"site {name!r} ({type(d).__name__})"

        def gfwd(eps):
            u_base, ld0 = base.forward(eps)
            u, ld1 = post(u_base)
            return u, ld0 + jnp.sum(ld1)

        def ginv(u):
            u_base, ld1 = pre(u)
            eps, ld0 = base.inverse(u_base)
            return eps, ld0 + jnp.sum(ld1)

        return GenericMap(gfwd, ginv, desc)

    def elem_base(m):
        if isinstance(m, AffineMap):
            return lambda e: (m.loc + m.scale * e, jnp.broadcast_to(jnp.log(m.scale), e.shape))
        return m.fwd

    def elem_base_inv(m):
        if isinstance(m, AffineMap):
            return lambda u: ((u - m.loc) / m.scale, jnp.broadcast_to(-jnp.log(m.scale), u.shape))
        return m.inv

    bfwd, binv = elem_base(base), elem_base_inv(base)

    def fwd(eps):
        e = sign * eps  # a decreasing chain is made increasing by ε ↦ −ε (N(0,1) is symmetric)
        u_base, ld0 = bfwd(e)
        u, ld1 = post(u_base)
        return u, ld0 + ld1

    def inv(u):
        u_base, ld1 = pre(u)
        e, ld0 = binv(u_base)
        return sign * e, ld0 + ld1

    return MonotoneMap(fwd, inv)


def _strip_independent(t):
    while isinstance(t, ntransforms.IndependentTransform):
        t = t.base_transform
    return t


_INCREASING = (
    ntransforms.ExpTransform,
    ntransforms.SigmoidTransform,
    ntransforms.SoftplusTransform,
    ntransforms.IdentityTransform,
)


def _param_sign(value):
    if isinstance(value, jax.core.Tracer):
        return None
    v = np.asarray(value)
    s = float(np.all(v > 0)) - float(np.all(v < 0))
    return None if s == 0.0 else s


def _transform_sign(t):
    """The concrete sign of an elementwise transform's derivative, or None if unknown.

    Evaluated structurally (not via ``Transform.sign``, which is a traced array under jit)."""
    if isinstance(t, ntransforms.IndependentTransform):
        return _transform_sign(t.base_transform)
    if isinstance(t, ntransforms.ComposeTransform):
        return _concrete_sign(t.parts)
    if isinstance(t, _INCREASING):
        return 1.0
    if isinstance(t, ntransforms.AffineTransform):
        return _param_sign(t.scale)
    if isinstance(t, ntransforms.PowerTransform):
        return _param_sign(t.exponent)
    if type(t).__name__ == "_InverseTransform":
        return _transform_sign(t._inv)
    try:
        return _param_sign(t.sign)
    except NotImplementedError:
        return None


def _concrete_sign(chain):
    sign = 1.0
    for tr in chain:
        s = _transform_sign(tr)
        if s is None:
            return None
        sign *= s
    return sign


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


class SiteTransformRule(NamedTuple):
    """One registry entry: the NumPyro classes it claims and the map builder (MATH.md §1)."""

    name: str
    claims: tuple[type, ...]
    build: Callable


_CLOSED_FORM_ICDF = (
    dist.Cauchy,
    dist.HalfCauchy,
    dist.HalfNormal,
    dist.Exponential,
    dist.Laplace,
    dist.Logistic,
    dist.Gumbel,
    dist.Gompertz,
    dist.SoftLaplace,
    dist.AsymmetricLaplace,
    dist.AsymmetricLaplaceQuantile,
    dist.Levy,
    dist.Dagum,
)
_NUMERICAL_CDF = (
    dist.Gamma,
    dist.Chi2,
    dist.Beta,
    dist.BetaProportion,
    dist.StudentT,
    dist.Weibull,
    LeftTruncatedDistribution,
    RightTruncatedDistribution,
    TwoSidedTruncatedDistribution,
    LeftTruncatedGamma,
    RightTruncatedGamma,
    TwoSidedTruncatedGamma,
)

SITE_TRANSFORM_RULES: tuple[SiteTransformRule, ...] = (
    SiteTransformRule("affine", (dist.Normal,), _build_normal),
    SiteTransformRule(
        "triangular-affine", (dist.MultivariateNormal, dist.LowRankMultivariateNormal), _build_mvn
    ),
    SiteTransformRule("random-walk", (dist.GaussianRandomWalk,), _build_random_walk),
    SiteTransformRule("uniform", (dist.Uniform,), _build_uniform),
    SiteTransformRule("dirichlet-stick-breaking", (dist.Dirichlet,), _build_dirichlet),
    SiteTransformRule("improper-identity", (dist.ImproperUniform,), _build_improper),
    SiteTransformRule("quantile", _CLOSED_FORM_ICDF, _build_quantile),
    SiteTransformRule("numerical-cdf", _NUMERICAL_CDF, _build_numerical_cdf),
    SiteTransformRule(
        "transformed",
        (
            dist.TransformedDistribution,
            dist.LogNormal,
            dist.InverseGamma,
            dist.Pareto,
            dist.LogUniform,
        ),
        _build_transformed,
    ),
)
"""The site-transform registry, tried in order; wrappers (Independent, ExpandedDistribution,
MaskedDistribution, plates) are unwrapped first."""

UNSUPPORTED_DISTRIBUTIONS: dict[type, str] = {
    dist.CAR: "conditional autoregressive: no tractable triangular factor exposed",
    dist.CirculantNormal: "FFT-parametrised Gaussian: not implemented",
    dist.EulerMaruyama: "SDE path distribution: not implemented",
    dist.GaussianStateSpace: "not implemented (write it as a loop of Normal sites)",
    dist.HurdleGamma: "mixed discrete/continuous",
    dist.HurdleLogNormal: "mixed discrete/continuous",
    dist.InverseWishart: "matrix-variate: not implemented",
    dist.InverseWishartCholesky: "matrix-variate: not implemented",
    dist.Kumaraswamy: "no CDF in NumPyro",
    dist.LKJ: "matrix-variate: not implemented",
    dist.LKJCholesky: "matrix-variate: not implemented",
    dist.MatrixNormal: "matrix-variate: not implemented",
    dist.MultivariateStudentT: "not implemented",
    dist.RelaxedBernoulliLogits: "relaxed discrete: not implemented",
    dist.Wishart: "matrix-variate: not implemented",
    dist.WishartCholesky: "matrix-variate: not implemented",
    dist.ZeroSumNormal: "constrained-sum Gaussian: not implemented",
    DoublyTruncatedPowerLaw: "not implemented",
    LowerTruncatedPowerLaw: "not implemented",
    TruncatedPolyaGamma: "not implemented",
    dist.FoldedDistribution: "not bijective onto its support from the base",
    dist.Delta: "a point mass has no density to embed",
}
"""Continuous NumPyro distributions without a site transform, with the reason."""


def _find_rule(d) -> SiteTransformRule | None:
    for rule in SITE_TRANSFORM_RULES:
        if type(d) in rule.claims:
            return rule
    return None


def site_map(d, name: str) -> SiteMap:
    """Build the site map for distribution ``d`` at site ``name`` (MATH.md §1).

    Raises ``NotImplementedError`` naming the site for discrete or unsupported distributions.
    """
    if isinstance(d, dist.MaskedDistribution):
        return site_map(d.base_dist, name)
    if isinstance(d, dist.Independent | dist.ExpandedDistribution):
        return site_map(d.base_dist, name)
    if d.support.is_discrete:
        raise NotImplementedError(
            f"site {name!r} is discrete ({type(d).__name__}); embedded-model flows need "
            "continuous latent sites. Marginalise it (e.g. numpyro.contrib.funsor) or make "
            "it observed."
        )
    rule = _find_rule(d)
    if rule is None:
        reason = UNSUPPORTED_DISTRIBUTIONS.get(type(d), "no site transform is registered")
        supported = sorted({c.__name__ for r in SITE_TRANSFORM_RULES for c in r.claims})
        raise NotImplementedError(
            f"site {name!r}: distribution {type(d).__name__} has no site transform ({reason}). "
            f"Supported: {', '.join(supported)}."
        )
    return rule.build(d, name)


def site_map_or_identity(d, name: str, unsupported: str) -> SiteMap:
    """:func:`site_map`, or with ``unsupported="identity"`` an :class:`IdentityMap` for a
    continuous distribution that has no site transform (discrete sites still raise)."""
    try:
        return site_map(d, name)
    except NotImplementedError:
        if unsupported != "identity" or d.support.is_discrete:
            raise
        return IdentityMap()


def site_log_prob_unconstrained(d, u):
    """Reference density of a site in unconstrained space: log p(T(u)) + log|T'(u)|."""
    t = biject_to(d.support)
    z = t(u)
    lp = d.log_prob(z)
    ld = t.log_abs_det_jacobian(u, z)
    ld = sum_rightmost(ld, jnp.ndim(ld) - jnp.ndim(lp))
    return jnp.sum(lp) + jnp.sum(ld)


__all__ = [
    "SITE_TRANSFORM_RULES",
    "UNSUPPORTED_DISTRIBUTIONS",
    "AffineMap",
    "GenericMap",
    "IdentityMap",
    "MonotoneMap",
    "SiteMap",
    "SiteTransformRule",
    "TrilMap",
    "site_map",
    "site_map_or_identity",
    "site_log_prob_unconstrained",
]

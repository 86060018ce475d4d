"""ASVI baseline: automatic structured VI (Ambrogioni et al. 2021) as a NumPyro guide (MATH.md §1).

Each site keeps its prior family; every parameter is mixed in its unconstrained space,
θ_q = T(w ⊙ T⁻¹(θ_prior(parents)) + (1 − w) ⊙ α), with w = sigmoid(logit) ∈ (0, 1) and α free
(one per element). Sampling reuses the site maps of the structured layer, so q is an exact
bijection of N(0, I) with an exact log-det. Sites with a flat prior (``ImproperUniform``) get a
mean-field Normal in unconstrained space (choice: ASVI is undefined there).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from numpyro.distributions.transforms import biject_to
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_uniform

from .._custom_types import Shape
from ..bijectors import Chain, Permute
from ..bijectors.numpyro import BijectorTransform
from ._structured import AbstractStructuredLayer, SiteInfo, _latent_sites

_CANONICAL = {
    dist.MultivariateNormal: ("loc", "scale_tril"),
    dist.LowRankMultivariateNormal: ("loc", "cov_factor", "cov_diag"),
}


def _unwrap(fn):
    wrappers = []
    while isinstance(fn, dist.MaskedDistribution | dist.Independent | dist.ExpandedDistribution):
        if isinstance(fn, dist.Independent):
            wrappers.append(fn.reinterpreted_batch_ndims)
        fn = fn.base_dist
    return fn, sum(wrappers)


def _param_names(base) -> tuple[str, ...]:
    if type(base) in _CANONICAL:
        return _CANONICAL[type(base)]
    return tuple(k for k in base.arg_constraints if hasattr(base, k))


def _family(fn, name):
    """(base distribution, reinterpreted ndims, {param: (value broadcast to the site, T)})."""
    base, ndims = _unwrap(fn)
    if isinstance(base, dist.ImproperUniform):
        return base, ndims, None
    batch = (
        tuple(fn.batch_shape) + tuple(fn.event_shape)[: len(fn.event_shape) - len(base.event_shape)]
    )
    out = {}
    for p in _param_names(base):
        value = jnp.asarray(getattr(base, p))
        c = base.arg_constraints[p]
        param_event = value.shape[value.ndim - c.event_dim :] if c.event_dim else ()
        out[p] = (jnp.broadcast_to(value, batch + tuple(param_event)), biject_to(c))
    try:
        type(base)(**{p: v for p, (v, _) in out.items()})
    except Exception as err:  # pragma: no cover - depends on NumPyro's constructors
        raise NotImplementedError(
            f"site {name!r}: ASVI cannot rebuild {type(base).__name__} from its parameters "
            f"{tuple(out)} ({err})."
        ) from err
    return base, ndims, out


class ASVILayer(AbstractStructuredLayer):
    """The ASVI variational map (a bijection of N(0, I), sites in execution order)."""

    model: Callable = eqx.field(static=True)
    model_args: tuple
    model_kwargs: dict
    sites: tuple[SiteInfo, ...] = eqx.field(static=True)
    mix: tuple[dict, ...]
    unsupported: str = eqx.field(static=True, default="raise")
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, model, model_args: tuple = (), model_kwargs: dict | None = None, mix=None):
        self.model = model
        self.model_args = tuple(model_args)
        self.model_kwargs = dict(model_kwargs or {})
        self.sites = _latent_sites(model, self.model_args, self.model_kwargs)
        self.shape = (sum(s.size for s in self.sites),)
        self.cond_shape = None
        self.mix = self._init_mix() if mix is None else mix

    def _init_mix(self):
        with numpyro.handlers.block():
            seeded = numpyro.handlers.seed(self.model, 0)
            model = numpyro.handlers.substitute(seeded, substitute_fn=init_to_uniform)
            tr = numpyro.handlers.trace(model).get_trace(*self.model_args, **self.model_kwargs)
        mix = []
        for s in self.sites:
            base, _, params = _family(tr[s.name]["fn"], s.name)
            if params is None:  # flat prior: mean-field Normal (loc, softplus⁻¹ scale)
                mix.append({"loc": jnp.zeros(s.shape), "scale": jnp.full(s.shape, 0.5413)})
                continue
            entry = {}
            for p, (value, t) in params.items():
                alpha = t.inv(value)
                entry[p] = (jnp.zeros(jnp.shape(alpha)), alpha)  # w = 0.5, α at the prior
            mix.append(entry)
        return tuple(mix)

    def _site_distribution(self, fn, index):
        name = self.sites[index].name
        base, ndims, params = _family(fn, name)
        entry = self.mix[index]
        if params is None:
            # a Normal on the unconstrained value: the site map's support transform is applied
            # by the layer itself, so wrap the Normal to the site's support.
            d = dist.Normal(entry["loc"], jax.nn.softplus(entry["scale"]))
            t = biject_to(fn.support)
            return dist.TransformedDistribution(d.to_event(len(self.sites[index].shape)), t)
        new = {}
        for p, (value, t) in params.items():
            logit, alpha = entry[p]
            w = jax.nn.sigmoid(logit)
            new[p] = t(w * t.inv(value) + (1.0 - w) * alpha)
        d = type(base)(**new)
        return d.to_event(ndims) if ndims else d


class AutoASVI(AutoContinuous):
    """ASVI baseline guide (prior family, parameters mixed with free ones per element)."""

    def __init__(self, model, *, prefix: str = "auto", init_loc_fn=init_to_uniform):
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        self._model_args, self._model_kwargs = args, kwargs
        layer = ASVILayer(self.model, args, kwargs)
        flat_sites = [site for site in layer.sites if site.name in self._init_locs]
        if len(flat_sites) != len(self._init_locs):
            raise ValueError(
                f"latent sites disagree: {layer.site_names} vs {tuple(self._init_locs)}"
            )
        where = {s.name: s for s in layer.sites}
        order = []
        for name in self._init_locs:
            s = where[name]
            order.extend(range(s.offset, s.offset + s.size))
        self._perm = np.asarray(order, dtype=np.int32)
        flat, unravel = ravel_pytree(layer.mix)
        self._mix_init, self._mix_unravel = flat, unravel

    def _posterior(self, args=None, kwargs=None):
        args = self._model_args if not args else args
        kwargs = self._model_kwargs if not kwargs else kwargs
        flat = numpyro.param(f"{self.prefix}_asvi", self._mix_init)
        layer = ASVILayer(self.model, args, kwargs, mix=self._mix_unravel(flat))
        bij = Chain([layer, Permute(jnp.asarray(self._perm))])
        return dist.TransformedDistribution(self.get_base_dist(), BijectorTransform(bij))

    def _get_posterior(self):
        return self._posterior()

    def _sample_latent(self, *args, **kwargs):
        sample_shape = kwargs.pop("sample_shape", ())
        return numpyro.sample(
            f"_{self.prefix}_latent",
            self._posterior(args, kwargs).expand_by(sample_shape),
            infer={"is_auxiliary": True},
        )

    def get_base_dist(self):
        return dist.Normal(jnp.zeros(self.latent_dim), 1.0).to_event(1)

    def median(self, params):
        """The image of the base median ε = 0."""
        t = numpyro.handlers.substitute(self._get_posterior, params)().transforms[0]
        return self._unpack_and_constrain(t(jnp.zeros(self.latent_dim)), params)


__all__ = ["ASVILayer", "AutoASVI"]

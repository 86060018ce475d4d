"""EMFDensity: an embedded-model flow for density estimation (MATH.md §1, "EMF family").

x = T_θ(B(z)), z ~ N(0, I): B is a trainable backbone flow on ε and T_θ the (gated) structured
layer of an *embedded program*, a NumPyro model whose latent sample sites, in execution order, make
up the data vector. Unlike VI (where T is fixed to the prior), the program's ``numpyro.param``
sites θ (e.g. the step scale of a Brownian-motion prior) are trainable leaves, stored
unconstrained (``biject_to(constraint)``) and substituted back in when the layer runs.
``log_prob`` is one inverse pass x → T⁻¹ → B⁻¹ → z with the exact log-determinant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from .._custom_types import Shape
from ..bijectors import AbstractBijector, AbstractDistribution
from ..bijectors._utils import check_key
from ..train import density_to_inference_data
from ._autoguide import check_gate_init, make_backbone
from ._structured import (
    AbstractStructuredLayer,
    GatedStructuredLayer,
    StructuredLayer,
    prototype_trace,
)

DENSITY_BACKBONES = ("maf", "rqs", "iaf", "normal", "mvn")
_PARAMS = "__emf_params__"


@dataclass(frozen=True)
class EmbeddedProgram:
    """A NumPyro model whose ``numpyro.param`` sites take the (unconstrained) values passed in the
    reserved keyword argument; other array arguments are held fixed (gradients stopped)."""

    model: Callable

    def __call__(self, *args, **kwargs):
        params = kwargs.pop(_PARAMS, None)
        args, kwargs = jax.tree_util.tree_map(
            lambda a: jax.lax.stop_gradient(a) if eqx.is_inexact_array(a) else a, (args, kwargs)
        )
        if not params:
            return self.model(*args, **kwargs)

        def substitute_fn(msg):
            if msg["type"] == "param" and msg["name"] in params:
                constraint = msg["kwargs"].get("constraint", constraints.real)
                return biject_to(constraint)(params[msg["name"]])
            return None

        return handlers.substitute(self.model, substitute_fn=substitute_fn)(*args, **kwargs)


def _initial_params(tr) -> dict[str, Array]:
    out = {}
    for name, site in tr.items():
        if site["type"] != "param":
            continue
        value = jnp.asarray(site["value"])
        value = value.astype(value.dtype)  # drop weak typing
        if not jnp.issubdtype(value.dtype, jnp.inexact):
            raise TypeError(
                f"param site {name!r} has non-float dtype {value.dtype}; EMFDensity trains "
                "only floating-point numpyro.param sites."
            )
        constraint = site["kwargs"].get("constraint", constraints.real)
        # a concrete float array (not weak-typed) so the optimiser's updates keep its type
        out[name] = jnp.asarray(biject_to(constraint).inv(value), dtype=value.dtype)
        if not bool(jnp.all(jnp.isfinite(out[name]))):
            raise ValueError(
                f"param site {name!r}: initial value {value} is not in the interior of its "
                f"constraint {constraint}."
            )
    return out


def _data_sites(tr, site: str | None) -> tuple[str, ...] | None:
    latent = [
        n
        for n, s in tr.items()
        if s["type"] == "sample"
        and not s["is_observed"]
        and not s["infer"].get("is_auxiliary", False)
    ]
    if site is None:
        if not latent:
            raise ValueError(
                "argument 'model' has no latent (unobserved) sample sites: the data vector is "
                "the concatenation of the embedded program's latent sites."
            )
        return None
    if site not in latent:
        observed = [n for n, s in tr.items() if s["type"] == "sample" and s["is_observed"]]
        hint = (
            " It is observed: call the program without its observation." if site in observed else ""
        )
        raise ValueError(
            f"argument 'site' is {site!r}, which is not a latent sample site of the model.{hint} "
            f"Latent sites: {tuple(latent)}."
        )
    before = latent[: latent.index(site)]
    if before:
        raise ValueError(
            f"argument 'site' is {site!r}, but latent sites {tuple(before)} run before it and "
            "their density cannot be marginalised; make them numpyro.param sites or model the "
            "concatenation of all latent sites (site=None)."
        )
    return (site,)


class EMFDensity(AbstractDistribution):
    """Embedded-model-flow density x = T_θ(B(z)), z ~ N(0, I) (MATH.md §1, "EMF family").

    Args:
        model: the embedded program, a NumPyro model; its latent sample sites in execution order
            (each raveled in its unconstrained space) form the data vector. ``numpyro.param``
            sites are trained with the flow.
        backbone: "maf" (default), "rqs", "iaf", "normal" or "mvn" (see ``make_backbone``).
        gated: use the gated structured layer (gates trained too).
        key: PRNG key for the backbone's initial weights.
        model_args, model_kwargs: fixed arguments of ``model``.
        site: name one latent site as the data (sites after it are ignored) instead of all.
        flow_layers, nn_width: backbone size. gate_init, gate_scale, per_element_gates: gates.
    """

    layer: AbstractStructuredLayer
    backbone: AbstractBijector
    params: dict[str, Array]
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(
        self,
        model: Callable,
        backbone: str = "maf",
        gated: bool = True,
        *,
        key: PRNGKeyArray | None = None,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
        site: str | None = None,
        flow_layers: int = 2,
        nn_width: int | None = None,
        gate_init: float = 0.9,
        gate_scale: float = 10.0,
        per_element_gates: bool = False,
    ):
        if not callable(model):
            raise TypeError(f"argument 'model' must be a callable NumPyro model, got {model!r}.")
        if backbone not in DENSITY_BACKBONES:
            raise ValueError(
                f"argument 'backbone' must be one of {DENSITY_BACKBONES}, got {backbone!r}."
            )
        if site is not None and not isinstance(site, str):
            raise TypeError(f"argument 'site' must be a site name (str) or None, got {site!r}.")
        check_gate_init(gate_init)
        if key is not None:
            check_key(key)
        model_args = tuple(model_args)
        model_kwargs = dict(model_kwargs or {})
        if _PARAMS in model_kwargs:
            raise ValueError(f"argument 'model_kwargs' may not use the reserved key {_PARAMS!r}.")
        tr = prototype_trace(model, model_args, model_kwargs)
        only = _data_sites(tr, site)
        program = EmbeddedProgram(model)
        if gated:
            layer = GatedStructuredLayer(
                program,
                model_args,
                model_kwargs,
                gate_init=gate_init,
                per_element=per_element_gates,
                gate_scale=gate_scale,
                latent_sites=only,
            )
        else:
            layer = StructuredLayer(program, model_args, model_kwargs, latent_sites=only)
        dim = layer.shape[0]
        key = jax.random.PRNGKey(0) if key is None else key
        self.layer = layer
        self.backbone = make_backbone(
            key, backbone, dim, flow_layers=flow_layers, nn_width=nn_width
        )
        self.params = _initial_params(tr)
        self.shape = (dim,)
        self.cond_shape = None

    @property
    def site_names(self) -> tuple[str, ...]:
        """The latent sites making up the data vector, in order."""
        return self.layer.site_names

    def structured_layer(self) -> AbstractStructuredLayer:
        """The structured layer T_θ with the current param values substituted in."""
        kwargs = {**self.layer.model_kwargs, _PARAMS: self.params}
        return eqx.tree_at(lambda m: m.model_kwargs, self.layer, kwargs)

    def constrained_params(self) -> dict[str, Array]:
        """The current values of the embedded program's param sites (constrained space)."""
        layer = self.structured_layer()
        tr = prototype_trace(layer.model, layer.model_args, layer.model_kwargs)
        return {n: s["value"] for n, s in tr.items() if s["type"] == "param"}

    def unpack(self, x: Array) -> dict[str, Array]:
        """Split one data vector into per-site (unconstrained) arrays."""
        return self.layer.unpack(x)

    def element_names(self) -> tuple[str, ...]:
        """A label per data-vector entry: the site name, with ``[i]`` for non-scalar sites."""
        return tuple(
            s.name if s.shape == () else f"{s.name}[{i}]"
            for s in self.layer.sites
            for i in range(s.size)
        )

    def to_arviz(
        self,
        x: Float[ArrayLike, "n_obs dim"],
        key: PRNGKeyArray | None = None,
        n: int = 1000,
    ):
        """The fitted density as ``arviz.InferenceData``, scored on held-out data ``x``.

        A fitted density is a point estimate, so there is no posterior group:
        ``posterior_predictive["x"]`` holds ``n`` draws from the density (1 chain),
        ``log_likelihood["x"]`` the exact log p(x_i) of each held-out row (one draw, so
        ``az.waic`` gives the held-out elpd = Σ log p(x_i) and ``az.compare(..., ic="waic")``
        ranks density models), ``observed_data["x"]`` the held-out rows, and ``constant_data``
        the fitted (constrained) values of the embedded program's param sites. The data-vector
        axis is ``element`` with coords from :meth:`element_names`
        (see ``bayesflow_nets.infer.density_to_inference_data``).
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"argument 'n' must be an int >= 1, got {n!r}.")
        x = jnp.asarray(x)
        if x.ndim != 2 or x.shape[1:] != self.shape:
            raise ValueError(
                f"argument 'x' must be held-out data of shape (n_obs, {self.shape[0]}), got "
                f"{x.shape}."
            )
        key = jax.random.PRNGKey(0) if key is None else key
        log_lik = eqx.filter_jit(lambda m, v: m.log_prob(v))(self, x)
        draws = eqx.filter_jit(lambda m, k: m.sample(k, (n,)))(self, key)
        return density_to_inference_data(
            draws,
            log_lik,
            x,
            event_dims=["element"],
            coords={"element": list(self.element_names())},
            constant_data=self.constrained_params(),
            attrs={
                "inference_library": "bayesflow_nets.emf",
                "model": type(self).__name__,
                "backbone": type(self.backbone).__name__,
                "log_likelihood_estimator": "exact",
            },
        )

    def _log_prob(self, x, condition):
        eps, ld_t = self.structured_layer().inverse_and_log_det(x)
        z, ld_b = self.backbone.inverse_and_log_det(eps)
        return -0.5 * jnp.sum(z**2) - 0.5 * z.size * jnp.log(2 * jnp.pi) + ld_b + ld_t

    def _sample_and_log_prob(self, key, condition):
        z = jax.random.normal(key, self.shape)
        eps, ld_b = self.backbone.transform_and_log_det(z)
        x, ld_t = self.structured_layer().transform_and_log_det(eps)
        lp = -0.5 * jnp.sum(z**2) - 0.5 * z.size * jnp.log(2 * jnp.pi)
        return x, lp - ld_b - ld_t


__all__ = ["DENSITY_BACKBONES", "EMFDensity", "EmbeddedProgram"]

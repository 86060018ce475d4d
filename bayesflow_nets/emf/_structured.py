"""Structured layers built from a NumPyro model by effect handlers (MATH.md §1).

The layer acts on the flat unconstrained latent vector (sites in execution order, each raveled).
Forward runs the model once with ``substitute``: at each latent site the site map f_j is built
from the distribution the model produced *given its parents' outputs*, and the site's value is
``biject_to(support)(f_j(ε_j))``. Inverse runs the model once with the values known and applies
f_j⁻¹. The Jacobian is block triangular, so log|det| = Σ_j log|det ∂f_j/∂ε_j|.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import log_density

from .._custom_types import Shape
from ..bijectors._base import AbstractBijector
from ._site_transforms import site_log_prob_unconstrained, site_map_or_identity


class SiteInfo(NamedTuple):
    """Static description of one latent site: name, unconstrained shape, slice of the vector."""

    name: str
    shape: tuple[int, ...]
    offset: int
    size: int


UNSUPPORTED = ("raise", "identity")


def _check_unsupported(unsupported: str) -> str:
    if unsupported not in UNSUPPORTED:
        raise ValueError(
            f"argument 'unsupported' must be one of {UNSUPPORTED}, got {unsupported!r}."
        )
    return unsupported


def prototype_trace(model, args, kwargs):
    """One trace of ``model``, seeded, blocked, latent values from ``init_to_uniform`` (which
    also gives improper flat-prior sites a value; they cannot sample)."""
    seeded = handlers.substitute(handlers.seed(model, 0), substitute_fn=init_to_uniform)
    with handlers.block():
        return handlers.trace(seeded).get_trace(*args, **kwargs)


def _latent_sites(model, args, kwargs, only=None, unsupported="raise") -> tuple[SiteInfo, ...]:
    tr = prototype_trace(model, args, kwargs)
    sites = []
    offset = 0
    subsampled = {}
    for name, site in tr.items():
        if site["type"] == "plate":
            size, sub = site["args"][0], site["args"][1]
            if sub is not None and sub != size:
                subsampled[name] = (sub, size)
        if site["type"] != "sample" or site["is_observed"]:
            continue
        for frame in site["cond_indep_stack"]:
            if frame.name in subsampled:
                sub, size = subsampled[frame.name]
                raise NotImplementedError(
                    f"latent site {name!r} lies in plate {frame.name!r}, which subsamples "
                    f"({sub} of {size}); structured layers need every latent value at once: "
                    "subsample only plates that hold observed sites, or set "
                    "subsample_size=None (a guide that subsamples local latents, such as NumPyro's AutoNormal, "
                    "can fit them)."
                )
        if site["infer"].get("is_auxiliary", False):
            continue
        if only is not None and name not in only:
            continue
        fn = site["fn"]
        site_map_or_identity(fn, name, unsupported)  # raises naming the site if unsupported
        shape = tuple(biject_to(fn.support).inverse_shape(jnp.shape(site["value"])))
        size = int(np.prod(shape, dtype=int))
        sites.append(SiteInfo(name, shape, offset, size))
        offset += size
    if not sites:
        raise ValueError("model has no latent (unobserved) sample sites to embed.")
    return tuple(sites)


def _run_with_sites(model, args, kwargs, pieces: dict[str, Array], site_fn) -> dict[str, tuple]:
    """Run ``model`` once, giving each latent site named in ``pieces`` the value that
    ``site_fn(msg, piece, step)`` returns with a tuple of outputs; returns the outputs by site.

    A site inside NumPyro's ``scan`` is visited once per step with that step's distribution,
    ``piece[step]`` and the step index; its outputs travel out of the scan in the site's
    ``intermediates`` and come back stacked over steps (``step`` is None elsewhere).
    """
    results: dict[str, tuple] = {}

    def substitute_fn(msg):
        name = msg["name"]
        if msg["type"] != "sample" or msg["is_observed"] or name not in pieces:
            return None
        step = msg["infer"].get("_scan_current_index")
        piece = pieces[name] if step is None else pieces[name][step]
        value, outputs = site_fn(msg, piece, step)
        if step is None:
            results[name] = outputs
        else:
            msg["intermediates"] = list(outputs)
        return value

    seeded = handlers.substitute(handlers.seed(model, rng_seed=0), substitute_fn=substitute_fn)
    with handlers.block():
        tr = handlers.trace(seeded).get_trace(*args, **kwargs)
    for name in pieces:
        if name not in results and name in tr and tr[name].get("intermediates"):
            results[name] = tuple(tr[name]["intermediates"])
    missing = [n for n in pieces if n not in results]
    if missing:
        raise ValueError(
            f"latent sites {missing} were not reached when re-running the model; the "
            "model's structure must not depend on the latent values."
        )
    return results


class AbstractStructuredLayer(AbstractBijector):
    """Shared machinery of :class:`StructuredLayer` and :class:`GatedStructuredLayer`."""

    model: eqx.AbstractVar[Callable]
    model_args: eqx.AbstractVar[tuple]
    model_kwargs: eqx.AbstractVar[dict]
    sites: eqx.AbstractVar[tuple[SiteInfo, ...]]
    unsupported: eqx.AbstractVar[str]

    @property
    def site_names(self) -> tuple[str, ...]:
        """Latent site names in execution order (the order of the flat vector)."""
        return tuple(s.name for s in self.sites)

    def unpack(self, flat: Float[Array, " dim"]) -> dict[str, Array]:
        """Split a flat unconstrained vector into per-site unconstrained arrays."""
        return {s.name: flat[s.offset : s.offset + s.size].reshape(s.shape) for s in self.sites}

    def pack(self, values: dict[str, Array]) -> Float[Array, " dim"]:
        """Inverse of :meth:`unpack`."""
        return jnp.concatenate([jnp.ravel(values[s.name]) for s in self.sites])

    def _gate(self, index: int):
        return None

    def _site_distribution(self, fn, index: int):
        """The distribution whose site map is used at site ``index`` (the prior by default)."""
        return fn

    def _run(self, flat, direction: str):
        pieces = self.unpack(flat)
        index = {s.name: i for i, s in enumerate(self.sites)}

        def site_fn(msg, value, step):
            fn = msg["fn"]
            smap = site_map_or_identity(
                self._site_distribution(fn, index[msg["name"]]), msg["name"], self.unsupported
            )
            gate = self._gate(index[msg["name"]])
            if gate is not None and step is not None and jnp.ndim(gate) > 0:
                gate = gate[step]
            if direction == "forward":
                u, ld = smap.forward(value) if gate is None else smap.gated_forward(value, gate)
                out = u
            else:
                u = value
                out, ld = smap.inverse(u) if gate is None else smap.gated_inverse(u, gate)
            return biject_to(fn.support)(u), (out, ld.astype(flat.dtype))

        results = _run_with_sites(self.model, self.model_args, self.model_kwargs, pieces, site_fn)
        out = jnp.concatenate(
            [jnp.ravel(results[s.name][0]).astype(flat.dtype) for s in self.sites]
        )
        total = sum((jnp.sum(results[s.name][1]) for s in self.sites), jnp.zeros((), flat.dtype))
        return out, total

    def _transform_and_log_det(self, x, condition):
        return self._run(x, "forward")

    def _inverse_and_log_det(self, y, condition):
        return self._run(y, "inverse")

    def constrain(self, flat: Float[Array, " dim"]) -> dict[str, Array]:
        """Map an unconstrained vector to constrained site values by re-running the model."""

        def site_fn(msg, u, step):
            value = biject_to(msg["fn"].support)(u)
            return value, (value,)

        results = _run_with_sites(
            self.model, self.model_args, self.model_kwargs, self.unpack(flat), site_fn
        )
        return {name: r[0] for name, r in results.items()}

    def prior_log_density(self, flat: Float[Array, " dim"]) -> Float[Array, ""]:
        """The model's prior log density in unconstrained space (a test oracle): NumPyro's
        ``log_density`` of the latent sites (observed sites hidden) at the constrained values
        plus Σ log|det J_{biject_to}|."""
        values = self.constrain(flat)
        prior = handlers.block(self.model, hide_fn=lambda msg: msg.get("is_observed", False))
        lp, _ = log_density(prior, self.model_args, self.model_kwargs, values)
        tr = handlers.trace(handlers.substitute(handlers.seed(self.model, 0), data=values))
        tr = tr.get_trace(*self.model_args, **self.model_kwargs)
        pieces = self.unpack(flat)
        jac = jnp.zeros(())
        for name, u in pieces.items():
            fn = tr[name]["fn"]
            t = biject_to(fn.support)
            ld = t.log_abs_det_jacobian(u, t(u))
            jac = jac + jnp.sum(ld)
        return lp + jac

    def site_log_density(self, flat: Float[Array, " dim"]) -> Float[Array, ""]:
        """Σ_j log p_j(u_j | parents) in unconstrained space from the site maps' registry view."""
        pieces = self.unpack(flat)
        values = self.constrain(flat)
        tr = handlers.trace(
            handlers.substitute(handlers.seed(self.model, rng_seed=0), data=values)
        ).get_trace(*self.model_args, **self.model_kwargs)
        total = jnp.zeros(())
        for name, u in pieces.items():
            total = total + site_log_prob_unconstrained(tr[name]["fn"], u)
        return total


class StructuredLayer(AbstractStructuredLayer):
    """The ungated structured layer T of a NumPyro model's prior (MATH.md §1).

    ``transform`` maps ε (flat, execution order) to the unconstrained latent vector; with base
    N(0, I) it reproduces the model's prior density in unconstrained space exactly.
    """

    model: Callable = eqx.field(static=True)
    model_args: tuple
    model_kwargs: dict
    sites: tuple[SiteInfo, ...] = eqx.field(static=True)
    unsupported: str = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(
        self,
        model,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
        *,
        latent_sites: tuple[str, ...] | None = None,
        unsupported: str = "raise",
    ):
        if not callable(model):
            raise TypeError(f"argument 'model' must be a callable NumPyro model, got {model!r}.")
        self.model = model
        self.model_args = tuple(model_args)
        self.model_kwargs = dict(model_kwargs or {})
        self.unsupported = _check_unsupported(unsupported)
        self.sites = _latent_sites(
            model, self.model_args, self.model_kwargs, latent_sites, self.unsupported
        )
        self.shape = (sum(s.size for s in self.sites),)
        self.cond_shape = None


def gate_logit(value: float) -> float:
    """The logit of a gate value λ ∈ [0, 1] (±inf at the ends)."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"gate value must lie in [0, 1], got {value!r}.")
    with np.errstate(divide="ignore"):
        return float(np.log(value) - np.log1p(-value))


class GatedStructuredLayer(AbstractStructuredLayer):
    """Gated structured layer x_j = λ_j f_j(ε_j) + (1 − λ_j) ε_j (MATH.md §1, "Gates").

    ``gate_logits`` are explicit leaves, one array per site (shape ``()``, or the site's
    unconstrained shape with ``per_element=True``); ``λ = sigmoid(gate_scale · logit)``.
    λ = 1 is the ungated layer, λ = 0 the identity.
    """

    model: Callable = eqx.field(static=True)
    model_args: tuple
    model_kwargs: dict
    sites: tuple[SiteInfo, ...] = eqx.field(static=True)
    gate_logits: tuple[Array, ...]
    gate_scale: float = eqx.field(static=True)
    unsupported: str = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(
        self,
        model,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
        *,
        gate_init: float = 0.999,
        per_element: bool = False,
        gate_scale: float = 1.0,
        latent_sites: tuple[str, ...] | None = None,
        unsupported: str = "raise",
    ):
        if not callable(model):
            raise TypeError(f"argument 'model' must be a callable NumPyro model, got {model!r}.")
        if not 0.0 <= gate_init <= 1.0:
            raise ValueError(f"argument 'gate_init' must lie in [0, 1], got {gate_init!r}.")
        if not gate_scale > 0:
            raise ValueError(f"argument 'gate_scale' must be positive, got {gate_scale!r}.")
        self.model = model
        self.model_args = tuple(model_args)
        self.model_kwargs = dict(model_kwargs or {})
        self.unsupported = _check_unsupported(unsupported)
        self.sites = _latent_sites(
            model, self.model_args, self.model_kwargs, latent_sites, self.unsupported
        )
        logit = gate_logit(gate_init) / gate_scale
        self.gate_logits = tuple(
            jnp.full(s.shape if per_element else (), logit, dtype=float) for s in self.sites
        )
        self.gate_scale = float(gate_scale)
        self.shape = (sum(s.size for s in self.sites),)
        self.cond_shape = None

    def _gate(self, index: int):
        return self.gate_scale * self.gate_logits[index]

    @property
    def gates(self) -> dict[str, Array]:
        """The gate values λ per site."""
        return {
            s.name: jax.nn.sigmoid(self.gate_scale * g)
            for s, g in zip(self.sites, self.gate_logits)
        }

    def with_gates(self, values: dict[str, Any] | float) -> GatedStructuredLayer:
        """A copy with gates set to ``values`` (a float for all sites or a dict by site)."""
        new = []
        for s, g in zip(self.sites, self.gate_logits):
            v = values if not isinstance(values, dict) else values[s.name]
            logit = np.vectorize(gate_logit)(np.asarray(v, dtype=float)) / self.gate_scale
            new.append(jnp.broadcast_to(jnp.asarray(logit, dtype=g.dtype), g.shape))
        return eqx.tree_at(lambda m: m.gate_logits, self, tuple(new))


__all__ = [
    "AbstractStructuredLayer",
    "GatedStructuredLayer",
    "SiteInfo",
    "StructuredLayer",
    "gate_logit",
]

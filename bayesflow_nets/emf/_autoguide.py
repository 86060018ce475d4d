"""AutoEMF: the embedded-model-flow variational family as a NumPyro autoguide (MATH.md §1).

q = T_gated ∘ B over the flat unconstrained latent vector, with T the (gated) structured layer
built from the model's prior and B a trainable backbone flow; "top" applies B then T, "bottom"
T then B, "middle" B₁, T, reversal, B₂. Subclasses ``AutoContinuous``, so SVI, Predictive,
``sample_posterior``, ``median`` and ``quantiles``-free workflows behave as for NumPyro's guides.
"""

from __future__ import annotations

import contextlib
import numbers

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.infer.util as numpyro_util
from jax.flatten_util import ravel_pytree
from numpyro.infer.autoguide import AutoContinuous, AutoGuide
from numpyro.infer.initialization import init_to_uniform
from numpyro.primitives import Messenger

from .._compile import run_once_jit, split_keys
from ..bijectors import (
    AbstractBijector,
    Affine,
    Chain,
    LowRankAffine,
    Permute,
    Reverse,
    StandardNormal,
    TriangularAffine,
    coupling_flow,
    inverse_autoregressive_flow,
    masked_autoregressive_flow,
)
from ..bijectors._utils import check_int
from ..bijectors.numpyro import BijectorTransform, TransformedFlow
from ._checks import check_model_inputs
from ._structured import GatedStructuredLayer, StructuredLayer, _latent_sites, gate_logit

BACKBONES = ("auto", "normal", "lowrank", "mvn", "iaf", "maf", "rqs")
PLACEMENTS = ("top", "middle", "bottom")

# dimensions up to which the "auto" backbone is a MAF (its sampling pass is sequential in the
# dimension), and up to which dense D × D affines (backbone tail, Laplace whitening) are used
MAF_MAX_DIM = 32
DENSE_MAX_DIM = 256
MAX_AUTO_WIDTH = 128
LOW_RANK = 8


def check_gate_init(gate_init) -> None:
    """Raise naming 'gate_init' unless it is a real number in (0, 1)."""
    if isinstance(gate_init, bool) or not isinstance(gate_init, numbers.Real):
        raise TypeError(f"argument 'gate_init' must be a number in (0, 1), got {gate_init!r}.")
    if not 0.0 < gate_init < 1.0:
        raise ValueError(f"argument 'gate_init' must lie in (0, 1), got {gate_init!r}.")


def resolve_backbone(kind: str, dim: int) -> str:
    """The backbone kind that ``kind`` names at ``dim`` latents: "auto" is "maf" up to
    :data:`MAF_MAX_DIM`, "iaf" (parallel sampling, width ≤ :data:`MAX_AUTO_WIDTH`) up to
    :data:`DENSE_MAX_DIM` and "lowrank" above; other kinds are returned as they are."""
    if kind not in BACKBONES:
        raise ValueError(f"argument 'backbone' must be one of {BACKBONES}, got {kind!r}.")
    if kind != "auto":
        return kind
    if dim <= MAF_MAX_DIM:
        return "maf"
    return "iaf" if dim <= DENSE_MAX_DIM else "lowrank"


def _low_rank_affine(key, dim: int) -> LowRankAffine:
    """Diagonal plus rank-:data:`LOW_RANK` affine at the identity (O(D) parameters)."""
    rank = min(LOW_RANK, dim)
    v = jax.random.normal(key, (dim, rank)) / jnp.sqrt(dim)
    return LowRankAffine(jnp.zeros(dim), jnp.ones(dim), jnp.zeros((dim, rank)), v)


def _affine_tail(key, dim: int):
    """The last, identity-initialised affine layer: dense lower-triangular up to
    :data:`DENSE_MAX_DIM` latents, :func:`_low_rank_affine` above."""
    if dim <= DENSE_MAX_DIM:
        return TriangularAffine(jnp.zeros(dim), jnp.eye(dim))
    return _low_rank_affine(key, dim)


def make_backbone(key, kind: str, dim: int, *, flow_layers: int = 2, nn_width: int | None = None):
    """The trainable flow B on ε: an affine layer (identity at init) last, after any flow layers
    (``kind`` as in :func:`resolve_backbone`; flow widths default to 2·D, at most
    :data:`MAX_AUTO_WIDTH` for "auto")."""
    resolved = resolve_backbone(kind, dim)
    k_flow, k_tail = key, jax.random.fold_in(key, 1)
    if resolved == "normal":
        return Affine(jnp.zeros(dim), jnp.ones(dim))
    if resolved == "mvn":
        return TriangularAffine(jnp.zeros(dim), jnp.eye(dim))
    if resolved == "lowrank":
        return _low_rank_affine(k_tail, dim)
    width = max(16, 2 * dim) if kind != "auto" else max(16, min(2 * dim, MAX_AUTO_WIDTH))
    width = nn_width if nn_width is not None else width
    base = StandardNormal((dim,))
    if resolved == "iaf":
        flow = inverse_autoregressive_flow(
            k_flow, base_dist=base, flow_layers=flow_layers, nn_width=width
        )
    elif resolved == "maf":
        flow = masked_autoregressive_flow(
            k_flow, base_dist=base, flow_layers=flow_layers, nn_width=width
        )
    else:
        if dim < 2:
            raise ValueError(
                f"argument 'dim' must be >= 2 for backbone 'rqs' (a coupling flow), got {dim}."
            )
        flow = coupling_flow(k_flow, base_dist=base, flow_layers=flow_layers, nn_width=width)
    return Chain([flow.bijector, _affine_tail(k_tail, dim)])


# one compiled program builds a backbone (shared by every guide of the same size; run once, so
# compiled at optimisation level 0): run eagerly, its initialisers compiled about a hundred
# small XLA programs
_make_backbone_jit = run_once_jit(make_backbone)


class _BatchedKey(Messenger):
    """Hands the first ``numpyro.prng_key()`` (the prototype's) a batch of one key; keys that
    the model itself asks for (e.g. inside ``scan``) pass unchanged. ``batched`` says whether
    it did."""

    def __init__(self, fn=None):
        self.batched = False
        super().__init__(fn)

    def postprocess_message(self, msg):
        if msg["type"] == "prng_key" and msg["value"] is not None and not self.batched:
            msg["value"] = msg["value"][None]
            self.batched = True


_numpyro_find_valid_initial_params = numpyro_util.find_valid_initial_params


@run_once_jit
def _initial_params_program(rng_key, model, order, prototype_params, kwargs):
    # a traced dict comes back in sorted key order; NumPyro draws in the model's order
    if order is not None:
        prototype_params = {k: prototype_params[k] for k in order}
    return _numpyro_find_valid_initial_params(
        rng_key, model, prototype_params=prototype_params, **kwargs
    )


def _find_valid_initial_params(rng_key, model, *, prototype_params=None, **kwargs):
    order = None if prototype_params is None else tuple(prototype_params)
    return _initial_params_program(rng_key, model, order, prototype_params, kwargs)


@contextlib.contextmanager
def _run_once_initial_params():
    """NumPyro's ``find_valid_initial_params``, for the duration, compiled as one run-once
    program (the same function, so the same values)."""
    original = numpyro_util.find_valid_initial_params
    numpyro_util.find_valid_initial_params = _find_valid_initial_params
    try:
        yield
    finally:
        numpyro_util.find_valid_initial_params = original


class _CompiledInitialisation(AutoGuide):
    """Sits between AutoContinuous and AutoGuide in the MRO: AutoGuide's prototype runs
    ``initialize_model`` with a batch of one key, which takes NumPyro's ``lax.map`` path (one
    compiled program, compiled with the run-once options) instead of evaluating the model and
    its gradient op by op, which compiles dozens of small programs. Same key, same initial
    point, same packing order."""

    def _setup_prototype(self, *args, **kwargs):
        batching = _BatchedKey()
        with batching, _run_once_initial_params():
            super()._setup_prototype(*args, **kwargs)
        if not batching.batched:
            return
        # lax.map returns the dict in sorted key order: restore the model's execution order
        locs = self._init_locs
        order = [k for k in self.prototype_trace if k in locs]
        order += [k for k in locs if k not in order]
        self._init_locs = {k: locs[k][0] for k in order}


class AutoEMF(AutoContinuous, _CompiledInitialisation):
    """Embedded-model-flow guide (MATH.md §1, "EMF family").

    Args:
        model: a NumPyro model with continuous latent sites.
        backbone: "auto" (default: :func:`resolve_backbone` by the number of latents),
            "maf", "iaf", "rqs" (flows ending in an affine layer), "mvn", "lowrank", "normal".
        placement: where the structured layer sits: "top" (default), "middle", "bottom".
        gated: gate each site's map (λ trainable, closed forms for Gaussian sites).
        per_element_gates: one gate per latent element instead of per site.
        gate_init: initial λ.
        flow_layers, nn_width: size of flow backbones.
    """

    def __init__(
        self,
        model,
        *,
        backbone: str = "auto",
        placement: str = "top",
        gated: bool = True,
        per_element_gates: bool = False,
        gate_init: float = 0.9,
        flow_layers: int = 2,
        nn_width: int | None = None,
        prefix: str = "auto",
        init_loc_fn=init_to_uniform,
    ):
        if backbone not in BACKBONES:
            raise ValueError(f"argument 'backbone' must be one of {BACKBONES}, got {backbone!r}.")
        if placement not in PLACEMENTS:
            raise ValueError(
                f"argument 'placement' must be one of {PLACEMENTS}, got {placement!r}."
            )
        check_gate_init(gate_init)
        check_int("flow_layers", flow_layers, 1)
        if nn_width is not None:
            check_int("nn_width", nn_width, 1)
        self.backbone = backbone
        self.placement = placement
        self.gated = bool(gated)
        self.per_element_gates = bool(per_element_gates)
        self.gate_init = float(gate_init)
        self.flow_layers = int(flow_layers)
        self.nn_width = nn_width
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    # ---- prototype ---------------------------------------------------------------------
    def _setup_prototype(self, *args, **kwargs):
        check_model_inputs(self.model, args, kwargs)
        # names a latent site in a subsampling plate before AutoContinuous's generic error
        _latent_sites(self.model, args, kwargs, unsupported="identity")
        super()._setup_prototype(*args, **kwargs)
        self._model_args = args
        self._model_kwargs = kwargs
        layer = self._make_layer(args, kwargs)
        dim = layer.shape[0]
        if dim != self.latent_dim:
            raise ValueError(
                f"structured layer has {dim} latent dimensions but the guide found "
                f"{self.latent_dim}; sites: {layer.site_names}."
            )
        # permutation from the layer's execution order to AutoContinuous's packing order
        offsets = {s.name: s for s in layer.sites}
        order = []
        for name in self._init_locs:
            s = offsets[name]
            order.extend(range(s.offset, s.offset + s.size))
        self._perm = np.asarray(order, dtype=np.int32)
        key = numpyro.prng_key()
        key = jax.random.PRNGKey(0) if key is None else key
        k1, k2 = split_keys(key, 2)
        opts = {"flow_layers": self.flow_layers, "nn_width": self.nn_width}
        nets = [_make_backbone_jit(k1, self.backbone, dim, **opts)]
        if self.placement == "middle":
            nets.append(_make_backbone_jit(k2, self.backbone, dim, **opts))
        params, static = eqx.partition(tuple(nets), eqx.is_inexact_array)
        flat, unravel = ravel_pytree(params)
        self._backbone_init = flat
        self._backbone_unravel = unravel
        self._backbone_static = static
        if self.gated:
            self._gate_init = jnp.concatenate([jnp.ravel(g) for g in layer.gate_logits])

    def _make_layer(self, args, kwargs):
        # only the prototype's latent sites: e.g. Predictive without ``obs`` leaves y to the model
        only = tuple(self._init_locs)
        # a continuous site without a site transform (e.g. LKJCholesky) enters unembedded:
        # u = ε there, and the backbone alone models it
        if not self.gated:
            return StructuredLayer(
                self.model, args, kwargs, latent_sites=only, unsupported="identity"
            )
        return GatedStructuredLayer(
            self.model,
            args,
            kwargs,
            gate_init=self.gate_init,
            per_element=self.per_element_gates,
            latent_sites=only,
            unsupported="identity",
        )

    # ---- the flow ----------------------------------------------------------------------
    def _bijector(self, backbone_flat, gates_flat, args, kwargs, whiten=None):
        nets = eqx.combine(self._backbone_unravel(backbone_flat), self._backbone_static)
        layer = self._make_layer(args, kwargs)
        if self.gated:
            pieces, i = [], 0
            for g in layer.gate_logits:
                pieces.append(gates_flat[i : i + g.size].reshape(g.shape))
                i += g.size
            layer = eqx.tree_at(lambda m: m.gate_logits, layer, tuple(pieces))
        if self.placement == "top":
            parts = [nets[0], layer] if whiten is None else [nets[0], _Whiten(*whiten), layer]
        elif self.placement == "bottom":
            parts = [layer, nets[0]]
        else:
            parts = [nets[0], layer, Reverse(layer.shape), nets[1], Reverse(layer.shape)]
        parts.append(Permute(jnp.asarray(self._perm)))
        return Chain(parts)

    def _posterior(self, args=None, kwargs=None):
        args = self._model_args if not args else args
        kwargs = self._model_kwargs if not kwargs else kwargs
        backbone = numpyro.param(f"{self.prefix}_emf_backbone", self._backbone_init)
        gates = numpyro.param(f"{self.prefix}_emf_gates", self._gate_init) if self.gated else None
        whiten = None
        if self.placement == "top" and self.latent_dim <= DENSE_MAX_DIM:
            dim = self.latent_dim
            whiten = (
                numpyro.param(f"{self.prefix}_emf_whiten_loc", jnp.zeros(dim)),
                numpyro.param(f"{self.prefix}_emf_whiten_tril", jnp.eye(dim)),
            )
        bij = self._bijector(backbone, gates, args, kwargs, whiten)
        return TransformedFlow(self.get_base_dist(), BijectorTransform(bij))

    def _get_posterior(self):
        return self._posterior()

    def _sample_latent(self, *args, **kwargs):
        sample_shape = kwargs.pop("sample_shape", ())
        posterior = self._posterior(args, kwargs)
        return numpyro.sample(
            f"_{self.prefix}_latent",
            posterior.expand_by(sample_shape),
            infer={"is_auxiliary": True},
        )

    def get_base_dist(self):
        return dist.Normal(jnp.zeros(self.latent_dim), 1.0).to_event(1)

    def get_transform(self, params):
        """The learned map from N(0, I) to the unconstrained latent vector (packing order)."""
        return numpyro.handlers.substitute(self._get_posterior, params)().transforms[0]

    def median(self, params):
        """The image of the base median ε = 0 (the exact median for elementwise-monotone q)."""
        latent = self.get_transform(params)(jnp.zeros(self.latent_dim))
        return self._unpack_and_constrain(latent, params)

    def structured_layer(self, params) -> StructuredLayer | GatedStructuredLayer:
        """The (gated) structured layer with the fitted gates."""
        layer = self._make_layer(self._model_args, self._model_kwargs)
        if not self.gated:
            return layer
        chain = self._bijector(
            params[f"{self.prefix}_emf_backbone"],
            params[f"{self.prefix}_emf_gates"],
            self._model_args,
            self._model_kwargs,
        )
        return next(b for b in chain.bijectors if isinstance(b, GatedStructuredLayer))

    # ---- initialisation from a Gaussian approximation (used by fit_vi) ------------------
    def laplace_init_params(self, params: dict, loc, cov) -> dict:
        """Whiten the backbone's input by the Laplace approximation N(loc, cov) (unconstrained,
        packing order) pulled back through the structured layer at its preimage of ``loc``:
        the fixed (non-trained) whitening affine below the layer is set so that the backbone,
        at its identity initialisation, gives q ≈ N(loc, cov), and Adam steps act in
        posterior-standardised units. Placement "top" with at most ``DENSE_MAX_DIM`` latents
        only; otherwise ``params`` are returned unchanged."""
        if self.placement != "top" or self.latent_dim > DENSE_MAX_DIM:
            return dict(params)
        name_b = f"{self.prefix}_emf_backbone"
        gates = params.get(f"{self.prefix}_emf_gates")
        inv_perm = jnp.asarray(np.argsort(self._perm))
        eps_loc, chol, ok = _laplace_whitening(self, params[name_b], gates, loc, cov, inv_perm)
        if not bool(ok):
            return dict(params)
        out = dict(params)
        out[f"{self.prefix}_emf_whiten_loc"] = eps_loc
        out[f"{self.prefix}_emf_whiten_tril"] = chol
        return out


@run_once_jit
def _laplace_whitening(guide, backbone, gates, loc, cov, inv_perm):
    """The structured layer at ``gates``, and N(loc, cov) reordered to its execution order and
    pulled back through it (:func:`_pull_back_gaussian`), in one compiled call; with a flag
    saying whether the result is finite."""
    chain = guide._bijector(backbone, gates, guide._model_args, guide._model_kwargs)
    layer = chain.bijectors[1]
    loc = jnp.asarray(loc)[inv_perm]
    cov = jnp.asarray(cov)[inv_perm][:, inv_perm]
    eps_loc, chol = _pull_back_gaussian(layer, loc, cov)
    ok = jnp.all(jnp.isfinite(eps_loc)) & jnp.all(jnp.isfinite(chol))
    return eps_loc.astype(backbone.dtype), chol.astype(backbone.dtype), ok


def _pull_back_gaussian(layer, loc, cov):
    """ε-space mean and Cholesky factor of N(loc, cov) pulled back through ``layer`` (linearised
    at its preimage of ``loc``); diagonal fallback where the covariance is not positive definite.
    Traced inside :func:`_laplace_whitening`: op by op a structured layer costs seconds."""
    eps_loc = layer.inverse(loc)
    # the inverse's Jacobian at loc is the inverse of the forward Jacobian at eps_loc: the
    # forward is a far smaller program than the inverse's derivative (root searches)
    try:
        jac = jax.jacfwd(layer.transform)(eps_loc)
    except TypeError:  # a custom_vjp inside the model (e.g. odeint) has no forward mode
        jac = jax.jacrev(layer.transform)(eps_loc)
    jinv_cov = jnp.linalg.solve(jac, cov)
    cov_eps = jnp.linalg.solve(jac, jinv_cov.T)
    cov_eps = 0.5 * (cov_eps + cov_eps.T)
    chol = jnp.linalg.cholesky(cov_eps + 1e-12 * jnp.trace(cov_eps) * jnp.eye(cov_eps.shape[0]))
    diag = jnp.diag(jnp.sqrt(jnp.clip(jnp.diag(cov_eps), 1e-12)))
    chol = jnp.where(jnp.all(jnp.isfinite(chol)), chol, diag)
    return eps_loc, chol


class _Whiten(AbstractBijector):
    """Fixed affine ε = loc + L x (gradients stopped: a preconditioner, not a trained layer)."""

    loc: jax.Array
    tril: jax.Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, loc, tril):
        self.loc = jax.lax.stop_gradient(loc)
        self.tril = jax.lax.stop_gradient(jnp.tril(tril))
        self.shape = (loc.shape[0],)
        self.cond_shape = None

    def _transform_and_log_det(self, x, condition):
        return self.loc + self.tril @ x, jnp.sum(jnp.log(jnp.abs(jnp.diag(self.tril))))

    def _inverse_and_log_det(self, y, condition):
        x = jax.scipy.linalg.solve_triangular(self.tril, y - self.loc, lower=True)
        return x, -jnp.sum(jnp.log(jnp.abs(jnp.diag(self.tril))))


def gate_values(guide: AutoEMF, params: dict) -> dict:
    """Fitted gate values λ per site (MATH.md §1 "Gates")."""
    layer = guide.structured_layer(params)
    if not isinstance(layer, GatedStructuredLayer):
        return {}
    return layer.gates


__all__ = [
    "AutoEMF",
    "BACKBONES",
    "PLACEMENTS",
    "gate_logit",
    "gate_values",
    "make_backbone",
    "resolve_backbone",
]

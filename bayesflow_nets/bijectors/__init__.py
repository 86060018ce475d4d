"""Equinox bijectors, flows and distributions (DESIGN.md, bijector contract)."""

from ._affine import (
    Affine as Affine,
    Loc as Loc,
    LowRankAffine as LowRankAffine,
    Scale as Scale,
    TriangularAffine as TriangularAffine,
)
from ._autoregressive import MaskedAutoregressive as MaskedAutoregressive
from ._base import AbstractBijector as AbstractBijector
from ._coupling import Coupling as Coupling
from ._distributions import (
    AbstractDistribution as AbstractDistribution,
    Normal as Normal,
    StandardNormal as StandardNormal,
    Transformed as Transformed,
)
from ._elementwise import Exp as Exp, Sigmoid as Sigmoid, Softplus as Softplus, Tanh as Tanh
from ._flows import (
    coupling_flow as coupling_flow,
    inverse_autoregressive_flow as inverse_autoregressive_flow,
    masked_autoregressive_flow as masked_autoregressive_flow,
)
from ._preprocess import (
    ActNorm as ActNorm,
    AffineSquash as AffineSquash,
    Logit as Logit,
    init_actnorm as init_actnorm,
    logit_preprocessing as logit_preprocessing,
)
from ._rqs import RationalQuadraticSpline as RationalQuadraticSpline
from ._structure import (
    Chain as Chain,
    Concatenate as Concatenate,
    Invert as Invert,
    Permute as Permute,
    Reverse as Reverse,
    Scan as Scan,
    Stack as Stack,
)
from ._utils import softplus_inverse as softplus_inverse
from .numpyro import (
    BijectorTransform as BijectorTransform,
    FlowDistribution as FlowDistribution,
    TransformedFlow as TransformedFlow,
    as_numpyro_distribution as as_numpyro_distribution,
    flow_param as flow_param,
    to_numpyro as to_numpyro,
)

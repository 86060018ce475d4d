"""Embedded-model flows (MATH.md §1): site transforms, structured layers, AutoEMF, fit_vi,
EMFDensity."""

from ._asvi import ASVILayer as ASVILayer, AutoASVI as AutoASVI
from ._autoguide import (
    AutoEMF as AutoEMF,
    gate_values as gate_values,
    make_backbone as make_backbone,
    resolve_backbone as resolve_backbone,
)
from ._density import EmbeddedProgram as EmbeddedProgram, EMFDensity as EMFDensity
from ._fit import VIResult as VIResult, fit_vi as fit_vi
from ._site_transforms import (
    SITE_TRANSFORM_RULES as SITE_TRANSFORM_RULES,
    UNSUPPORTED_DISTRIBUTIONS as UNSUPPORTED_DISTRIBUTIONS,
    SiteMap as SiteMap,
    SiteTransformRule as SiteTransformRule,
    site_map as site_map,
)
from ._solve import monotone_inverse as monotone_inverse
from ._start import laplace_approximation as laplace_approximation
from ._stl import (
    OrderedTraceELBO as OrderedTraceELBO,
    RenyiELBO as RenyiELBO,
    StickingTheLandingELBO as StickingTheLandingELBO,
)
from ._structured import (
    AbstractStructuredLayer as AbstractStructuredLayer,
    GatedStructuredLayer as GatedStructuredLayer,
    StructuredLayer as StructuredLayer,
)

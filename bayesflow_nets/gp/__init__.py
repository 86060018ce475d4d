"""Improper Gaussian processes: walk kernels, corrected posterior, REML, O(n) path (MATH.md §3)."""

from ._dense import contrast_lift as contrast_lift, contrast_project as contrast_project
from ._fit import REMLFitResult as REMLFitResult, fit_reml as fit_reml
from ._gp import GPPosterior as GPPosterior, ImproperGP as ImproperGP
from ._kernels import (
    AbstractKernel as AbstractKernel,
    AbstractStationaryKernel as AbstractStationaryKernel,
    Brownian as Brownian,
    Matern12 as Matern12,
    Matern32 as Matern32,
    Matern52 as Matern52,
    MaternWalk as MaternWalk,
    Periodic as Periodic,
    Product as Product,
    Scaled as Scaled,
    SmoothWalk as SmoothWalk,
    SquaredExponential as SquaredExponential,
    Sum as Sum,
    matern_correlation as matern_correlation,
    matern_walk_variogram as matern_walk_variogram,
    smooth_walk_variogram as smooth_walk_variogram,
)
from ._numpyro import ContrastNormal as ContrastNormal
from ._plot import plot_gp as plot_gp
from ._state_space import (
    state_space_log_likelihood as state_space_log_likelihood,
    state_space_posterior as state_space_posterior,
    supports_state_space as supports_state_space,
)

KERNELS = (
    SquaredExponential,
    Matern12,
    Matern32,
    Matern52,
    Periodic,
    Brownian,
    SmoothWalk,
    MaternWalk,
)
"""Registry of the public leaf kernels (the tests check it covers the public API)."""

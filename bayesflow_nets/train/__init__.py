"""Training layer (below the methods, above the primitives): ArviZ converters, atomic Equinox
checkpoints and the PSIS k̂ diagnostic shared by every fitter. Imports only NumPy, JAX,
Equinox, NumPyro, xarray and ArviZ; never a method or ``infer``."""

from ._arviz import (
    density_to_inference_data as density_to_inference_data,
    model_dims as model_dims,
    to_inference_data as to_inference_data,
)
from ._checkpoint import load as load, save as save
from ._diagnostics import psis_khat as psis_khat

"""Training layer (below the methods, above the primitives): ArviZ converters shared by every
fitter. Imports only NumPy, JAX, NumPyro, xarray and ArviZ; never a method or ``infer``."""

from ._arviz import (
    density_to_inference_data as density_to_inference_data,
    model_dims as model_dims,
    to_inference_data as to_inference_data,
)

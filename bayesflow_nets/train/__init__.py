"""Training layer (below the methods, above the primitives): ArviZ converters, atomic Equinox
checkpoints and the PSIS k̂ diagnostic shared by every fitter. Imports only NumPy, JAX,
Equinox, NumPyro, xarray and ArviZ; never a method or ``infer``."""

from ._arviz import (
    density_to_inference_data as density_to_inference_data,
    model_dims as model_dims,
    to_inference_data as to_inference_data,
)
from ._checkpoint import (
    load as load,
    load_progress as load_progress,
    plain_keys as plain_keys,
    save as save,
    save_progress as save_progress,
    typed_keys_like as typed_keys_like,
)
from ._diagnostics import psis_khat as psis_khat

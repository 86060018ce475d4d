"""Workflow: fit loops and checkpoints (imports methods and primitives; never the reverse)."""

from ._checkpoint import load as load, save as save
from ._fit import (
    FitResult as FitResult,
    TrainState as TrainState,
    fit_to_data as fit_to_data,
    fit_to_loss as fit_to_loss,
    init_state as init_state,
    make_step as make_step,
)

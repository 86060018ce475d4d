"""Workflow: fit loops, checkpoints, ArviZ conversion, BlackJAX NUTS and NeuTra (imports methods
and primitives; never the reverse)."""

from ..train import (
    density_to_inference_data as density_to_inference_data,
    load as load,
    model_dims as model_dims,
    save as save,
    to_inference_data as to_inference_data,
)
from ._fit import (
    FitResult as FitResult,
    TrainState as TrainState,
    fit_to_data as fit_to_data,
    fit_to_loss as fit_to_loss,
    init_state as init_state,
    make_step as make_step,
)
from ._neutra import neutra as neutra, warped_potential as warped_potential
from ._nuts import nuts as nuts
from ._restarts import fit_vi_restarts as fit_vi_restarts
from ._sharding import (
    ShardedSVI as ShardedSVI,
    batch_mesh as batch_mesh,
    batch_sharding as batch_sharding,
    replicated as replicated,
    sharded_svi as sharded_svi,
)

"""Autoencoders within flows (MATH.md §2): partition and expansion families, VAE baseline."""

from ._data import (
    ImageData as ImageData,
    bits_per_dim as bits_per_dim,
    dequantise as dequantise,
    load_digits as load_digits,
    load_npz_images as load_npz_images,
)
from ._expansion import ExpansionAEF as ExpansionAEF, select_is_scale as select_is_scale
from ._masks import core_indices as core_indices, core_mask as core_mask
from ._nets import (
    ConvDecoder as ConvDecoder,
    ConvEncoder as ConvEncoder,
    MLPDecoder as MLPDecoder,
    MLPEncoder as MLPEncoder,
)
from ._partition import PartitionAEF as PartitionAEF
from ._train import (
    batch_key as batch_key,
    dequantised_loss as dequantised_loss,
    fit_dequantised as fit_dequantised,
)
from ._vae import VAE as VAE

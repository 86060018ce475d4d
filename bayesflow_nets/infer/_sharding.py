"""Data-parallel helpers: a 1-D device mesh, batch/replicated shardings and data-parallel SVI.

Data parallelism here is GSPMD: arrays carry a ``NamedSharding``, ``jax.jit`` partitions the
computation and inserts the cross-device reductions (gradient all-reduce) itself. Parameters and
optimiser state are replicated; data is split along its leading (batch / plate) axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, PRNGKeyArray

BATCH_AXIS = "batch"


def batch_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis name ``"batch"`` over the first ``devices`` of ``jax.devices()``.

    ``None`` uses every device (all processes' devices after ``jax.distributed.initialize()``).
    """
    available = jax.devices()
    n = len(available) if devices is None else devices
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(available):
        raise ValueError(
            f"argument 'devices' must be an int in [1, {len(available)}] (jax.device_count()) "
            f"or None, got {devices!r}; on CPU, more host devices need "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N set before JAX starts."
        )
    return Mesh(np.asarray(available[:n]), (BATCH_AXIS,))


def as_mesh(mesh: Mesh | int | None, name: str = "mesh") -> Mesh | None:
    """Validate a ``mesh`` argument: a ``Mesh``, an int number of devices, or ``None``."""
    if mesh is None or isinstance(mesh, Mesh):
        return mesh
    if isinstance(mesh, int) and not isinstance(mesh, bool):
        if not 1 <= mesh <= jax.device_count():
            raise ValueError(
                f"argument {name!r} asks for {mesh} devices but jax.device_count() is "
                f"{jax.device_count()}; pass an int in [1, {jax.device_count()}], a "
                "jax.sharding.Mesh or None (on CPU set "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts)."
            )
        return batch_mesh(mesh)
    raise TypeError(
        f"argument {name!r} must be a jax.sharding.Mesh, an int number of devices or None, "
        f"got {type(mesh).__name__}."
    )


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Sharding that splits array axis ``axis`` over every axis of ``mesh`` (others replicated)."""
    spec = (None,) * axis + (tuple(mesh.axis_names),)
    return NamedSharding(mesh, PartitionSpec(*spec))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy of an array on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


class ShardedSVI(NamedTuple):
    """Data-parallel SVI: ``init(key) -> state``, ``update(state) -> (state, loss)``.

    ``args`` / ``kwargs`` are the model arguments as placed on the mesh (data split along axis
    0, the rest replicated); ``init`` and ``update`` pass them to ``svi.init`` / ``svi.update``.
    """

    init: Callable[[PRNGKeyArray], Any]
    update: Callable[[Any], tuple[Any, Array]]
    args: tuple
    kwargs: dict
    mesh: Mesh


def _place_data(name: str, value, mesh: Mesh):
    """Split every array leaf with a leading axis along it (must divide evenly over the mesh)."""

    def put(leaf):
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            return leaf
        if np.ndim(leaf) == 0:
            return jax.device_put(leaf, replicated(mesh))
        if leaf.shape[0] % mesh.size:
            raise ValueError(
                f"argument {name!r} has leading (plate) axis of length {leaf.shape[0]}, which "
                f"is not divisible by the {mesh.size} devices of 'mesh'; pad or trim the data, "
                "or pass it in 'replicated_kwargs'."
            )
        return jax.device_put(leaf, batch_sharding(mesh))

    return jax.tree_util.tree_map(put, value)


def sharded_svi(
    svi, mesh: Mesh | int, *args, replicated_kwargs: dict | None = None, **kwargs
) -> ShardedSVI:
    """Data-parallel ``numpyro.infer.SVI``: data split over ``mesh``, parameters replicated.

    Every array in ``args`` / ``kwargs`` with a leading axis is split along it (the plate axis:
    ``N`` rows must be divisible by the number of devices); arrays in ``replicated_kwargs`` are
    copied to every device. ``update`` is a jitted ``svi.update`` with replicated outputs, so XLA
    (GSPMD) partitions the log-likelihood over rows and all-reduces the ELBO gradient. Subsampled
    plates (``numpyro.plate(..., subsample_size=m)``) work unchanged: the random row gather is
    partitioned by XLA. The ELBO trajectory equals the one-device run up to float round-off.
    """
    from numpyro.infer import SVI  # local: keep numpyro out of this module's import time

    if not isinstance(svi, SVI):
        raise TypeError(f"argument 'svi' must be a numpyro.infer.SVI, got {type(svi).__name__}.")
    mesh = as_mesh(mesh)
    if mesh is None:
        raise TypeError("argument 'mesh' must be a jax.sharding.Mesh or an int, got None.")
    if replicated_kwargs is not None and not isinstance(replicated_kwargs, dict):
        raise TypeError(
            f"argument 'replicated_kwargs' must be a dict, got {type(replicated_kwargs).__name__}."
        )
    clash = set(kwargs) & set(replicated_kwargs or {})
    if clash:
        raise ValueError(
            f"argument 'replicated_kwargs' repeats keyword arguments {sorted(clash)}; pass each "
            "model argument once."
        )
    s_args = tuple(_place_data(f"args[{i}]", a, mesh) for i, a in enumerate(args))
    s_kwargs = {k: _place_data(k, v, mesh) for k, v in kwargs.items()}
    s_kwargs.update(
        {k: jax.device_put(v, replicated(mesh)) for k, v in (replicated_kwargs or {}).items()}
    )
    rep = replicated(mesh)

    def init(key: PRNGKeyArray):
        return jax.device_put(svi.init(key, *s_args, **s_kwargs), rep)

    @eqx.filter_jit  # non-array arguments (Python ints, strings) stay static, as in svi.run
    def jitted(state, args, kwargs):
        return jax.lax.with_sharding_constraint(svi.update(state, *args, **kwargs), rep)

    def update(state):
        return jitted(state, s_args, s_kwargs)

    return ShardedSVI(init, update, s_args, s_kwargs, mesh)


__all__ = ["ShardedSVI", "batch_mesh", "batch_sharding", "replicated", "sharded_svi"]

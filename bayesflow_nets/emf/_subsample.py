"""Plates that subsample (``numpyro.plate(..., subsample_size=B)``) in ``fit_vi``.

Training uses NumPyro's minibatch ELBO (the plate scales its sites by size / B, so the estimate
is unbiased), with each minibatch's indices drawn uniformly *with* replacement (B draws per step;
NumPyro's own draw without replacement shuffles all ``size`` indices on CPU). The final ELBO,
PSIS k̂ and posterior draws use the full data: each such plate's indices substituted by its full
range (scale 1), in batches of draws sized to the data.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers

from ._structured import prototype_trace

# draws per full-data evaluation batch × full size of the subsampled plates, at most
EVAL_ELEMENTS = 10**7


def subsampled_plates(model, args, kwargs) -> dict[str, tuple[int, int]]:
    """(full size, subsample size) of each plate of ``model`` that subsamples, by name."""
    plates = {}
    for name, site in prototype_trace(model, args, kwargs).items():
        if site["type"] == "plate":
            size, sub = site["args"][0], site["args"][1]
            if sub is not None and sub != size:
                plates[name] = (int(size), int(sub))
    return plates


def minibatches_with_replacement(fn, plates: dict[str, tuple[int, int]]):
    """Model or guide ``fn`` whose plates in ``plates`` draw their B indices uniformly with
    replacement from the seed handler's key (``fn`` itself if there are none). The guide's
    indices reach the model through ``replay``, as NumPyro's own do."""
    if not plates:
        return fn

    def draw(msg):
        if msg["type"] != "plate" or msg["name"] not in plates:
            return None
        key = numpyro.prng_key()
        if key is None:  # not seeded: NumPyro's own draw raises its error
            return None
        size, sub = plates[msg["name"]]
        return jax.random.randint(key, (sub,), 0, size)

    return handlers.substitute(fn, substitute_fn=draw)


def full_data(fn, plates: dict[str, tuple[int, int]]):
    """Model or guide ``fn`` with each plate in ``plates`` over its full range (``fn`` itself if
    there are none)."""
    if not plates:
        return fn
    return handlers.substitute(fn, data={k: jnp.arange(n) for k, (n, _) in plates.items()})


@contextlib.contextmanager
def quiet_full_plates():
    """NumPyro warns when a plate's substituted indices outnumber its ``subsample_size``:
    :func:`full_data` does that on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="subsample_size does not match")
        yield


def eval_batch(plates: dict[str, tuple[int, int]], most: int) -> int:
    """Draws per full-data evaluation batch: ``most``, fewer where the plates are large."""
    size = math.prod(n for n, _ in plates.values())
    return int(np.clip(EVAL_ELEMENTS // size, 1, most))

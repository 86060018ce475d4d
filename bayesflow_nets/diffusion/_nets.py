"""Equinox score networks: a time-embedded MLP and a small convolutional U-Net.

Both act on ONE unbatched sample ``x`` and a scalar time ``t > 0`` and return an array shaped like
``x``; what the output means (score, ε or denoiser) is fixed by how they are trained
(:func:`dsm_loss`) and read (:func:`as_score_fn`). Time enters through sinusoidal features of
``log t`` so that every schedule's time range (VE ``σ²``, VP ``t ∈ (0,1]``, DDPM steps) is usable.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

__all__ = ["sinusoidal_embedding", "ScoreMLP", "ScoreUNet"]


def sinusoidal_embedding(t: ArrayLike, dim: int, max_period: float = 100.0) -> Float[Array, " dim"]:
    """``[sin(ω_k log t), cos(ω_k log t)]`` with ``ω_k`` geometric in ``[1/max_period, 1]``."""
    if dim < 2 or dim % 2:
        raise ValueError(f"sinusoidal_embedding: dim must be an even int >= 2, got {dim}.")
    u = jnp.log(jnp.asarray(t, float))
    freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(dim // 2) / max(dim // 2 - 1, 1))
    arg = u * freqs * 4.0
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)])


class ScoreMLP(eqx.Module):
    """Time-embedded MLP ``(x ∈ R^d, t) → R^d``: ``[x, emb(t)]`` through SiLU layers."""

    layers: tuple[eqx.nn.Linear, ...]
    dim: int = eqx.field(static=True)
    time_dim: int = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        dim: int,
        *,
        width: int = 256,
        depth: int = 3,
        time_dim: int = 32,
    ):
        for name, v, lo in (("dim", dim, 1), ("width", width, 1), ("depth", depth, 1)):
            if not (isinstance(v, int) and v >= lo):
                raise ValueError(f"ScoreMLP: {name} must be an int >= {lo}, got {v!r}.")
        if not (isinstance(time_dim, int) and time_dim >= 2 and time_dim % 2 == 0):
            raise ValueError(f"ScoreMLP: time_dim must be an even int >= 2, got {time_dim!r}.")
        keys = jax.random.split(key, depth + 1)
        sizes = [dim + time_dim] + [width] * depth + [dim]
        self.layers = tuple(
            eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.dim = dim
        self.time_dim = time_dim

    def __call__(self, x: Float[Array, " dim"], t: ArrayLike) -> Float[Array, " dim"]:
        if x.shape != (self.dim,):
            raise ValueError(
                f"ScoreMLP: x has shape {x.shape}, expected ({self.dim},) (one unbatched "
                "sample; batch with jax.vmap)."
            )
        return self.layers[-1](self._hidden(x, t))

    def _hidden(self, x: Float[Array, " dim"], t: ArrayLike) -> Float[Array, " width"]:
        return self._from_first(self._first(x, t))

    def _first(self, x, t):
        """The first layer's pre-activation."""
        return self.layers[0](
            jnp.concatenate([x, sinusoidal_embedding(t, self.time_dim).astype(x.dtype)])
        )

    def _from_first(self, pre):
        """The last hidden layer from the first layer's pre-activation."""
        h = jax.nn.silu(pre)
        for layer in self.layers[1:-1]:
            h = jax.nn.silu(layer(h))
        return h

    def jacobian_factors(
        self, x: Float[Array, " dim"], t: ArrayLike
    ) -> tuple[Float[Array, "dim width"], Float[Array, "width dim"]]:
        """``(A, B)`` with ``∂s/∂x = A B``: the read-out weight and the last hidden layer's Jacobian.

        The Jacobian has rank ≤ ``width``; :func:`score_jacobian_spectrum` uses the factors when
        that is well below ``dim``. ``B = H V`` (:meth:`jacobian_core`, :meth:`jacobian_outer`).
        """
        u, v = self.jacobian_outer()
        return u, self.jacobian_core(x, t) @ v

    def jacobian_outer(self) -> tuple[Float[Array, "dim width"], Float[Array, "width dim"]]:
        """``(U, V)`` with ``∂s/∂x = U H(x, t) V`` at every ``(x, t)``: the read-out weight and the
        first layer's weight on ``x`` (fixed, so :func:`outer_basis` can be computed once)."""
        return self.layers[-1].weight, self.layers[0].weight[:, : self.dim]

    def jacobian_core(self, x: Float[Array, " dim"], t: ArrayLike) -> Float[Array, "width width"]:
        """``H(x, t)``: the last hidden layer's Jacobian with respect to the first layer's
        pre-activation (``width`` reverse-mode passes through the hidden layers)."""
        if x.shape != (self.dim,):
            raise ValueError(f"ScoreMLP: x has shape {x.shape}, expected ({self.dim},).")
        return jax.jacrev(self._from_first)(self._first(x, t))


class _ResBlock(eqx.Module):
    norm1: eqx.nn.GroupNorm
    conv1: eqx.nn.Conv2d
    time: eqx.nn.Linear
    norm2: eqx.nn.GroupNorm
    conv2: eqx.nn.Conv2d
    skip: eqx.nn.Conv2d | None

    def __init__(self, c_in: int, c_out: int, time_dim: int, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.norm1 = eqx.nn.GroupNorm(min(8, c_in), c_in)
        self.conv1 = eqx.nn.Conv2d(c_in, c_out, 3, padding=1, key=k1)
        self.time = eqx.nn.Linear(time_dim, c_out, key=k2)
        self.norm2 = eqx.nn.GroupNorm(min(8, c_out), c_out)
        self.conv2 = eqx.nn.Conv2d(c_out, c_out, 3, padding=1, key=k3)
        self.skip = eqx.nn.Conv2d(c_in, c_out, 1, key=k4) if c_in != c_out else None

    def __call__(self, x, emb):
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = h + self.time(emb)[:, None, None]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class ScoreUNet(eqx.Module):
    """A small U-Net for ``(C, H, W)`` images with ``H, W`` divisible by 4 (8×8 to 32×32).

    Two resolutions below the input (stride-2 convolutions down, nearest upsampling up), one
    residual block per level with the time embedding added, skip connections by concatenation.
    """

    time_mlp: tuple[eqx.nn.Linear, eqx.nn.Linear]
    stem: eqx.nn.Conv2d
    down_blocks: tuple[_ResBlock, ...]
    downsample: tuple[eqx.nn.Conv2d, ...]
    mid: _ResBlock
    up_blocks: tuple[_ResBlock, ...]
    head_norm: eqx.nn.GroupNorm
    head: eqx.nn.Conv2d
    shape: tuple[int, int, int] = eqx.field(static=True)
    time_dim: int = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        shape: tuple[int, int, int],
        *,
        channels: tuple[int, int, int] = (32, 64, 64),
        time_dim: int = 64,
    ):
        if len(shape) != 3 or any((not isinstance(s, int)) or s < 1 for s in shape):
            raise ValueError(f"ScoreUNet: shape must be (C, H, W) positive ints, got {shape!r}.")
        c, h, w = shape
        if h % 4 or w % 4 or not (8 <= h <= 64 and 8 <= w <= 64):
            raise ValueError(
                f"ScoreUNet: H and W must be divisible by 4 and in [8, 64], got {(h, w)}."
            )
        if len(channels) != 3:
            raise ValueError(f"ScoreUNet: channels must have 3 entries, got {channels!r}.")
        keys = iter(jax.random.split(key, 16))
        self.time_mlp = (
            eqx.nn.Linear(time_dim, time_dim, key=next(keys)),
            eqx.nn.Linear(time_dim, time_dim, key=next(keys)),
        )
        c0, c1, c2 = channels
        self.stem = eqx.nn.Conv2d(c, c0, 3, padding=1, key=next(keys))
        self.down_blocks = (
            _ResBlock(c0, c0, time_dim, next(keys)),
            _ResBlock(c0, c1, time_dim, next(keys)),
        )
        self.downsample = (
            eqx.nn.Conv2d(c0, c0, 3, stride=2, padding=1, key=next(keys)),
            eqx.nn.Conv2d(c1, c1, 3, stride=2, padding=1, key=next(keys)),
        )
        self.mid = _ResBlock(c1, c2, time_dim, next(keys))
        self.up_blocks = (
            _ResBlock(c2 + c1, c1, time_dim, next(keys)),
            _ResBlock(c1 + c0, c0, time_dim, next(keys)),
        )
        self.head_norm = eqx.nn.GroupNorm(min(8, c0), c0)
        self.head = eqx.nn.Conv2d(c0, c, 3, padding=1, key=next(keys))
        self.shape = (c, h, w)
        self.time_dim = time_dim

    def __call__(self, x: Float[Array, "C H W"], t: ArrayLike) -> Float[Array, "C H W"]:
        if x.shape != self.shape:
            raise ValueError(
                f"ScoreUNet: x has shape {x.shape}, expected {self.shape} (one unbatched "
                "sample; batch with jax.vmap)."
            )
        emb = sinusoidal_embedding(t, self.time_dim).astype(x.dtype)
        emb = self.time_mlp[1](jax.nn.silu(self.time_mlp[0](emb)))
        h = self.stem(x)
        skips = []
        for block, down in zip(self.down_blocks, self.downsample):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid(h, emb)
        for block in self.up_blocks:
            h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
            h = block(jnp.concatenate([h, skips.pop()], axis=0), emb)
        return self.head(jax.nn.silu(self.head_norm(h)))

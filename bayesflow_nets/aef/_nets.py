"""Encoder / decoder networks returning Gaussian parameters (μ, σ), σ = softplus(·) + ε₀ (MATH.md §2).

Encoders map an image ``(C, H, W)`` to ``(μ, σ)`` in R^d; decoders map ``z`` in R^d to ``(μ, σ)`` of
image shape. Any Equinox module with these call signatures can be used by the AEF / VAE models.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Shape
from ._common import check_shape

SIGMA_MIN = 1e-5  # ε₀ in MATH.md §2


def _positive(raw: Array) -> Array:
    return jax.nn.softplus(raw) + SIGMA_MIN


def _check_image_shape(shape, name="shape") -> Shape:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as err:
        raise TypeError(f"argument {name!r} must be a tuple (C, H, W), got {shape!r}.") from err
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"argument {name!r} must be (C, H, W) with positive sizes, got {shape}.")
    return shape


def _check_latent(latent_dim) -> int:
    if not (isinstance(latent_dim, int) and latent_dim >= 1):
        raise ValueError(f"argument 'latent_dim' must be an int >= 1, got {latent_dim!r}.")
    return latent_dim


def _check_mlp(width, depth) -> None:
    if not (isinstance(width, int) and width >= 1):
        raise ValueError(f"argument 'width' must be an int >= 1, got {width!r}.")
    if not (isinstance(depth, int) and depth >= 0):
        raise ValueError(f"argument 'depth' must be an int >= 0, got {depth!r}.")


class ConvEncoder(eqx.Module):
    """Two stride-2 3×3 convolutions (ReLU), then a linear layer to (μ, σ) ∈ R^d × R^d_{>0}."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    head: eqx.nn.Linear
    shape: Shape = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        shape: Shape,
        latent_dim: int,
        channels: tuple[int, int] = (16, 32),
    ):
        shape = _check_image_shape(shape)
        latent_dim = _check_latent(latent_dim)
        c, h, w = shape
        if h % 4 or w % 4:
            raise ValueError(f"argument 'shape': H and W must be multiples of 4, got {shape}.")
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(c, channels[0], 3, stride=2, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(channels[0], channels[1], 3, stride=2, padding=1, key=k2)
        self.head = eqx.nn.Linear(channels[1] * (h // 4) * (w // 4), 2 * latent_dim, key=k3)
        self.shape = shape
        self.latent_dim = latent_dim

    def __call__(self, x: Float[Array, "c h w"]) -> tuple[Array, Array]:
        h = jax.nn.relu(self.conv1(x))
        h = jax.nn.relu(self.conv2(h))
        out = self.head(h.ravel())
        return out[: self.latent_dim], _positive(out[self.latent_dim :])


class ConvDecoder(eqx.Module):
    """Linear layer, then two stride-2 transposed convolutions to image-shaped (μ, σ)."""

    head: eqx.nn.Linear
    deconv1: eqx.nn.ConvTranspose2d
    deconv2: eqx.nn.ConvTranspose2d
    shape: Shape = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)
    channels: tuple[int, int] = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        shape: Shape,
        latent_dim: int,
        channels: tuple[int, int] = (32, 16),
    ):
        shape = _check_image_shape(shape)
        latent_dim = _check_latent(latent_dim)
        c, h, w = shape
        if h % 4 or w % 4:
            raise ValueError(f"argument 'shape': H and W must be multiples of 4, got {shape}.")
        k1, k2, k3 = jax.random.split(key, 3)
        self.head = eqx.nn.Linear(latent_dim, channels[0] * (h // 4) * (w // 4), key=k1)
        kw = {"stride": 2, "padding": 1, "output_padding": 1}
        self.deconv1 = eqx.nn.ConvTranspose2d(channels[0], channels[1], 3, **kw, key=k2)
        self.deconv2 = eqx.nn.ConvTranspose2d(channels[1], 2 * c, 3, **kw, key=k3)
        self.shape = shape
        self.latent_dim = latent_dim
        self.channels = tuple(channels)

    def __call__(self, z: Float[Array, " d"]) -> tuple[Array, Array]:
        c, h, w = self.shape
        x = jax.nn.relu(self.head(z)).reshape(self.channels[0], h // 4, w // 4)
        x = jax.nn.relu(self.deconv1(x))
        out = self.deconv2(x)
        return out[:c], _positive(out[c:])


class MLPEncoder(eqx.Module):
    """MLP on the flattened image to (μ, σ) ∈ R^d × R^d_{>0}."""

    mlp: eqx.nn.MLP
    shape: Shape = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        shape: Shape,
        latent_dim: int,
        width: int = 128,
        depth: int = 2,
        activation: Callable = jax.nn.relu,
    ):
        shape = check_shape(shape)
        latent_dim = _check_latent(latent_dim)
        _check_mlp(width, depth)
        size = math.prod(shape)
        self.mlp = eqx.nn.MLP(size, 2 * latent_dim, width, depth, activation, key=key)
        self.shape = shape
        self.latent_dim = latent_dim

    def __call__(self, x: Array) -> tuple[Array, Array]:
        out = self.mlp(x.ravel())
        return out[: self.latent_dim], _positive(out[self.latent_dim :])


class MLPDecoder(eqx.Module):
    """MLP from z ∈ R^d to image-shaped (μ, σ)."""

    mlp: eqx.nn.MLP
    shape: Shape = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        shape: Shape,
        latent_dim: int,
        width: int = 128,
        depth: int = 2,
        activation: Callable = jax.nn.relu,
    ):
        shape = check_shape(shape)
        latent_dim = _check_latent(latent_dim)
        _check_mlp(width, depth)
        size = math.prod(shape)
        self.mlp = eqx.nn.MLP(latent_dim, 2 * size, width, depth, activation, key=key)
        self.shape = shape
        self.latent_dim = latent_dim

    def __call__(self, z: Float[Array, " d"]) -> tuple[Array, Array]:
        out = self.mlp(z)
        size = out.shape[0] // 2
        return out[:size].reshape(self.shape), _positive(out[size:]).reshape(self.shape)


__all__ = ["ConvEncoder", "ConvDecoder", "MLPEncoder", "MLPDecoder", "SIGMA_MIN"]

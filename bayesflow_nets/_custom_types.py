"""Shared jaxtyping aliases for the whole package."""

from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real, Scalar

__all__ = ["Array", "ArrayLike", "Float", "PRNGKeyArray", "Real", "Scalar", "Shape"]

Shape = tuple[int, ...]

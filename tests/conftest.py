import jax
import pytest

from .helpers import tree_allclose  # noqa: F401


@pytest.fixture
def strict_jax():
    """Run a test with strict dtype promotion and no implicit rank promotion."""
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture
def x64():
    """Enable float64 for one test."""
    with jax.enable_x64(True):
        yield

import os

# XLA on CPU (JAX 0.10) intermittently never returned from some vmapped coupling programs (see
# docs/coupling.md); single-threaded Eigen made that rarer in one A/B but did not prevent it, so
# those programs were restructured too. XLA reads the flag at the first computation, after this.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

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

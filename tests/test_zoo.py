"""The development model zoo (benchmarks/zoo): metadata, and a finite density at each init point."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import initialize_model

from benchmarks.zoo.models import ZOO, ZooModel

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def test_zoo_size_and_metadata():
    assert len(ZOO) >= 22, f"the zoo has {len(ZOO)} models, expected at least 22"
    for name, entry in ZOO.items():
        assert isinstance(entry, ZooModel)
        assert entry.name == name
        assert entry.description.strip(), f"{name}: empty description"
        assert entry.tags, f"{name}: no tags"


def test_zoo_has_reference_and_multimodal_models():
    multimodal = [e.name for e in ZOO.values() if e.multimodal]
    assert 1 <= len(multimodal) <= 2, f"multimodal models: {multimodal}"
    assert len(ZOO) - len(multimodal) >= 20


def init_energy_and_grad(model, args, kwargs):
    """Potential energy and its gradient at NumPyro's initial point, as one compiled program.

    Under jit ``initialize_model`` takes its loop path (the multi-chain one) instead of
    dispatching each operation eagerly, which compiles an order of magnitude faster; XLA's
    backend optimisations are skipped since the program runs once.
    """

    def init(key):
        info, _, _, _ = initialize_model(key, model, model_args=args, model_kwargs=kwargs)
        return info.potential_energy, ravel_pytree(info.z_grad)[0]

    return jax.jit(init, compiler_options=FAST_COMPILE)(jax.random.PRNGKey(0))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_initial_potential_is_finite(name, x64):
    energy, grad = init_energy_and_grad(*ZOO[name].build())
    assert energy.dtype == jnp.float64
    assert np.isfinite(float(energy)), f"{name}: potential energy {energy} at the initial point"
    assert np.all(np.isfinite(np.asarray(grad))), f"{name}: non-finite gradient at the init point"

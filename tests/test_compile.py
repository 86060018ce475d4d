import jax
import jax.numpy as jnp
import numpy as np

from bayesflow_nets._compile import run_once_jit


def test_run_once_jit_top_level_and_nested():
    # Top level: compiled with the run-once options; inside another jit or vmap: a plain nested
    # jit (JAX rejects compiler options there), same values either way.
    f = run_once_jit(lambda x, n: jnp.sin(x) * n)
    x = jnp.linspace(0.0, 1.0, 5)
    ref = np.sin(np.asarray(x)) * 3
    np.testing.assert_allclose(f(x, 3), ref, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda v: f(v, 3))(x), ref, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(lambda v: f(v, 3))(x), ref, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda v: f(v, 3).sum())(x), 3 * np.cos(x), rtol=1e-6)


def test_compile_options_levels_and_codegen_probe():
    # the probe keeps only options this jaxlib accepts; every returned set compiles
    from bayesflow_nets._compile import RUN_ONCE, TRAINING, run_once_options, training_options

    for opts, base in ((run_once_options(), RUN_ONCE), (training_options(), TRAINING)):
        assert opts["xla_backend_optimization_level"] == base["xla_backend_optimization_level"]
        assert set(opts) - set(base) <= {"xla_cpu_use_fusion_emitters"}
        f = jax.jit(lambda x: jnp.exp(x).sum(), compiler_options=opts)
        np.testing.assert_allclose(f(jnp.arange(3.0)), np.exp(np.arange(3.0)).sum(), rtol=1e-6)

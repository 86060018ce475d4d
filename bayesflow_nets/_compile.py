"""Compiler options shared by the library's jitted programs.

Run-once programs (guide and flow initialisation, Gaussian pull-backs, Laplace Hessians,
NumPyro's eager transform calls) compile at XLA's backend optimisation level 0 when they are
called at top level: on CPU that compiles them several times faster, and their single run is
short either way. Inside another trace they are ordinary nested jits (JAX takes compiler options
on top-level programs only). ``fit_vi``'s training chunk and its evaluation program compile at
level 1 (:func:`training_options`): on CPU that compiles faster than the default level 2 and the
programs run as fast.

Both also turn off XLA:CPU's MLIR fusion emitters (``xla_cpu_use_fusion_emitters``) where the
installed jaxlib knows the option, so fusions go through the older LLVM IR emitters, which
compile these small, many-fusion programs faster at the same run time.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
from jax._src import core as _jax_core

RUN_ONCE = {"xla_backend_optimization_level": 0}
TRAINING = {"xla_backend_optimization_level": 1}
_LEGACY_CPU_EMITTERS = {"xla_cpu_use_fusion_emitters": False}


@functools.cache
def _codegen_options() -> dict:
    """``_LEGACY_CPU_EMITTERS`` where this jaxlib accepts it (probed once), else ``{}``."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=_LEGACY_CPU_EMITTERS).lower(1.0).compile()
    except Exception:  # older jaxlib: unknown option
        return {}
    return dict(_LEGACY_CPU_EMITTERS)


def run_once_options() -> dict:
    """XLA options for programs that run once: :data:`RUN_ONCE` plus the codegen options."""
    return {**RUN_ONCE, **_codegen_options()}


def training_options() -> dict:
    """XLA options for ``fit_vi``'s training chunk: :data:`TRAINING` plus the codegen options."""
    return {**TRAINING, **_codegen_options()}


def _at_top_level() -> bool:
    clean = getattr(_jax_core, "trace_state_clean", None)
    return bool(clean()) if clean is not None else False


def top_level_jit(fn, options=run_once_options):
    """``eqx.filter_jit(fn)``, compiled with the XLA options ``options()`` when called outside
    any trace (inside one it is an ordinary nested jit)."""
    nested = eqx.filter_jit(fn)
    top = []  # built on first top-level call: the option probe must not run at import

    def top_level():
        if not top:
            top.append(eqx.filter_jit(fn, compiler_options=options()))
        return top[0]

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not _at_top_level():
            return nested(*args, **kwargs)
        return top_level()(*args, **kwargs)

    # ``call.lower(...)`` traces the top-level program without running it; compiling the result
    # (on any thread) fills JAX's caches, so a later ``call`` with the same types reuses it
    call.lower = lambda *args, **kwargs: top_level().lower(*args, **kwargs)
    return call


def run_once_jit(fn):
    """:func:`top_level_jit` with :func:`run_once_options`: for programs that run once."""
    return top_level_jit(fn, run_once_options)


@run_once_jit
def split_keys(key, num: int) -> tuple:
    """``jax.random.split(key, num)`` as a tuple of keys: one small run-once program per
    ``num``, and no further eager programs to unstack or index the result."""
    return tuple(jax.random.split(key, num))


def with_callers_x64(fn):
    """``fn`` run under the calling thread's float64 setting, for use on a worker thread
    (``jax.enable_x64`` as a context manager is thread-local: a worker would otherwise trace a
    float32 program, which the caller's later calls could not reuse)."""
    x64 = bool(jax.config.jax_enable_x64)

    def run(*args, **kwargs):
        with jax.enable_x64(x64):
            return fn(*args, **kwargs)

    return run


__all__ = [
    "RUN_ONCE",
    "TRAINING",
    "run_once_jit",
    "run_once_options",
    "split_keys",
    "top_level_jit",
    "training_options",
    "with_callers_x64",
]

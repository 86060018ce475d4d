"""Optional native kernel for the rational-quadratic spline's values (XLA FFI, AVX-512).

On a Linux x86-64 CPU with AVX-512F, the first use compiles ``_kernels/rqs_ffi.cc`` with the
machine's C++ compiler against jaxlib's XLA FFI headers into a cache directory
(``$BAYESFLOW_NETS_CACHE``, else ``$XDG_CACHE_HOME/bayesflow_nets`` or
``~/.cache/bayesflow_nets``; written atomically, keyed by the sources, JAX version, compiler and
flags) and registers it with JAX for the CPU. Anywhere else, or with ``BAYESFLOW_NETS_NATIVE=0``,
the spline runs on the XLA path, which computes the same function. A failed build warns once
and falls back.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

KNOTS = 8  # the kernel's bin count (compile-time constant K in rqs_avx512.h)
TARGET = "bayesflow_nets_rqs_f32"
FLAGS = ("-std=c++17", "-O3", "-mavx512f", "-mfma", "-shared", "-fPIC", "-w")
_SOURCES = Path(__file__).parent / "_kernels"


def cache_dir() -> Path:
    """Where built kernels are kept."""
    if os.environ.get("BAYESFLOW_NETS_CACHE"):
        return Path(os.environ["BAYESFLOW_NETS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bayesflow_nets"


def cpu_has_avx512f() -> bool:
    """Whether this (Linux) CPU reports AVX-512F."""
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def find_compiler() -> str | None:
    """``$CXX``, else ``c++`` or ``g++`` on the PATH."""
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def _build(cxx: str) -> Path:
    """Compile the kernel into the cache (once per sources × JAX × compiler × flags)."""
    sources = [_SOURCES / "rqs_ffi.cc", _SOURCES / "rqs_avx512.h"]
    key = hashlib.sha256()
    for part in [*(p.read_bytes() for p in sources), jax.__version__.encode(), cxx.encode(),
                 " ".join(FLAGS).encode()]:
        key.update(part)
    directory = cache_dir()
    lib = directory / f"rqs_ffi_{key.hexdigest()[:16]}.so"
    if not lib.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{lib.stem}.{os.getpid()}.tmp.so"
        cmd = [cxx, *FLAGS, "-isystem", jax.ffi.include_dir(), str(sources[0]), "-o", str(tmp)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
            os.replace(tmp, lib)  # atomic: a reader sees no library or a whole one
        finally:
            tmp.unlink(missing_ok=True)
    return lib


@functools.cache
def status() -> str | None:
    """Load (building if needed) and register the kernel: None when it is ready, else why not."""
    if os.environ.get("BAYESFLOW_NETS_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return "disabled by BAYESFLOW_NETS_NATIVE"
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return f"needs Linux on x86-64, this is {platform.system()} on {platform.machine()}"
    if not cpu_has_avx512f():
        return "the CPU has no AVX-512F"
    cxx = find_compiler()
    if cxx is None:
        return "no C++ compiler (c++, g++ or $CXX)"
    try:
        lib = ctypes.CDLL(str(_build(cxx)))
        handler = jax.ffi.pycapsule(lib.BayesflowNetsRqsF32)
        jax.ffi.register_ffi_target(TARGET, handler, platform="cpu")
    except (OSError, AttributeError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", None) or str(err)
        reason = f"the native spline kernel did not build or load ({detail.strip()[-500:]})"
        warnings.warn(f"{reason}; using the XLA path.", RuntimeWarning, stacklevel=2)
        return reason
    return None


def usable(x: Array, params: Array, bias: Array, knots: int) -> bool:
    """Whether the kernel can compute these values (8 bins, float32, kernel ready)."""
    dtypes = {jnp.dtype(a.dtype) for a in (x, params, bias)}
    return knots == KNOTS and dtypes == {jnp.dtype(jnp.float32)} and status() is None


def rqs_values(
    x: Array, params: Array, bias: Array, lo: float, hi: float, inverse: bool
) -> tuple[Array, Array]:
    """The spline's outputs and elementwise log-dets from the kernel, for ``params + bias``:
    ``x`` (n,), ``params`` and ``bias`` (3K − 1, n). Batches under ``vmap`` with unbatched
    operands broadcast in the kernel (an unbatched bias is read, not copied per sample)."""
    out = (jax.ShapeDtypeStruct(x.shape, x.dtype),) * 2
    call = jax.ffi.ffi_call(TARGET, out, vmap_method="expand_dims")
    return call(x, params, bias, lo=np.float32(lo), hi=np.float32(hi), inverse=bool(inverse))


__all__ = [
    "KNOTS", "cache_dir", "cpu_has_avx512f", "find_compiler", "rqs_values", "status", "usable"
]

"""Process settings that the entry points make, never `import isojax`: a library does not change its host's
environment on import.

`configure_xla()` is called by the `isojax` command, the experiment scripts, the benchmarks and the tests,
before JAX starts its CPU backend. In a notebook or your own script, call it first:

    from isojax.runs import runtime
    runtime.configure_xla()      # before the first JAX computation
"""

from __future__ import annotations

import os
import warnings
from collections.abc import MutableMapping

__all__ = ["EIGEN_FLAG", "configure_xla"]

# XLA's multi-threaded Eigen pool on CPU can wedge when a vmapped program runs a batched LAPACK call (eigh, qr)
# beside other parallel work (seen with jaxlib 0.10.2: two ssyevd calls each waiting in ParallelBatchMap, every
# pool thread blocked). Single-threaded Eigen avoids it at a small cost.
EIGEN_FLAG = "--xla_cpu_multi_thread_eigen=false"


def _backend_started() -> bool:
    import sys

    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # a JAX without this internal: assume it may have started
        return True


def configure_xla(environ: MutableMapping[str, str] | None = None) -> str:
    """Append `EIGEN_FLAG` to `XLA_FLAGS` in `environ` (default: this process's environment, which child
    processes inherit) unless it already mentions `xla_cpu_multi_thread_eigen` or `ISOJAX_KEEP_XLA_FLAGS=1` is
    set; returns the resulting `XLA_FLAGS`. XLA reads the flags once, when JAX starts its backend: called after
    that, it changes only the environment of child processes, and warns."""
    env = os.environ if environ is None else environ
    flags = env.get("XLA_FLAGS", "")
    if env.get("ISOJAX_KEEP_XLA_FLAGS") == "1" or "xla_cpu_multi_thread_eigen" in flags:
        return flags
    env["XLA_FLAGS"] = f"{flags} {EIGEN_FLAG}".strip()
    if environ is None and _backend_started():
        warnings.warn("configure_xla() was called after JAX started its backend: the XLA flag applies to child "
                      "processes only; call it before the first JAX computation", stacklevel=2)
    return env["XLA_FLAGS"]

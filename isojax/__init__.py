"""isojax: the theory and measurement of isotropy in language-model embeddings on numeric data."""

import os as _os

# XLA's multi-threaded Eigen pool on CPU can wedge when a vmapped program runs a batched LAPACK call (eigh,
# qr) beside other parallel work (seen with jaxlib 0.10.2: two ssyevd calls each waiting in
# ParallelBatchMap, every pool thread blocked). Single-threaded Eigen avoids it at a small cost. Set
# ISOJAX_KEEP_XLA_FLAGS=1 to leave XLA_FLAGS alone; the flag only takes effect if set before JAX starts its
# CPU backend, so import isojax before running any JAX computation.
if (_os.environ.get("ISOJAX_KEEP_XLA_FLAGS") != "1"
        and "xla_cpu_multi_thread_eigen" not in _os.environ.get("XLA_FLAGS", "")):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

__version__ = "0.1.0"

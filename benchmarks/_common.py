"""Helpers shared by the benchmark scripts: timing with warm-up and a one-line machine description. Every script
imports this module first: it sets XLA's CPU flags before JAX starts, as every entry point does."""

from __future__ import annotations

import time

from isojax.runs import runtime

runtime.configure_xla()

import jax  # noqa: E402

from isojax.runs import results  # noqa: E402


def best_time(fn, *args, repeats: int = 20, warmup: int = 2) -> float:
    """Best wall time in seconds of fn(*args) over `repeats` runs after `warmup` (compilation) runs."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def machine() -> str:
    """CPU model, core count, JAX backend and version, dtype."""
    m = results.machine()
    dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    return (f"{m['cpu']}, {m['cores']} cores, jax {m['jax']} on {jax.default_backend()} "
            f"({m['devices'][0]}), {dtype}")

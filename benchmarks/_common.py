"""Helpers shared by the benchmark scripts: timing with warm-up and a one-line machine description."""

from __future__ import annotations

import os
import platform
import time

import jax


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
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    return (f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__} on {jax.default_backend()} "
            f"({jax.devices()[0].device_kind}), {dtype}")

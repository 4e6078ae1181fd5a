"""Shared test settings: the suite runs once in float32 and once with JAX_ENABLE_X64=1 (see .ci/run)."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from hypothesis import settings

settings.register_profile("isojax", max_examples=30, deadline=None)
settings.load_profile("isojax")

X64 = bool(jax.config.jax_enable_x64)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


def tol(f32: float, f64: float) -> float:
    """Pick the tolerance for the dtype the suite runs in."""
    return f64 if X64 else f32


def dtype():
    return jnp.float64 if X64 else jnp.float32


ROOT = Path(__file__).resolve().parents[1]


def subprocess_env(**extra: str) -> dict:
    """The environment for a test's subprocess: isojax importable from this checkout (installed or not)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}

"""Boundary checks shared by every public function: wrong rank, mismatched sizes, empty or non-finite input.

They run eagerly, before `jit`, and raise `ValueError` naming the argument and its shape. Inside a trace
(the argument is a tracer) the value checks are skipped: only shapes are known there, and those are checked.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def float_dtype() -> jnp.dtype:
    """The default float dtype: float32, or float64 when `JAX_ENABLE_X64=1`."""
    return jnp.zeros((), dtype=float).dtype


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


MAX_ELEMENTS = 2**31 - 1  # XLA indexes arrays with int32 on CPU: a larger intermediate overflows


def array(name: str, x, ndim: int | tuple[int, ...] | None = None, what: str = "", finite: bool = True,
          nonempty: bool = True, dtype=None, upcast_low: bool = False) -> jax.Array:
    """Return `x` as a JAX array after checking its rank, emptiness and finiteness; `what` names the axes.

    `upcast_low=True` computes float16/bfloat16 input in float32 (LAPACK has no half-precision kernels).
    """
    if x is None:
        raise ValueError(f"{name} is required, got None")
    if not isinstance(x, jax.Array):
        try:
            x = np.asarray(x)
        except Exception as err:  # ragged lists and the like
            raise ValueError(f"{name} could not be read as an array: {err}") from err
        if x.dtype == object:
            raise ValueError(f"{name} could not be read as a numeric array (shape {x.shape})")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            axes = f" {what}" if what else ""
            ranks = " or ".join(str(r) for r in allowed)
            raise ValueError(f"{name} must have rank {ranks}{axes}, got shape {tuple(x.shape)}")
    if nonempty and x.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if dtype is None and jnp.issubdtype(x.dtype, jnp.integer):  # integer arrays become the default float
        dtype = float_dtype()
    if dtype is None and upcast_low and jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
        dtype = jnp.float32
    x = jnp.asarray(x, dtype=dtype) if dtype is not None else jnp.asarray(x)
    # numpy, not jnp: inside a trace even a concrete array's jnp reductions would be staged out
    if finite and _is_concrete(x) and jnp.issubdtype(x.dtype, jnp.inexact) and not np.isfinite(np.asarray(x)).all():
        raise ValueError(f"{name} has non-finite values (shape {tuple(x.shape)})")
    return x


def elements(name: str, what: str, count: int, limit: int = MAX_ELEMENTS) -> None:
    """Raise before compute if an intermediate array `what` (built from argument `name`) would be too large."""
    if count > limit:
        raise ValueError(f"{name} is too large: {what} would hold {count:,} elements, more than {limit:,}")


def real_in(name: str, value, low: float, high: float, what: str = "") -> None:
    """Raise if a concrete scalar (or every entry of an array) is NaN, infinite or outside [low, high]."""
    if not _is_concrete(value):
        return  # traced (under vmap/jit): only the eager boundary can check values
    arr = np.asarray(value, dtype=np.float64)
    where = f" for {what}" if what else ""
    if not np.isfinite(arr).all() or (arr < low).any() or (arr > high).any():
        shown = value if arr.ndim == 0 else f"an array of shape {arr.shape}"
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}]{where}, got {shown!r}")


def same_size(name_a: str, size_a: int, name_b: str, size_b: int, axis: str) -> None:
    """Raise if two arguments disagree on the size of a shared axis."""
    if size_a != size_b:
        raise ValueError(f"{name_a} and {name_b} disagree on {axis}: {size_a} vs {size_b}")


def positive_int(name: str, value, minimum: int = 1) -> int:
    """Return `value` as an int >= minimum or raise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def token_ids(name: str, y, vocab: int) -> jax.Array:
    """Integer token ids in [0, vocab)."""
    y = jnp.asarray(y)
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {y.dtype} (shape {tuple(y.shape)})")
    if _is_concrete(y) and y.size and (int(np.min(y)) < 0 or int(np.max(y)) >= vocab):
        raise ValueError(f"{name} has ids outside [0, {vocab}) (shape {tuple(y.shape)})")
    return y

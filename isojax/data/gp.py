"""The study's Gaussian-process kernel bank: single-kernel families, two settings each, as in the study.

`sample(key, kernel, length)` draws one series [length] on inputs t = 0, 1/length, ... (the unit interval);
`vmap`-able over keys. Optional random sums/products of kernels with `compose`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from isojax import _validate as V

__all__ = ["INPUT", "HORIZON", "KERNELS", "dot_product", "periodic", "rational_quadratic", "rbf", "white", "gram",
           "sample", "compose"]

INPUT, HORIZON = 500, 64


def dot_product(sigma0: float) -> Callable:
    """k(s, t) = σ0² + s t (broadcasts over s, t)."""
    return lambda s, t: sigma0**2 + s * t


def periodic(period: float, length_scale: float = 1.0) -> Callable:
    """k(s, t) = exp(-2 sin²(π |s - t| / period) / length_scale²) (broadcasts over s, t)."""
    return lambda s, t: jnp.exp(-2.0 * jnp.sin(jnp.pi * jnp.abs(s - t) / period) ** 2 / length_scale**2)


def rational_quadratic(alpha: float, length_scale: float = 0.3) -> Callable:
    """k(s, t) = (1 + (s - t)² / (2 α length_scale²))^(-α) (broadcasts over s, t)."""
    return lambda s, t: (1.0 + (s - t) ** 2 / (2.0 * alpha * length_scale**2)) ** (-alpha)


def rbf(length_scale: float) -> Callable:
    """k(s, t) = exp(-(s - t)² / (2 length_scale²)) (broadcasts over s, t)."""
    return lambda s, t: jnp.exp(-0.5 * (s - t) ** 2 / length_scale**2)


def white(noise: float) -> Callable:
    """k(s, t) = noise · [s == t] (broadcasts over s, t)."""
    return lambda s, t: noise * (s == t).astype(jnp.result_type(s))


KERNELS: dict[str, Callable] = {
    "dotproduct_0": dot_product(0.0),
    "dotproduct_1": dot_product(1.0),
    "seasonality_24": periodic(24.0 / 564),
    "seasonality_168": periodic(168.0 / 564),
    "rationalquadratic_1": rational_quadratic(1.0),
    "rationalquadratic_10": rational_quadratic(10.0),
    "rbf_0.1": rbf(0.1),
    "rbf_1": rbf(1.0),
    "white_0.1": white(0.1),
    "white_1": white(1.0),
}


def gram(kernel: Callable, length: int) -> jax.Array:
    """K[i, j] = k(t_i, t_j) on t = i / length. -> [length, length]"""
    t = jnp.arange(length, dtype=V.float_dtype()) / length
    return kernel(t[:, None], t[None, :])


def sample(key: jax.Array, kernel: str | Callable, length: int = INPUT + HORIZON) -> jax.Array:
    """One GP draw [length] with zero mean and the named kernel (or a kernel function k(s, t)); key: a PRNG key.
    Uses K = U diag(λ) Uᵀ with λ clipped at 0 rather than Cholesky: periodic and dot-product Gram matrices are
    numerically low-rank."""
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
        kernel = KERNELS[kernel]
    k = gram(kernel, length)
    lam, vecs = jnp.linalg.eigh(k)
    return vecs @ (jnp.sqrt(jnp.maximum(lam, 0.0)) * jax.random.normal(key, (length,), k.dtype))


def compose(names: list[str], ops: list[str]) -> Callable:
    """A kernel built from named kernels left to right with '+' or '*' (e.g. rbf_1 + seasonality_24)."""
    if len(ops) != len(names) - 1 or any(op not in "+*" for op in ops):
        raise ValueError(f"ops must be {len(names) - 1} of '+' or '*', got {ops!r}")
    kernels = [KERNELS[n] for n in names]

    def k(s, t):
        out = kernels[0](s, t)
        for op, kern in zip(ops, kernels[1:]):
            out = out + kern(s, t) if op == "+" else out * kern(s, t)
        return out
    return k

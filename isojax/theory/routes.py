"""Second routes written in JAX for the checks, sharing no function with isojax: the cross-entropy of a softmax
head written out (autodiff of it is T2's "vs autodiff" route, and its closed-form SGD step is T2c's route at
every training step).

This module imports JAX and nothing of isojax (tests/test_theory.py walks its syntax tree to make sure): a bug in
`isojax.head` cannot reach a route that is compared with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["cross_entropy", "sgd_step"]


def cross_entropy(phi: ArrayLike, h: ArrayLike, y: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """ℓ = log Σ_w exp(z_w) - z_y with z = Φh + b, the log-sum-exp shifted by max z. phi [V, d], h [d], y [] -> []"""
    z = phi @ h if b is None else phi @ h + b
    m = jax.lax.stop_gradient(jnp.max(z))  # the shift is a constant: its derivative cancels exactly
    return m + jnp.log(jnp.sum(jnp.exp(z - m))) - z[y]


def sgd_step(phi: ArrayLike, b: ArrayLike, xs: ArrayLike, ys: ArrayLike, lr: float) -> tuple[jax.Array, jax.Array]:
    """Φ - lr·mean_i (p_i - e_yi) h_iᵀ and b - lr·mean_i (p_i - e_yi): one SGD step of the mean cross-entropy,
    with p_i a softmax written out here. phi [V, d], b [V], xs [B, d], ys [B] -> (phi, b)"""
    z = xs @ phi.T + b
    e = jnp.exp(z - jnp.max(z, axis=-1, keepdims=True))
    g = e / jnp.sum(e, axis=-1, keepdims=True) - jax.nn.one_hot(ys, phi.shape[0], dtype=phi.dtype)
    return phi - lr * (g.T @ xs) / xs.shape[0], b - lr * jnp.mean(g, axis=0)

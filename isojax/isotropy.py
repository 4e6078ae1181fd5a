"""Isotropy measures of point clouds and LM heads (THEORY.md T4, T6 and "Where the measures come from").

Every measure takes one cloud `x: [n, d]` (or a head `phi: [V, d]`) and is `vmap`-able over a batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from isojax import _validate as V


def principal_directions(x) -> jax.Array:
    """Unit eigenvectors of xᵀx with both signs, E = {±u_i}. [n, d] -> [2d, d]

    Mu & Viswanath take E = eigenvectors of ΦᵀΦ; an eigenvector's sign is arbitrary and Z(c) ≠ Z(-c) when the
    rows share a mean, so both signs are kept, which makes I(Φ) well defined.
    """
    x = V.array("x", x, ndim=2, what="[n, d]")
    _, vecs = jnp.linalg.eigh(x.T @ x)
    return jnp.concatenate([vecs.T, -vecs.T], axis=0)


def log_partition_along(phi, directions) -> jax.Array:
    """log Z(c) = logsumexp_w φ_wᵀc for each direction c. phi: [V, d], directions: [m, d] -> [m]"""
    phi = V.array("phi", phi, ndim=2, what="[V, d]")
    directions = V.array("directions", directions, ndim=2, what="[m, d]")
    V.same_size("phi", phi.shape[1], "directions", directions.shape[1], "the embedding dimension d")
    return jax.nn.logsumexp(directions @ phi.T, axis=-1)


def partition_isotropy(phi) -> jax.Array:
    """I(Φ) = min_c Z(c) / max_c Z(c) over c in E (T4), in log space: never overflows. [V, d] -> []"""
    log_z = log_partition_along(phi, principal_directions(phi))
    return jnp.exp(log_z.min() - log_z.max())

"""Direction and distance measures: mean pairwise cosine, pairwise distances, local intrinsic dimension.
Degenerate inputs follow the rules in `isojax.isotropy._cloud`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from isojax.isotropy import _cloud as C

__all__ = ["local_intrinsic_dimension", "mean_cosine", "pairwise_distances"]


def mean_cosine(x: ArrayLike, centre: bool = False) -> jax.Array:
    """Mean cosine similarity over distinct pairs, O(nd) via ‖Σu_i‖² = n + Σ_{i≠j} u_i·u_j. [n, d] -> []

    Zero vectors have no direction: they are excluded (the mean is over pairs of nonzero rows; after
    centring, a row equal to the mean is a zero vector). `isotropy.measure` reports how many rows of x were
    zero. Fewer than 2 nonzero rows raise ValueError eagerly and give NaN inside jit. Scale-invariant over
    the whole float range (rescaled by a power of two first).
    """
    x = C.cloud(x, gram=False)
    if C.is_concrete(x):
        rows = np.asarray(x, np.float64)
        if int(np.sum(np.any((rows - rows.mean(axis=0) if centre else rows) != 0, axis=1))) < 2:
            raise ValueError(f"x has fewer than 2 nonzero rows{' after centring' if centre else ''} "
                             f"(shape {tuple(x.shape)}): the mean cosine is undefined")

    def plain(x):  # the ordinary case: every row kept (a constant mask, which XLA folds away)
        x = x - x.mean(axis=0) if centre else x
        return mean_pair_cosine(x, jnp.ones((x.shape[0],), bool))

    def general(x):  # extreme scales or zero rows
        x = C.rescaled(x)
        x = x - x.mean(axis=0) if centre else x
        return mean_pair_cosine(x, C.nonzero_rows(x))

    ordinary = (C.scale_exponent(x) == 0) & jnp.all(C.nonzero_rows(x - x.mean(axis=0) if centre else x))
    if C.is_concrete(ordinary):  # eager: a Python branch keeps the op-by-op computation
        return plain(x) if bool(ordinary) else general(x)
    return jax.lax.cond(ordinary, plain, general, x)


def mean_pair_cosine(x, member) -> jax.Array:
    """Mean cosine over distinct pairs of the rows where `member` is True (NaN with fewer than 2).
    x: [n, d], member: [n] bool -> []. Zero rows must be left out of `member` by the caller."""
    u = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), jnp.finfo(x.dtype).tiny)
    u = jnp.where(member[:, None], u, 0.0)
    m = member.sum()
    total = jnp.sum(u.sum(axis=0) ** 2)
    return jnp.where(m >= 2, (total - m) / jnp.maximum(m * (m - 1), 1), jnp.nan)


def pairwise_distances(x: ArrayLike) -> jax.Array:
    """Euclidean distances [n, n] with an exact zero diagonal (computed through the Gram matrix). [n, d]

    Works at the scale given (no rescaling): callers that need scale robustness rescale first.
    """
    sq = jnp.sum(x**2, axis=1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    return jnp.where(jnp.eye(x.shape[0], dtype=bool), 0.0, jnp.sqrt(d2))


def tree_sum(v, axis: int = 0) -> jax.Array:
    """Sum along `axis` in a fixed pairwise order (zero-padded to a power of two, then halved repeatedly):
    the same bits whatever the batch layout or device count. [..., m, ...] -> [..., ...]"""
    v = jnp.moveaxis(v, axis, 0)
    size = 1 << max(v.shape[0] - 1, 0).bit_length()
    v = jnp.pad(v, [(0, size - v.shape[0])] + [(0, 0)] * (v.ndim - 1))
    while v.shape[0] > 1:
        half = v.shape[0] // 2
        v = v[:half] + v[half:]
    return v[0]


def local_intrinsic_dimension(x: ArrayLike, k: int = 20) -> jax.Array:
    """Maximum-likelihood k-NN intrinsic dimension (Levina & Bickel 2004), averaged over points (MacKay &
    Ghahramani's pooled inverse). [n, d] -> []

    Scale-invariant (rescaled first). A point mass raises ValueError eagerly and gives NaN inside jit.
    Duplicate points (a zero distance to a neighbour) are floored at the smallest normal float, which pulls
    the estimate towards 0: remove duplicates first if they are not meant to be there.
    """
    x = C.cloud(x, gram=False)
    if not 2 <= k < x.shape[0]:
        raise ValueError(f"k must be in [2, n) for x of shape {tuple(x.shape)}, got {k}")
    C.check_distances(x)
    C.refuse_point_mass(x, what="the local intrinsic dimension")
    x = C.rescaled(x)
    dist = pairwise_distances(x) + jnp.diag(jnp.full((x.shape[0],), jnp.inf, x.dtype))
    nearest = -jax.lax.top_k(-dist, k)[0]  # [n, k], ascending
    nearest = jnp.maximum(nearest, jnp.finfo(x.dtype).tiny)
    inv = jnp.mean(jnp.log(nearest[:, -1:] / nearest[:, :-1]), axis=1)  # 1/m̂ per point
    # 1 / mean(inv), as n / Σ inv with the sum behind a barrier: XLA rewrote the division chain differently
    # for a batch on 1 device and one split over 2, and the LID differed by an ulp between the two tables;
    # tree_sum fixes the summation order whatever the layout
    total = jax.lax.optimization_barrier(tree_sum(inv))
    return C.point_mass_to(x, jnp.where(total > 0, inv.shape[0] / total, jnp.nan))

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

    Scale-invariant (rescaled first). Duplicates: a point's k neighbours are the k nearest *distinct* rows
    that differ from it (one of each group of copies; rows closer than the distance computation resolves,
    about 2e-3·|x| in float32 and 1e-7·|x| in float64, count as copies), and each copy carries its point's
    estimate into the average. So a duplicated cloud has the LID of its distinct rows, at any scale (a zero
    distance has no log(T_k / T_j)). It needs k + 1 distinct rows: fewer (a point mass included) raise
    ValueError eagerly and give NaN inside jit.
    """
    x = C.cloud(x, gram=False)
    if not 2 <= k < x.shape[0]:
        raise ValueError(f"k must be in [2, n) for x of shape {tuple(x.shape)}, got {k}")
    C.check_distances(x)
    C.refuse_point_mass(x, what="the local intrinsic dimension")
    refuse_few_distinct(x, k)
    return C.point_mass_to(x, pooled_dimension(lid_inverses(C.rescaled(x), k)))


def refuse_few_distinct(x, k: int, name: str = "x") -> None:
    """Raise if a concrete cloud has fewer than k + 1 distinct rows: some point then has fewer than k neighbours."""
    if C.is_concrete(x):
        distinct = len(np.unique(np.asarray(x), axis=0))
        if distinct < k + 1:
            raise ValueError(f"{name} has {distinct} distinct rows (shape {tuple(x.shape)}): the local intrinsic "
                             f"dimension with k = {k} neighbours needs at least k + 1 = {k + 1}")


def lid_neighbours(x, count: int) -> tuple[jax.Array, jax.Array]:
    """Distances and indices of each point's `count` nearest distinct neighbours, ascending (copies of a row
    are one neighbour, the row with no copy before it; copies of the point none); inf past the last.
    x: [n, d] rescaled -> ([n, count], [n, count])"""
    gram = x @ x.T
    sq = jnp.diag(gram)  # not Σx²: with the matmul's own diagonal, copies come out at exactly 0
    scale = sq[:, None] + sq[None, :]
    d2 = scale - 2.0 * gram
    # copies: d² within 16 ulps of the norms (rounding noise of the Gram route), the diagonal included
    same = d2 <= 16 * jnp.finfo(x.dtype).eps * scale
    n = x.shape[0]
    first = ~jnp.any(same & (jnp.arange(n)[:, None] < jnp.arange(n)[None, :]), axis=0)
    dist = jnp.where(first[None, :] & ~same, jnp.sqrt(jnp.maximum(d2, 0.0)), jnp.inf)
    neg, idx = jax.lax.top_k(-dist, count)
    return -neg, idx


def lid_inverses(x, k: int) -> jax.Array:
    """Each point's inverse MLE dimension 1/m̂_i = mean_j log(T_k / T_j) over its k nearest distinct neighbours
    (`lid_neighbours`; T_1 <= ... <= T_k); NaN for a point with fewer than k. x: [n, d] rescaled -> [n]"""
    nearest, _ = lid_neighbours(x, k)
    inv = jnp.mean(jnp.log(nearest[:, -1:] / nearest[:, :-1]), axis=1)
    return jnp.where(jnp.isfinite(nearest[:, -1]), inv, jnp.nan)


def pooled_dimension(inv) -> jax.Array:
    """n / Σ inv (NaN when some inverse is NaN, or Σ inv = 0: every neighbourhood equidistant). [n] -> []"""
    # 1 / mean(inv), as n / Σ inv with the sum behind a barrier: XLA rewrote the division chain differently
    # for a batch on 1 device and one split over 2, and the LID differed by an ulp between the two tables;
    # tree_sum fixes the summation order whatever the layout
    total = jax.lax.optimization_barrier(tree_sum(inv))
    return jnp.where(total > 0, inv.shape[0] / total, jnp.nan)

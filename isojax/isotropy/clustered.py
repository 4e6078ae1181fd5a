"""Clustered cosine (Cai et al. 2021): k-means for every k, the best silhouette, per-cluster mean cosine.
Degenerate inputs follow the rules in `isojax.isotropy._cloud`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from isojax import cluster
from isojax.isotropy import _cloud as C
from isojax.isotropy.cosine import mean_pair_cosine, pairwise_distances

__all__ = ["ClusteredCosine", "clustered_cosine", "copies_only", "subsample"]


class ClusteredCosine(NamedTuple):
    """Clustered cosine of one cloud: the score, the chosen k (1 = fallback), every k's silhouette."""

    score: jax.Array  # [] mean over clusters of the within-cluster mean pairwise cosine
    best_k: jax.Array  # [] int, 1 when the best silhouette is below the threshold
    ks: jax.Array  # [K] the k tried
    silhouettes: jax.Array  # [K]
    labels: jax.Array  # [m] cluster of each subsampled point
    sample: jax.Array  # [m] row indices of x that were subsampled


def subsample(key: jax.Array, n: int, m: int) -> jax.Array:
    """The seeded subsample of m of n row indices that clustered cosine uses for `key`. -> [m] int"""
    k_sample, _ = jax.random.split(key)
    return jax.random.permutation(k_sample, n)[:m]


def clustered_cosine(x: ArrayLike, key: jax.Array, max_points: int = 2000, k_min: int = 2, k_max: int = 16,
                     restarts: int = 4, min_silhouette: float = 0.1) -> ClusteredCosine:
    """Clustered cosine as the study measures it (Cai et al. 2021): centre, seeded subsample of at most
    max_points, k-means for every k in [k_min, k_max] (k-means++, Lloyd to convergence, restarts), the k with
    the best silhouette, one cluster when that silhouette is below min_silhouette; then in each cluster
    re-centre and take the mean cosine over distinct pairs, and average over clusters. x: [n, d].

    Scale-invariant (rescaled by a power of two first). Re-centred points that are exactly zero have no
    direction and are left out of their cluster's cosine. A point mass raises ValueError eagerly and gives
    a NaN score inside jit. So does a clustering in which no cluster has two points that differ from its
    mean (every cluster one point or copies of one point, e.g. the embedding layer of a model without
    position embeddings over a few distinct tokens): the within-cluster cosine has no pair to average.
    """
    x = C.cloud(x, gram=False)
    if not 2 <= k_min <= k_max:
        raise ValueError(f"need 2 <= k_min <= k_max, got k_min={k_min}, k_max={k_max}")
    m = min(x.shape[0], max_points)
    if k_max >= m:
        raise ValueError(f"k_max={k_max} must be smaller than the number of points, x has shape {tuple(x.shape)}")
    C.check_distances(x[:m], "x (subsampled to max_points rows)")
    C.refuse_point_mass(x, what="the clustered cosine")
    result = _clustered_cosine(x, key, m, k_min, k_max, restarts, min_silhouette)
    refuse_no_pairs(result.score, result.best_k, x.shape)
    return result


def copies_only(pts: jax.Array, labels: jax.Array, k_max: int) -> jax.Array:
    """Which rows lie in a cluster whose members are all equal (exactly). pts: [m, d], labels: [m] -> [m] bool"""
    member = labels[None, :] == jnp.arange(k_max)[:, None]  # [k_max, m]
    first = jnp.argmax(member, axis=1)  # one member of each cluster
    differs = jnp.any(pts != pts[first[labels]], axis=1)  # [m]
    spread = jnp.zeros((k_max,), bool).at[labels].max(differs)
    return ~spread[labels]


def refuse_no_pairs(score, best_k, shape, name: str = "x") -> None:
    """Raise if a concrete clustered cosine is NaN for a cloud with spread: no cluster had a pair to average."""
    if C.is_concrete(score) and bool(jnp.isnan(score)):
        raise ValueError(f"{name} (shape {tuple(shape)}): clustered cosine is undefined: its clustering (k = "
                         f"{int(best_k)}) has no cluster with two points that differ from the cluster's mean (each "
                         "cluster is one point or copies of one point, as in an embedding layer of a few distinct "
                         "tokens); remove duplicate rows, or measure without clustered cosine")


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _clustered_cosine(x, key, m, k_min, k_max, restarts, min_silhouette):
    _, k_means = jax.random.split(key)
    sample = subsample(key, x.shape[0], m)
    x = C.rescaled(x)
    pts = x[sample] - x.mean(axis=0)
    fit = cluster.kmeans_all_k(k_means, pts, k_min, k_max, restarts)
    dist = pairwise_distances(pts)
    sil = jax.vmap(lambda lab: cluster.silhouette_from_distances(dist, lab, k_max))(fit.labels)
    best = jnp.argmax(sil)
    use = sil[best] >= min_silhouette
    labels = jnp.where(use, fit.labels[best], 0)
    member = labels[None, :] == jnp.arange(k_max)[:, None]  # [k_max, m]
    counts = member.sum(axis=1)
    means = (member.astype(pts.dtype) @ pts) / jnp.maximum(counts, 1)[:, None]
    # a cluster of copies of one point has no spread, but its rounded mean differs from the point by an ulp,
    # and the identical residuals would score a cosine of 1: they are set to exactly zero (no direction)
    recentred = jnp.where(copies_only(pts, labels, k_max)[:, None], 0.0, pts - means[labels])
    direction = C.nonzero_rows(recentred)
    per_cluster = jax.vmap(lambda mem: mean_pair_cosine(recentred, mem & direction))(member)
    score = jnp.nanmean(jnp.where((member & direction).sum(axis=1) >= 2, per_cluster, jnp.nan))
    score = C.point_mass_to(x, score)
    return ClusteredCosine(score, jnp.where(use, fit.ks[best], 1), fit.ks, sil, labels, sample)

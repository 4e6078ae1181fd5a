"""k-means for every k in a range at once, and the silhouette of each clustering, in JAX.

All (k, restart) pairs run in one Lloyd loop: their centroids are concatenated ([Σk, d] per restart), so one
matmul assigns every point for every k, and one more sums the new centroids. k-means++ seeding for k is the
first k picks of one k_max-long k-means++ run per restart (the picks do not depend on k), as in
scikit-learn's sequential version without local trials. Silhouettes share one pairwise-distance matrix.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class KMeansAll(NamedTuple):
    """Result for k = k_min..k_max: labels [K, n] and inertia [K] of the best restart per k."""

    ks: jax.Array  # [K]
    labels: jax.Array  # [K, n]
    inertia: jax.Array  # [K]
    iterations: jax.Array  # [] Lloyd iterations until every (k, restart) converged


def _layout(k_min: int, k_max: int):
    """Static index maps between the padded [K, k_max] and flat [Σk] centroid layouts."""
    ks = np.arange(k_min, k_max + 1)
    offsets = np.concatenate([[0], np.cumsum(ks)[:-1]])
    total = int(ks.sum())
    padded_to_flat = np.full((len(ks), k_max), total, dtype=np.int32)  # `total` = dummy column
    for i, (k, off) in enumerate(zip(ks, offsets)):
        padded_to_flat[i, :k] = off + np.arange(k)
    flat_k = np.repeat(np.arange(len(ks)), ks)  # which k each flat centroid belongs to
    flat_j = np.concatenate([np.arange(k) for k in ks])  # its index within that k
    return ks, offsets, total, padded_to_flat, flat_k, flat_j


def kmeans_plus_plus(key, x, k_max: int) -> jax.Array:
    """k-means++ seeding: k_max centroids [k_max, d], each drawn with probability ∝ D² to the chosen ones."""
    n = x.shape[0]
    keys = jax.random.split(key, k_max)
    first = x[jax.random.randint(keys[0], (), 0, n)]
    d2 = jnp.sum((x - first) ** 2, axis=1)

    def pick(carry, k):
        d2, = carry
        idx = jax.random.categorical(k, jnp.log(jnp.maximum(d2, 0.0) + jnp.finfo(x.dtype).tiny))
        c = x[idx]
        return (jnp.minimum(d2, jnp.sum((x - c) ** 2, axis=1)),), c

    _, rest = jax.lax.scan(pick, (d2,), keys[1:])
    return jnp.concatenate([first[None], rest], axis=0)


def kmeans_all_k(key, x, k_min: int = 2, k_max: int = 16, restarts: int = 4, max_iter: int = 300,
                 tol: float = 1e-4) -> KMeansAll:
    """Lloyd's k-means for every k in [k_min, k_max] with `restarts` k-means++ seeds each; the restart with
    the lowest inertia is kept per k. Stops when every centroid moved less than tol × the mean per-feature
    variance (scikit-learn's rule) or after max_iter. x: [n, d]."""
    n, d = x.shape
    ks, offsets, total, padded_to_flat, flat_k, flat_j = _layout(k_min, k_max)
    seeds = jax.vmap(lambda k: kmeans_plus_plus(k, x, k_max))(jax.random.split(key, restarts))  # [R, k_max, d]
    centroids = seeds[:, flat_j, :]  # [R, Σk, d]
    threshold = tol * jnp.mean(jnp.var(x, axis=0))
    sq_x = jnp.sum(x**2, axis=1)
    flat_k = jnp.asarray(flat_k)
    padded_to_flat = jnp.asarray(padded_to_flat)

    def assign(c):
        # squared distances to every centroid of every k: [R, n, Σk], then padded to [R, n, K, k_max]
        d2 = jnp.sum(c**2, axis=-1)[:, None, :] - 2.0 * jnp.einsum("nd,rcd->rnc", x, c) + sq_x[None, :, None]
        d2 = jnp.concatenate([d2, jnp.full(d2.shape[:2] + (1,), jnp.inf, d2.dtype)], axis=-1)
        padded = d2[:, :, padded_to_flat]
        return jnp.argmin(padded, axis=-1), jnp.min(padded, axis=-1)  # [R, n, K]

    def update(c, labels):
        flat = labels + jnp.asarray(offsets)[None, None, :]  # [R, n, K] flat centroid ids
        onehot = jnp.zeros((restarts, n, total), x.dtype)
        onehot = jax.vmap(lambda o, f: o.at[jnp.arange(n)[:, None], f].set(1.0))(onehot, flat)
        counts = onehot.sum(axis=1)  # [R, Σk]
        sums = jnp.einsum("rnc,nd->rcd", onehot, x)
        # an empty cluster keeps its centroid
        return jnp.where(counts[..., None] > 0, sums / jnp.maximum(counts, 1.0)[..., None], c)

    def body(state):
        c, _, it = state
        labels, _ = assign(c)
        new = update(c, labels)
        shift = jnp.sum((new - c) ** 2, axis=-1)  # [R, Σk]
        return new, jnp.max(shift), it + 1

    def cond(state):
        _, shift, it = state
        return (shift > threshold) & (it < max_iter)

    c, _, iterations = jax.lax.while_loop(cond, body, (centroids, jnp.asarray(jnp.inf, x.dtype), 0))
    labels, dist = assign(c)  # [R, n, K]
    inertia = dist.sum(axis=1)  # [R, K]
    best = jnp.argmin(inertia, axis=0)  # [K]
    labels = jnp.take_along_axis(labels, best[None, None, :], axis=0)[0].T  # [K, n]
    return KMeansAll(jnp.asarray(ks), labels, jnp.min(inertia, axis=0), iterations)


def silhouette_from_distances(dist, labels, k_max: int) -> jax.Array:
    """Mean silhouette (scikit-learn's convention: 0 for points in singleton clusters).
    dist: [n, n], labels: [n] ints < k_max -> []"""
    onehot = jax.nn.one_hot(labels, k_max, dtype=dist.dtype)  # [n, k_max]
    counts = onehot.sum(axis=0)
    sums = dist @ onehot  # [n, k_max]: total distance from i to each cluster
    own = counts[labels]
    a = jnp.sum(sums * onehot, axis=1) / jnp.maximum(own - 1, 1)
    mean_other = sums / jnp.maximum(counts, 1)
    b = jnp.min(jnp.where((onehot > 0) | (counts[None, :] == 0), jnp.inf, mean_other), axis=1)
    s = jnp.where(own > 1, (b - a) / jnp.maximum(jnp.maximum(a, b), jnp.finfo(dist.dtype).tiny), 0.0)
    return jnp.mean(s)

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
from jax.typing import ArrayLike

__all__ = ["KMeansAll", "kmeans_all_k", "kmeans_plus_plus", "silhouette_from_distances"]


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
    for i, (k, off) in enumerate(zip(ks, offsets, strict=True)):
        padded_to_flat[i, :k] = off + np.arange(k)
    flat_k = np.repeat(np.arange(len(ks)), ks)  # which k each flat centroid belongs to
    flat_j = np.concatenate([np.arange(k) for k in ks])  # its index within that k
    return ks, offsets, total, padded_to_flat, flat_k, flat_j


def kmeans_plus_plus(key: jax.Array, x: ArrayLike, k_max: int) -> jax.Array:
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


def _capacities(total: int) -> tuple[int, ...]:
    """Static sizes of the recomputed column set, largest first: every column, then a quarter, a sixteenth."""
    caps = [total]
    while caps[-1] // 4 >= 16:
        caps.append(-(-caps[-1] // 4))
    return tuple(caps)


def kmeans_all_k(key: jax.Array, x: ArrayLike, k_min: int = 2, k_max: int = 16, restarts: int = 4, max_iter: int = 300,
                 tol: float = 1e-4) -> KMeansAll:
    """Lloyd's k-means for every k in [k_min, k_max] with `restarts` k-means++ seeds each; the restart with
    the lowest inertia is kept per k. Stops when every centroid moved less than tol × the mean per-feature
    variance (scikit-learn's rule) or after max_iter. x: [n, d].

    Exact Lloyd iterations, but each iteration recomputes only the centroids whose cluster gained or lost a
    point, and only their distance columns: every other centroid is the mean of the same points as before,
    so it and its distances are unchanged. Late iterations, where few points move (and runs that have
    converged), then cost a fraction of a full pass; the recomputed set is padded to one of a few static
    sizes (a lax.cond between them).
    """
    n, d = x.shape
    ks, offsets, total, padded_to_flat, flat_k, flat_j = _layout(k_min, k_max)
    cols = restarts * total
    seeds = jax.vmap(lambda k: kmeans_plus_plus(k, x, k_max))(jax.random.split(key, restarts))  # [R, k_max, d]
    centroids = seeds[:, flat_j, :].reshape(cols, d)  # column p = r·Σk + flat index
    threshold = tol * jnp.mean(jnp.var(x, axis=0))
    sq_x = jnp.sum(x**2, axis=1)
    # per column: its restart, its k (as an index into ks) and its index within that k; one dummy column
    col_r = jnp.asarray(np.append(np.repeat(np.arange(restarts), total), 0))
    col_k = jnp.asarray(np.append(np.tile(flat_k, restarts), 0))
    col_j = jnp.asarray(np.append(np.tile(flat_j, restarts), -1))  # -1: the dummy has no members
    to_flat = jnp.asarray(np.arange(restarts)[:, None] * total + offsets[None, :])  # [R, K] first column
    padded_to_flat = jnp.asarray(padded_to_flat)

    def distances(c):  # squared distances to centroids c [m, d] -> [n, m]
        return jnp.sum(c**2, axis=-1)[None, :] - 2.0 * (x @ c.T) + sq_x[:, None]

    def assign(dist):  # [n, cols] -> labels [n, R, K] within each k, and the distance to it
        dist = dist.reshape(n, restarts, total)
        dist = jnp.concatenate([dist, jnp.full((n, restarts, 1), jnp.inf, dist.dtype)], axis=-1)
        padded = dist[:, :, padded_to_flat]  # [n, R, K, k_max]
        return jnp.argmin(padded, axis=-1), jnp.min(padded, axis=-1)

    def recompute(size):
        def step(state):
            c, dist, labels, changed = state
            idx = jnp.nonzero(changed, size=size, fill_value=cols)[0]  # [size], padded with the dummy
            members = labels[:, col_r[idx], col_k[idx]] == col_j[idx][None, :]  # [n, size]
            onehot = members.astype(x.dtype)
            counts = onehot.sum(axis=0)
            old = c[jnp.minimum(idx, cols - 1)]
            # an empty cluster keeps its centroid
            new = jnp.where(counts[:, None] > 0, (onehot.T @ x) / jnp.maximum(counts, 1.0)[:, None], old)
            shift = jnp.max(jnp.where(idx < cols, jnp.sum((new - old) ** 2, axis=-1), 0.0))
            c = c.at[idx].set(new, mode="drop")
            dist = dist.at[:, idx].set(distances(new), mode="drop")
            return c, dist, shift
        return step

    steps = [recompute(size) for size in _capacities(cols)]

    def body(state):
        c, dist, labels, changed, _, it = state
        count = changed.sum()
        # the smallest static size that holds every changed column
        branch = sum((count <= size).astype(jnp.int32) for size in _capacities(cols)[1:])
        c, dist, shift = jax.lax.switch(branch, steps, (c, dist, labels, changed))
        new_labels, _ = assign(dist)
        moved = new_labels != labels  # [n, R, K]
        old_col = jnp.where(moved, to_flat[None] + labels, cols)
        new_col = jnp.where(moved, to_flat[None] + new_labels, cols)
        changed = jnp.zeros(cols + 1, bool).at[old_col].set(True).at[new_col].set(True)[:cols]
        return c, dist, new_labels, changed, shift, it + 1

    def cond(state):
        *_, shift, it = state
        return (shift > threshold) & (it < max_iter)

    dist = distances(centroids)
    labels, _ = assign(dist)
    state = (centroids, dist, labels, jnp.ones(cols, bool), jnp.asarray(jnp.inf, x.dtype), 0)
    _, dist, labels, _, _, iterations = jax.lax.while_loop(cond, body, state)
    labels, nearest = assign(dist)  # [n, R, K]
    inertia = nearest.sum(axis=0)  # [R, K]
    best = jnp.argmin(inertia, axis=0)  # [K]
    labels = jnp.take_along_axis(labels, best[None, None, :], axis=1)[:, 0].T  # [K, n]
    return KMeansAll(jnp.asarray(ks), labels, jnp.min(inertia, axis=0), iterations)


def silhouette_from_distances(dist: ArrayLike, labels: ArrayLike, k_max: int) -> jax.Array:
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

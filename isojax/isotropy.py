"""Isotropy measures of point clouds and LM heads (THEORY.md T4, T6 and "Where the measures come from").

Every measure takes one cloud `x: [n, d]` (or a head `phi: [V, d]`) and is `vmap`-able over a batch.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from isojax import _validate as V
from isojax import cluster


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


def _cloud(x, name: str = "x") -> jax.Array:
    x = V.array(name, x, ndim=2, what="[n, d]")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 points, got shape {tuple(x.shape)}")
    return x


def mean_cosine(x, centre: bool = False) -> jax.Array:
    """Mean cosine similarity over distinct pairs, O(nd) via ‖Σu_i‖² = n + Σ_{i≠j} u_i·u_j. [n, d] -> []"""
    x = _cloud(x)
    if centre:
        x = x - x.mean(axis=0)
    return _mean_pair_cosine(x, jnp.ones((x.shape[0],), bool))


def _mean_pair_cosine(x, member):
    """Mean cosine over distinct pairs of the rows where `member` is True (NaN with fewer than 2)."""
    u = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), jnp.finfo(x.dtype).tiny)
    u = jnp.where(member[:, None], u, 0.0)
    m = member.sum()
    total = jnp.sum(u.sum(axis=0) ** 2)
    return jnp.where(m >= 2, (total - m) / jnp.maximum(m * (m - 1), 1), jnp.nan)


def covariance_spectrum(x) -> jax.Array:
    """Eigenvalues of the sample covariance, largest first. [n, d] -> [d]"""
    x = _cloud(x)
    centred = x - x.mean(axis=0)
    # Gram matrix + eigvalsh: one matmul does the O(nd²) work (an SVD of [n, d] is several times slower);
    # small eigenvalues lose relative accuracy, which measures of spread do not need.
    lam = jnp.linalg.eigvalsh(centred.T @ centred / (x.shape[0] - 1))[::-1]
    return jnp.maximum(lam, 0.0)


def after(x, *deps):
    """x, once every array in deps is computed. Used to run eigen-decompositions one after another: two
    independent batched eigh calls in one program can deadlock jaxlib's CPU LAPACK thread pool (0.10.2)."""
    return jax.lax.optimization_barrier((x, deps))[0]


def d_80(x, fraction: float = 0.8) -> jax.Array:
    """d(0.8): principal components needed to reach `fraction` of the variance (full spectrum). -> [] int"""
    return d_80_from_spectrum(covariance_spectrum(x), fraction)


def d_80_from_spectrum(lam, fraction: float = 0.8) -> jax.Array:
    """d(0.8) from covariance eigenvalues sorted largest first. [d] -> [] int"""
    explained = jnp.cumsum(lam) / lam.sum()
    return jnp.argmax(explained >= fraction - 1e-6 * fraction) + 1


def top3_variance_ratio(x) -> jax.Array:
    """Fraction of the variance in each of the top 3 principal components. [n, d] -> [3]"""
    lam = covariance_spectrum(x)
    return jnp.pad(lam, (0, 3))[:3] / lam.sum()


def isoscore_from_spectrum(lam) -> jax.Array:
    """IsoScore (Rudman et al. 2022) from covariance eigenvalues λ [n_dim]: 1 isotropic, 0 rank one."""
    n = lam.shape[-1]
    lam_hat = lam * math.sqrt(n) / jnp.linalg.norm(lam, axis=-1, keepdims=True)
    delta = jnp.linalg.norm(lam_hat - 1.0, axis=-1) / math.sqrt(2 * (n - math.sqrt(n)))
    return ((n - delta**2 * (n - math.sqrt(n))) ** 2 - n) / (n * (n - 1))


def isoscore(x) -> jax.Array:
    """IsoScore of a point cloud: from the variances along its principal components. [n, d] -> []"""
    return isoscore_from_spectrum(covariance_spectrum(x))


def isoscore_star(x, zeta: float = 0.0, target=None) -> jax.Array:
    """IsoScore* (Rudman & Eickhoff 2024): IsoScore of the shrunk covariance (1-ζ)Σ_x + ζΣ_target,
    differentiable (eigvalsh), so it can be used as a training penalty. `target` [d, d] is a covariance from
    a larger sample; without one, the shrinkage target is tr(Σ_x)/d·I. [n, d] -> []"""
    x = _cloud(x)
    centred = x - x.mean(axis=0)
    cov = centred.T @ centred / (x.shape[0] - 1)
    if target is None:
        target = jnp.trace(cov) / x.shape[1] * jnp.eye(x.shape[1], dtype=cov.dtype)
    else:
        target = V.array("target", target, ndim=2, what="[d, d]")
        if target.shape != cov.shape:
            raise ValueError(f"target must have shape {cov.shape}, got shape {tuple(target.shape)}")
    lam = jnp.linalg.eigvalsh((1 - zeta) * cov + zeta * target)
    return isoscore_from_spectrum(jnp.maximum(lam, 0.0))


def pairwise_distances(x) -> jax.Array:
    """Euclidean distances [n, n] with an exact zero diagonal (computed through the Gram matrix)."""
    sq = jnp.sum(x**2, axis=1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    return jnp.where(jnp.eye(x.shape[0], dtype=bool), 0.0, jnp.sqrt(d2))


def local_intrinsic_dimension(x, k: int = 20) -> jax.Array:
    """Maximum-likelihood k-NN intrinsic dimension (Levina & Bickel 2004), averaged over points (MacKay &
    Ghahramani's pooled inverse). [n, d] -> []"""
    x = _cloud(x)
    if not 2 <= k < x.shape[0]:
        raise ValueError(f"k must be in [2, n) for x of shape {tuple(x.shape)}, got {k}")
    dist = pairwise_distances(x) + jnp.diag(jnp.full((x.shape[0],), jnp.inf, x.dtype))
    nearest = -jax.lax.top_k(-dist, k)[0]  # [n, k], ascending
    nearest = jnp.maximum(nearest, jnp.finfo(x.dtype).tiny)
    inv = jnp.mean(jnp.log(nearest[:, -1:] / nearest[:, :-1]), axis=1)  # 1/m̂ per point
    return 1.0 / jnp.mean(inv)


class ClusteredCosine(NamedTuple):
    """Clustered cosine of one cloud: the score, the chosen k (1 = fallback), every k's silhouette."""

    score: jax.Array  # [] mean over clusters of the within-cluster mean pairwise cosine
    best_k: jax.Array  # [] int, 1 when the best silhouette is below the threshold
    ks: jax.Array  # [K] the k tried
    silhouettes: jax.Array  # [K]
    labels: jax.Array  # [m] cluster of each subsampled point
    sample: jax.Array  # [m] row indices of x that were subsampled


def clustered_cosine(x, key, max_points: int = 2000, k_min: int = 2, k_max: int = 16, restarts: int = 4,
                     min_silhouette: float = 0.1) -> ClusteredCosine:
    """Clustered cosine as the study measures it (Cai et al. 2021): centre, seeded subsample of at most
    max_points, k-means for every k in [k_min, k_max] (k-means++, Lloyd to convergence, restarts), the k with
    the best silhouette, one cluster when that silhouette is below min_silhouette; then in each cluster
    re-centre and take the mean cosine over distinct pairs, and average over clusters. x: [n, d]."""
    x = _cloud(x)
    if not 2 <= k_min <= k_max:
        raise ValueError(f"need 2 <= k_min <= k_max, got k_min={k_min}, k_max={k_max}")
    m = min(x.shape[0], max_points)
    if k_max >= m:
        raise ValueError(f"k_max={k_max} must be smaller than the number of points, x has shape {tuple(x.shape)}")
    return _clustered_cosine(x, key, m, k_min, k_max, restarts, min_silhouette)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _clustered_cosine(x, key, m, k_min, k_max, restarts, min_silhouette):
    k_sample, k_means = jax.random.split(key)
    sample = jax.random.permutation(k_sample, x.shape[0])[:m]
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
    recentred = pts - means[labels]
    per_cluster = jax.vmap(lambda mem: _mean_pair_cosine(recentred, mem))(member)
    score = jnp.nanmean(jnp.where(counts >= 2, per_cluster, jnp.nan))
    return ClusteredCosine(score, jnp.where(use, fit.ks[best], 1), fit.ks, sil, labels, sample)


def all_measures(x, key, clustered: bool = True, max_points: int = 2000, lid_k: int = 20) -> dict[str, jax.Array]:
    """Every isotropy measure of one cloud [n, d] as a dict of scalars (the row of a sweep table)."""
    x = _cloud(x)
    lam = covariance_spectrum(x)
    out = {
        "isoscore": isoscore_from_spectrum(lam),
        "d80_fraction": (d_80_from_spectrum(lam) / x.shape[1]).astype(x.dtype),
        "top1_variance": lam[0] / lam.sum(),
        "cosine": mean_cosine(x),
        "cosine_centred": mean_cosine(x, centre=True),
        "partition_isotropy": partition_isotropy(after(x, lam)),
        "lid": local_intrinsic_dimension(x, min(lid_k, x.shape[0] - 1)),
    }
    if clustered:
        cc = clustered_cosine(x, key, max_points=max_points, k_max=min(16, min(x.shape[0], max_points) - 1))
        out["clustered_cosine"] = cc.score
        out["best_k"] = cc.best_k.astype(x.dtype)
    return out

"""Measures from the covariance spectrum or the principal directions: IsoScore, d(0.8), top-PC variance, and
the partition-function isotropy I(Φ) of an LM head (the project's theory notes, T4 and "where the measures
come from"). Degenerate inputs follow the rules in `isojax.isotropy._cloud`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from isojax import _validate as V
from isojax.isotropy import _cloud as C

__all__ = ["after", "covariance_spectrum", "d_80", "d_80_from_spectrum", "isoscore", "isoscore_from_covariance",
           "isoscore_from_spectrum",
           "isoscore_star", "log_partition_along", "partition_isotropy", "principal_directions",
           "top3_variance_ratio"]

_SAFE_EIGENVALUE = 2.0**60  # spectra with a largest eigenvalue in [2^-60, 2^60] have finite, normal ‖λ‖


def after(x: ArrayLike, *deps: ArrayLike) -> jax.Array:
    """x, once every array in deps is computed. Used to run eigen-decompositions one after another: two
    independent batched eigh calls in one program can deadlock jaxlib's CPU LAPACK thread pool (0.10.2)."""
    return jax.lax.optimization_barrier((x, deps))[0]


def principal_directions(x: ArrayLike) -> jax.Array:
    """Unit eigenvectors of xᵀx with both signs, E = {±u_i}. [n, d] -> [2d, d]

    Mu & Viswanath take E = eigenvectors of ΦᵀΦ; an eigenvector's sign is arbitrary and Z(c) ≠ Z(-c) when the
    rows share a mean, so both signs are kept, which makes I(Φ) well defined. Eigenvectors do not depend on
    scale, so extreme magnitudes are rescaled first (see `_cloud`).
    """
    x = C.cloud(x, min_points=1)
    xs = C.rescaled(x)
    _, vecs = jnp.linalg.eigh(xs.T @ xs)
    return jnp.concatenate([vecs.T, -vecs.T], axis=0)


def log_partition_along(phi: ArrayLike, directions: ArrayLike) -> jax.Array:
    """log Z(c) = logsumexp_w φ_wᵀc for each direction c. phi: [V, d], directions: [m, d] -> [m]"""
    phi = V.array("phi", phi, ndim=2, what="[V, d]", upcast_low=True)
    directions = V.array("directions", directions, ndim=2, what="[m, d]", upcast_low=True)
    V.same_size("phi", phi.shape[1], "directions", directions.shape[1], "the embedding dimension d")
    return jax.nn.logsumexp(directions @ phi.T, axis=-1)


def partition_isotropy(phi: ArrayLike) -> jax.Array:
    """I(Φ) = min_c Z(c) / max_c Z(c) over c in E (T4), in log space: never overflows. [V, d] -> []

    Not scale-invariant (Z depends on the norms of the rows): I(sΦ) -> 0 as s grows unless Φ is isotropic.
    A point mass has one nonzero direction (I < 1 unless φ = 0) and is a valid input.
    """
    phi = C.cloud(phi, "phi", min_points=1)
    directions = principal_directions(phi)[: phi.shape[1]]
    # one projection serves both signs: logsumexp over -p gives log Z(-u), bit for bit as projecting on -u
    proj = directions @ phi.T
    log_z = jnp.concatenate([jax.nn.logsumexp(proj, axis=-1), jax.nn.logsumexp(-proj, axis=-1)])
    return jnp.exp(log_z.min() - log_z.max())


def _spectrum(x) -> jax.Array:
    """Covariance eigenvalues of a validated cloud, largest first (no rescaling). [n, d] -> [d]"""
    centred = x - x.mean(axis=0)
    # Gram matrix + eigvalsh: one matmul does the O(nd²) work (an SVD of [n, d] is several times slower);
    # small eigenvalues lose relative accuracy, which measures of spread do not need.
    lam = jnp.linalg.eigvalsh(centred.T @ centred / (x.shape[0] - 1))[::-1]
    return jnp.maximum(lam, 0.0)


def scaled_spectrum(x) -> jax.Array:
    """Covariance eigenvalues of the rescaled cloud: proportional to the true ones, never overflowing; for the
    scale-invariant measures. [n, d] -> [d]"""
    return _spectrum(C.rescaled(x))


def covariance_spectrum(x: ArrayLike) -> jax.Array:
    """Eigenvalues of the sample covariance, largest first. [n, d] -> [d]

    Computed on the rescaled cloud and scaled back (exactly, by a power of two). Eigenvalues that do not fit
    the float type (e.g. float32 clouds of magnitude 1e20 and more) raise ValueError when called eagerly.
    A point mass gives all zeros.
    """
    x = C.cloud(x)
    e = C.scale_exponent(x)
    one = jnp.ones((), x.dtype)
    lam = C.point_mass_to(x, scaled_spectrum(x) * jnp.ldexp(one, e) * jnp.ldexp(one, e), 0)
    if C.is_concrete(lam) and not np.isfinite(np.asarray(lam)).all():
        raise ValueError(f"x has covariance eigenvalues beyond the range of {x.dtype} (shape {tuple(x.shape)}); "
                         "the scale-invariant measures (isoscore, d_80, ...) still work")
    return lam


def _normalised(lam) -> jax.Array:
    """lam itself when its norm is safely finite and normal, else lam / max(lam): same ratios."""
    top = jnp.max(lam, axis=-1, keepdims=True)
    ok = (top >= 1.0 / _SAFE_EIGENVALUE) & (top <= _SAFE_EIGENVALUE)
    return jnp.where(ok, lam, lam / top)


def d_80(x: ArrayLike, fraction: float = 0.8) -> jax.Array:
    """d(0.8): principal components needed to reach `fraction` of the variance (full spectrum). -> [] int

    A point mass raises ValueError eagerly and gives 0 inside jit.
    """
    x = C.cloud(x)
    C.refuse_point_mass(x, what="d(0.8)")
    return C.point_mass_to(x, d_80_from_spectrum(scaled_spectrum(x), fraction), 0)


def d_80_from_spectrum(lam: ArrayLike, fraction: float = 0.8) -> jax.Array:
    """d(0.8) from covariance eigenvalues sorted largest first. [d] -> [] int (0 for an all-zero spectrum)"""
    lam = _normalised(lam)
    total = lam.sum()
    explained = jnp.cumsum(lam) / total
    return jnp.where(total > 0, jnp.argmax(explained >= fraction - 1e-6 * fraction) + 1, 0)


def top3_variance_ratio(x: ArrayLike) -> jax.Array:
    """Fraction of the variance in each of the top 3 principal components. [n, d] -> [3]

    A point mass raises ValueError eagerly and gives NaN inside jit.
    """
    x = C.cloud(x)
    C.refuse_point_mass(x, what="the variance ratio")
    lam = scaled_spectrum(x)
    return C.point_mass_to(x, jnp.pad(lam, (0, 3))[:3] / lam.sum())


def isoscore_from_spectrum(lam: ArrayLike) -> jax.Array:
    """IsoScore (Rudman et al. 2022) from covariance eigenvalues λ [n_dim]: 1 isotropic, 0 rank one.

    Depends only on the ratios of λ; NaN for an all-zero spectrum (a point mass has no directions to compare).
    """
    lam = _normalised(lam)
    n = lam.shape[-1]
    lam_hat = lam * math.sqrt(n) / jnp.linalg.norm(lam, axis=-1, keepdims=True)
    delta = jnp.linalg.norm(lam_hat - 1.0, axis=-1) / math.sqrt(2 * (n - math.sqrt(n)))
    return ((n - delta**2 * (n - math.sqrt(n))) ** 2 - n) / (n * (n - 1))


def isoscore(x: ArrayLike) -> jax.Array:
    """IsoScore of a point cloud: from the variances along its principal components. [n, d] -> []

    Computed from tr Σ and ‖Σ‖_F (`isoscore_from_covariance`), with no eigen-decomposition: equal to the
    spectrum route up to rounding. Scale-invariant over the whole float range (rescaled first); a point mass
    raises ValueError eagerly and gives NaN inside jit.
    """
    x = C.cloud(x)
    C.refuse_point_mass(x, what="IsoScore")
    centred = C.rescaled(x)
    centred = centred - centred.mean(axis=0)
    return C.point_mass_to(x, isoscore_from_covariance(centred.T @ centred))


def isoscore_from_covariance(cov: ArrayLike) -> jax.Array:
    """IsoScore from a covariance matrix (any positive multiple of it) without an eigen-decomposition.
    [d, d] -> []

    IsoScore uses λ only through Σλ = tr Σ and ‖λ‖ = ‖Σ‖_F: ‖λ̂ - 1‖² = 2n - 2√n·tr Σ / ‖Σ‖_F. Equal to
    `isoscore_from_spectrum(eigvalsh(cov))` up to rounding (about 1e-6 in float32; that route also clips
    rounding-negative eigenvalues at 0). NaN for a zero matrix.
    """
    n = cov.shape[-1]
    cov = cov / jnp.max(jnp.abs(cov))  # ratios only: keeps ‖Σ‖_F finite whatever the scale
    ratio = jnp.trace(cov) / jnp.linalg.norm(cov)  # Σλ / ‖λ‖
    delta2 = (2 * n - 2 * math.sqrt(n) * ratio) / (2 * (n - math.sqrt(n)))
    return ((n - delta2 * (n - math.sqrt(n))) ** 2 - n) / (n * (n - 1))


def isoscore_star(x: ArrayLike, zeta: float = 0.0, target: ArrayLike | None = None) -> jax.Array:
    """IsoScore* (Rudman & Eickhoff 2024): IsoScore of the shrunk covariance (1-ζ)Σ_x + ζΣ_target,
    differentiable, so it can be used as a training penalty. Computed from the shrunk covariance's trace and
    Frobenius norm (`isoscore_from_covariance`), with no eigen-decomposition: a batched `eigh` in a vmapped
    training step (an ensemble of penalised runs) deadlocks jaxlib 0.10.2's CPU thread pool when two run at
    once, and the trace route is also cheaper. `target` [d, d] is a covariance from
    a larger sample; without one, the shrinkage target is tr(Σ_x)/d·I. [n, d] -> []

    With a `target`, x is used at its own scale (the two covariances are mixed); without one, x is rescaled
    like `isoscore`. A point mass raises ValueError eagerly.
    """
    x = C.cloud(x)
    C.refuse_point_mass(x, what="IsoScore*")
    if target is None:
        x = C.rescaled(x)
    centred = x - x.mean(axis=0)
    cov = centred.T @ centred / (x.shape[0] - 1)
    if target is None:
        target = jnp.trace(cov) / x.shape[1] * jnp.eye(x.shape[1], dtype=cov.dtype)
    else:
        target = V.array("target", target, ndim=2, what="[d, d]")
        if target.shape != cov.shape:
            raise ValueError(f"target must have shape {cov.shape}, got shape {tuple(target.shape)}")
    return C.point_mass_to(x, isoscore_from_covariance((1 - zeta) * cov + zeta * target))

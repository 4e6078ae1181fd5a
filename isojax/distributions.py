"""Synthetic embedding families, each with one scalar anisotropy knob (0 = isotropic).

Every family is `sample(key, n, d, knob) -> [n, d]`, `vmap`-able over `knob` and `key` (shapes depend only on
n and d). Clouds have unit per-coordinate scale at knob = 0: an isotropic N(0, I) (or the unit sphere).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from isojax import _validate as V

__all__ = ["FAMILIES", "KNOB_RANGE", "cone", "gaussian_rows", "isotropic_gaussian", "mixture", "power_law", "sample",
           "sphere", "spiked", "subspace"]

# Valid knob per family: finite, >= 0 (0 = isotropic), and small enough that every float32 draw stays finite
# and normal (the exponential families underflow beyond these; the additive ones overflow near 1e36/√d).
KNOB_RANGE: dict[str, tuple[float, float]] = {
    "gaussian": (0.0, 150.0),  # variances down to e^-150
    "sphere": (0.0, 1e6),
    "cone": (0.0, 1e6),
    "spiked": (0.0, 1e6),
    "power_law": (0.0, 100.0),  # exponent α of i^-α
    "mixture": (0.0, 1e6),
    "subspace": (0.0, 80.0),  # noise std e^-knob
}


def _knob(family: str, knob) -> None:
    low, high = KNOB_RANGE[family]
    V.real_in("knob", knob, low, high, what=f"family {family!r}")


def _option(name: str, value, d: int) -> int:
    value = V.positive_int(name, value, 1)
    if value > d:
        raise ValueError(f"{name} must be at most d = {d}, got {value}")
    return value


def _unit(key, d):
    u = jax.random.normal(key, (d,), V.float_dtype())
    return u / jnp.linalg.norm(u)


def isotropic_gaussian(key: jax.Array, n: int, d: int, knob: ArrayLike = 0.0) -> jax.Array:
    """N(0, diag(e^{-knob·i/(d-1)})): variances log-linearly spaced from 1 to e^{-knob} (knob 0: N(0, I))."""
    _knob("gaussian", knob)
    scales = jnp.exp(-0.5 * knob * jnp.arange(d) / max(d - 1, 1))
    return jax.random.normal(key, (n, d), V.float_dtype()) * scales


def sphere(key: jax.Array, n: int, d: int, knob: ArrayLike = 0.0) -> jax.Array:
    """Uniform on the unit sphere at knob 0; knob tilts it towards a pole μ: normalise(z + knob·√d·μ)."""
    _knob("sphere", knob)
    k1, k2 = jax.random.split(key)
    z = jax.random.normal(k1, (n, d), V.float_dtype()) + knob * math.sqrt(d) * _unit(k2, d)
    return z / jnp.linalg.norm(z, axis=1, keepdims=True)


def cone(key: jax.Array, n: int, d: int, knob: ArrayLike = 0.0) -> jax.Array:
    """N(m·μ, I) with a common mean vector of norm m = knob·√d (a narrow cone as knob grows)."""
    _knob("cone", knob)
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, (n, d), V.float_dtype()) + knob * math.sqrt(d) * _unit(k2, d)


def spiked(key: jax.Array, n: int, d: int, knob: ArrayLike = 0.0, spikes: int = 3) -> jax.Array:
    """N(0, I + s·Σ_r u_r u_rᵀ): `spikes` random orthonormal directions with extra variance s = knob·d/spikes."""
    _knob("spiked", knob)
    spikes = _option("spikes", spikes, d)
    k1, k2, k3 = jax.random.split(key, 3)
    basis, _ = jnp.linalg.qr(jax.random.normal(k2, (d, spikes), V.float_dtype()))
    z = jax.random.normal(k1, (n, d), V.float_dtype())
    extra = jax.random.normal(k3, (n, spikes), V.float_dtype()) * jnp.sqrt(knob * d / spikes)
    return z + extra @ basis.T


def power_law(key: jax.Array, n: int, d: int, knob: ArrayLike = 0.0) -> jax.Array:
    """Variances λ_i ∝ i^{-knob} along a random orthonormal basis, normalised to mean 1 (knob = exponent α)."""
    _knob("power_law", knob)
    k1, k2 = jax.random.split(key)
    lam = jnp.arange(1, d + 1, dtype=V.float_dtype()) ** (-knob)
    lam = lam * d / lam.sum()
    basis, _ = jnp.linalg.qr(jax.random.normal(k2, (d, d), V.float_dtype()))
    return (jax.random.normal(k1, (n, d), V.float_dtype()) * jnp.sqrt(lam)) @ basis.T


def mixture(key: jax.Array, n: int, d: int, knob: ArrayLike = 0.0, clusters: int = 4) -> jax.Array:
    """Isotropic clusters N(c_j, I) with centres c_j = knob·√d × random unit vectors (knob = separation)."""
    _knob("mixture", knob)
    clusters = V.positive_int("clusters", clusters, 1)
    k1, k2, k3 = jax.random.split(key, 3)
    centres = jax.vmap(lambda k: _unit(k, d))(jax.random.split(k2, clusters)) * knob * math.sqrt(d)
    which = jax.random.randint(k3, (n,), 0, clusters)
    return jax.random.normal(k1, (n, d), V.float_dtype()) + centres[which]


def subspace(key: jax.Array, n: int, d: int, knob: ArrayLike = 0.0, rank: int = 4) -> jax.Array:
    """A rank-`rank` subspace with unit variance plus isotropic noise of std e^{-knob} in the other directions."""
    _knob("subspace", knob)
    rank = _option("rank", rank, d)
    k1, k2 = jax.random.split(key)
    basis, _ = jnp.linalg.qr(jax.random.normal(k2, (d, d), V.float_dtype()))
    scales = jnp.where(jnp.arange(d) < rank, 1.0, jnp.exp(-knob))
    return (jax.random.normal(k1, (n, d), V.float_dtype()) * scales) @ basis.T


def gaussian_rows(key: jax.Array, vocab: int, mu: ArrayLike, cov: ArrayLike) -> jax.Array:
    """vocab rows drawn i.i.d. from N(μ, Σ) (T4a's Gaussian head). mu: [d], cov: [d, d] -> [vocab, d]"""
    mu = V.array("mu", mu, ndim=1, what="[d]")
    cov = V.array("cov", cov, ndim=2, what="[d, d]")
    if cov.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"cov must have shape {(mu.shape[0], mu.shape[0])} to match mu, got {tuple(cov.shape)}")
    vals, vecs = jnp.linalg.eigh(cov)
    root = vecs * jnp.sqrt(jnp.maximum(vals, 0.0))
    return mu + jax.random.normal(key, (vocab, mu.shape[0]), mu.dtype) @ root.T


FAMILIES: dict[str, Callable[..., jax.Array]] = {
    "gaussian": isotropic_gaussian,
    "sphere": sphere,
    "cone": cone,
    "spiked": spiked,
    "power_law": power_law,
    "mixture": mixture,
    "subspace": subspace,
}


def sample(family: str, key: jax.Array, n: int, d: int, knob: ArrayLike = 0.0, **options: int) -> jax.Array:
    """Draw n points in d dimensions from a named family at anisotropy `knob`. -> [n, d]

    Raises ValueError before any compute for an unknown family, n or d < 2, a sample or rotation too large
    to index, or a knob that is NaN, infinite or outside KNOB_RANGE[family] (each family also checks its
    knob itself when called eagerly; under vmap/jit a traced knob cannot be checked)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    n = V.positive_int("n", n, 2)
    d = V.positive_int("d", d, 2)
    V.elements("n, d", f"the sample [n, d] = [{n}, {d}]", n * d)
    if family in ("power_law", "subspace"):  # a random d x d rotation
        V.elements("d", f"the rotation [d, d] = [{d}, {d}]", d * d)
    return FAMILIES[family](key, n, d, knob, **options)

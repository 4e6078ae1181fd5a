"""Synthetic embedding families, each with one scalar anisotropy knob (0 = isotropic).

Every family is `sample(key, n, d, knob) -> [n, d]`, `vmap`-able over `knob` and `key` (shapes depend only on
n and d). Clouds have unit per-coordinate scale at knob = 0: an isotropic N(0, I) (or the unit sphere).

Your own family: `register_family(name, sampler, knob_range)`; then `sample(name, ...)`, the measures sweep
and `isojax sweep --import YOUR_FILE.py --families name` use it (docs/tutorials/own_sweep.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from isojax import _validate as V

__all__ = ["BUILTIN_FAMILIES", "FAMILIES", "KNOB_RANGE", "cone", "gaussian_rows", "isotropic_gaussian", "mixture",
           "power_law", "register_family", "sample", "sphere", "spiked", "subspace"]

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
BUILTIN_FAMILIES: tuple[str, ...] = tuple(FAMILIES)  # the study's; `register_family` adds to FAMILIES only

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")  # a family is a value in a CSV cell and on a command line


def register_family(name: str, sampler: Callable[..., jax.Array], knob_range: tuple[float, float]) -> Callable:
    """Add a synthetic family, so that `sample(name, ...)`, the measures sweep (`isojax.runs.measures`) and
    `isojax sweep --import FILE --families name` draw from it. Returns `sampler` (so it can be kept as is).

    sampler(key, n, d, knob, **options) -> [n, d] floats: jax-traceable in `knob` (a sweep vmaps or maps it),
    with shapes that depend on n and d only, isotropic at knob 0 by convention. knob_range (low, high): the
    knobs `sample` and the sweeps accept, finite, low < high, e.g. up to where float32 draws stay finite.
    name: letters, digits and `_.-`, starting with a letter. A built-in name (`BUILTIN_FAMILIES`) cannot be
    taken; a name already registered can only be taken again by a function of the same module and name (a
    notebook cell or module run again), so two families never share a name by accident."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"name must be letters, digits and _.- starting with a letter (at most 64), got {name!r}")
    if not callable(sampler):
        raise ValueError(f"sampler must be a function (key, n, d, knob) -> [n, d], got {sampler!r}")
    if name in BUILTIN_FAMILIES:
        raise ValueError(f"family {name!r} is built in; register yours under another name")
    old = FAMILIES.get(name)
    if old is not None and (_where(old) != _where(sampler)):
        raise ValueError(f"family {name!r} is already registered by {_where(old)}; choose another name")
    try:
        low, high = (float(v) for v in knob_range)
    except (TypeError, ValueError):
        raise ValueError(f"knob_range must be two numbers (low, high), got {knob_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"knob_range must be finite with low < high, got {knob_range!r}")
    FAMILIES[name] = sampler
    KNOB_RANGE[name] = (low, high)
    return sampler


def _where(fn) -> str:
    return f"{getattr(fn, '__module__', None)}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def sample(family: str, key: jax.Array, n: int, d: int, knob: ArrayLike = 0.0, **options: int) -> jax.Array:
    """Draw n points in d dimensions from a named family at anisotropy `knob`. -> [n, d]

    Raises ValueError before any compute for an unknown family, n or d < 2, a sample or rotation too large
    to index, or a knob that is NaN, infinite or outside KNOB_RANGE[family] (the built-in families also check
    their knob themselves when called eagerly; under vmap/jit a traced knob cannot be checked), and after it
    for a registered sampler that returns anything but [n, d] floats."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    n = V.positive_int("n", n, 2)
    d = V.positive_int("d", d, 2)
    V.elements("n, d", f"the sample [n, d] = [{n}, {d}]", n * d)
    if family in ("power_law", "subspace"):  # a random d x d rotation
        V.elements("d", f"the rotation [d, d] = [{d}, {d}]", d * d)
    _knob(family, knob)
    x = FAMILIES[family](key, n, d, knob, **options)
    if family not in BUILTIN_FAMILIES:  # a registered sampler: its output is checked (shapes are known when traced)
        shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
        if shape is None or tuple(shape) != (n, d) or not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"family {family!r}: its sampler returned {type(x).__name__} of shape {shape} and dtype "
                             f"{dtype}, expected floats of shape [n, d] = [{n}, {d}]")
    return x

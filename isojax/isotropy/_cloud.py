"""The boundary every measure shares: validate a cloud, guard its size, detect degenerate clouds, and rescale
extreme magnitudes by a power of two so that squares neither overflow nor underflow.

Degenerate inputs, in one place (each public measure's docstring points here):
- NaN or inf anywhere -> ValueError. float16/bfloat16 -> computed in float32 (LAPACK has no half kernels).
- A cloud whose intermediates (d x d covariance, n x n distances) would exceed 2^31 - 1 elements -> ValueError
  before any compute.
- Scale: a cloud whose largest |x| lies outside [2^-20, 2^20] is multiplied by the power of two 2^-e that
  brings it near 1 before any Gram matrix is formed. A power of two is exact in floating point, so
  scale-invariant measures agree to rounding for clouds scaled by anything from about 1e-30 to 1e30 in
  float32, and clouds inside that range are computed exactly as before (bit for bit). Partition isotropy is
  the one measure that is not scale-invariant, by definition: I(sΦ) runs from 1 as s -> 0 to 0 as s grows
  (unless Φ is balanced).
- A point mass (every row identical): spread-based measures are undefined. Called eagerly they raise
  ValueError; inside jit/vmap (values unknown) they return NaN (d(0.8) returns 0).
- NaN or inf inside jit/vmap (where it cannot be refused): `all_measures` returns NaN for every measure
  (best_k and d80_fraction included), `d_80` returns 0.
- Subnormal values (below the smallest normal float, 1.2e-38 in float32): XLA on CPU flushes them to zero, so
  a row whose entries are all subnormal is a zero row to every measure. `measure` counts such rows in
  `zero_rows` and says how many were subnormal; a cloud whose largest |x| is subnormal is refused by `measure`
  (multiply it by a power of two first) and inside jit is a point mass (NaN).
- Duplicate rows: the local intrinsic dimension takes each point's nearest distinct neighbours (copies are one
  neighbour, and never the point's own), so copies neither make it NaN nor change it; fewer than k + 1
  distinct rows raise ValueError eagerly (NaN inside jit). A clustering whose every cluster is one point or
  copies of one point leaves clustered cosine without a pair: ValueError eagerly, NaN inside jit.
- d = 1: IsoScore is undefined (one direction is both isotropic and rank one): `isoscore`, `isoscore_star`
  and `measure` raise ValueError; `all_measures` and `isoscore_from_spectrum` return NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from isojax import _validate as V

SAFE_EXPONENT = 20  # |x| up to 2^20: x⁴ (squared eigenvalues, in IsoScore) times n·d stays finite in float32


def cloud(x, name: str = "x", min_points: int = 2, gram: bool = True) -> jax.Array:
    """Validated cloud [n, d]: rank 2, finite, at least `min_points` rows, half precision upcast, and a
    d x d Gram matrix (when `gram`) small enough to index."""
    x = V.array(name, x, ndim=2, what="[n, d]", upcast_low=True)
    if x.shape[0] < min_points:
        raise ValueError(f"{name} needs at least {min_points} points, got shape {tuple(x.shape)}")
    n, d = x.shape
    V.elements(name, f"the cloud [n, d] = [{n}, {d}]", n * d)
    if gram:
        V.elements(name, f"the covariance [d, d] = [{d}, {d}]", d * d)
    return x


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def refuse_point_mass(x, name: str = "x", what: str = "this measure") -> None:
    """Raise if a concrete cloud has every row identical (zero spread): `what` is undefined for it."""
    if is_concrete(x):
        a = np.asarray(x)
        if (a == a[:1]).all():
            raise ValueError(f"{name} is a point mass (all {a.shape[0]} rows identical, shape {a.shape}): "
                             f"{what} is undefined for a cloud with no spread")


def point_mass_to(x, value, fill=jnp.nan) -> jax.Array:
    """value, or `fill` where x is a point mass: inside jit rounding noise would otherwise pass for spread."""
    return jnp.where(jnp.all(x == x[:1]), jnp.asarray(fill, value.dtype), value)


def undefined_to(x, value, fill=jnp.nan) -> jax.Array:
    """value, or `fill` where x is a point mass or holds NaN/inf: inside jit neither can be refused."""
    bad = jnp.all(x == x[:1]) | ~jnp.all(jnp.isfinite(x))
    return jnp.where(bad, jnp.asarray(fill, value.dtype), value)


def row_kinds(a: np.ndarray) -> tuple[int, int]:
    """(zero rows, subnormal rows) of a concrete cloud, exactly (numpy, no flushing): a subnormal row is nonzero
    with every entry below the smallest normal float, and XLA on CPU flushes it to a zero row."""
    zero = ~np.any(a != 0, axis=1)
    subnormal = ~zero & np.all(np.abs(a) < np.finfo(a.dtype).tiny, axis=1)
    return int(zero.sum()), int(subnormal.sum())


def nonzero_rows(x) -> jax.Array:
    """Which rows have a direction (a nonzero norm). [n, d] -> [n] bool"""
    return jnp.any(x != 0, axis=1)


def rescaled(x) -> jax.Array:
    """x · 2^-e, with e the binary exponent of max|x| when it lies outside [2^-20, 2^20], else x unchanged.
    Exact (a power of two), jit- and vmap-safe; the factor is data-dependent but piecewise constant."""
    e = scale_exponent(x)
    # two half steps: 2^-e itself may not be representable (e down to -148 in float32); ldexp, not exp2,
    # because exp2 of an integer is not exact in XLA
    half = e // 2
    one = jnp.ones((), x.dtype)
    return (x * jnp.ldexp(one, -half)) * jnp.ldexp(one, half - e)


def scale_exponent(x) -> jax.Array:
    """The e with x = rescaled(x) · 2^e. [n, d] -> [] int"""
    _, e = jnp.frexp(jnp.max(jnp.abs(x)))
    return jnp.where(jnp.abs(e) > SAFE_EXPONENT, e, 0)


def check_distances(x, name: str = "x") -> None:
    """Raise before compute if the [n, n] distance matrix of a cloud would be too large to index."""
    n = x.shape[0]
    V.elements(name, f"the pairwise distances [n, n] = [{n}, {n}]", n * n)


"""Every measure of one cloud at once: `all_measures` (jit/vmap-able, for sweeps), `measure` and
`measure_layers` (for your own arrays: validated, Python numbers out), `layer_summary` (the trained-model
experiments' per-layer row); with `uncertainty`, each with its bootstrap interval and isotropic null
(`isojax.isotropy.uncertainty`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from isojax import _validate as V
from isojax.isotropy import _cloud as C
from isojax.isotropy import uncertainty as U
from isojax.isotropy.clustered import ClusteredCosine, clustered_cosine, refuse_no_pairs, subsample
from isojax.isotropy.cosine import local_intrinsic_dimension, mean_cosine, refuse_few_distinct
from isojax.isotropy.spectrum import (
    after,
    covariance_spectrum,
    d_80_from_spectrum,
    isoscore_from_spectrum,
    partition_isotropy,
    refuse_one_dimension,
    scaled_spectrum,
)

__all__ = ["MEASURES", "all_measures", "layer_summary", "measure", "measure_layers"]

MEASURES = ("isoscore", "d80_fraction", "top1_variance", "cosine", "cosine_centred", "partition_isotropy", "lid",
            "clustered_cosine", "best_k", "best_silhouette")
_SPREAD = {"isoscore", "d80_fraction", "top1_variance", "cosine_centred", "lid", "clustered_cosine", "best_k",
           "best_silhouette"}  # undefined for a point mass
_CLUSTERED = {"clustered_cosine", "best_k", "best_silhouette"}
_COSINE = {"cosine", "cosine_centred", "clustered_cosine"}
LID_K = 20
K_MAX = 16


def _measures(x, key, names: tuple[str, ...], max_points: int, k_max: int,
              lid_k: int) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """The named measures of a validated cloud [n, d] (traceable; no value checks), and what the bootstrap
    and the warnings need besides (the chosen clustering: {"labels": [m], "best_k": []}, when clustered cosine
    is asked)."""
    n = x.shape[0]
    out, aux = {}, {}
    lam = scaled_spectrum(x)
    if "isoscore" in names:
        out["isoscore"] = isoscore_from_spectrum(lam)
    if "d80_fraction" in names:
        out["d80_fraction"] = (d_80_from_spectrum(lam) / x.shape[1]).astype(x.dtype)
    if "top1_variance" in names:
        out["top1_variance"] = lam[0] / lam.sum()
    if "cosine" in names:
        out["cosine"] = mean_cosine(x)
    if "cosine_centred" in names:
        out["cosine_centred"] = mean_cosine(x, centre=True)
    if "partition_isotropy" in names:
        out["partition_isotropy"] = partition_isotropy(after(x, lam))
    if "lid" in names:
        # beyond max_points, on the same seeded subsample as clustered cosine (the [n, n] distances grow fast)
        pts = x if n <= max_points else x[subsample(key, n, max_points)]
        out["lid"] = local_intrinsic_dimension(pts, lid_k)
    if _CLUSTERED & set(names):
        cc = clustered_cosine(x, key, max_points=max_points, k_max=k_max)
        out["clustered_cosine"] = cc.score
        out["best_k"] = cc.best_k.astype(x.dtype)
        out["best_silhouette"] = jnp.max(cc.silhouettes)
        aux["labels"], aux["best_k"] = cc.labels, cc.best_k
    # a point mass has no spread: inside a trace rounding noise would otherwise pass for one; NaN/inf inside a
    # trace (it cannot be refused there) makes every measure NaN, the integer-valued ones included
    finite = jnp.all(jnp.isfinite(x))
    values = {name: C.point_mass_to(x, out[name], 0 if name == "d80_fraction" else jnp.nan) if name in _SPREAD
              else out[name] for name in names}
    return {name: jnp.where(finite, v, jnp.asarray(jnp.nan, v.dtype)) for name, v in values.items()}, aux


def _compute(x, key, names: tuple[str, ...], max_points: int, k_max: int, lid_k: int) -> dict[str, jax.Array]:
    """The named measures of a validated cloud [n, d] (traceable; no value checks)."""
    return _measures(x, key, names, max_points, k_max, lid_k)[0]


def all_measures(x: ArrayLike, key: jax.Array, clustered: bool = True, max_points: int = 2000,
                 lid_k: int = LID_K) -> dict[str, jax.Array]:
    """Every isotropy measure of one cloud [n, d] as a dict of scalars (the row of a sweep table): isoscore,
    d80_fraction, top1_variance, cosine, cosine_centred, partition_isotropy, lid, and (when `clustered`)
    clustered_cosine and best_k (as a float). jit- and vmap-able; inside a trace degenerate clouds give NaN, and
    a NaN or inf anywhere in x makes every measure NaN, best_k and d80_fraction included (see
    `isojax.isotropy._cloud`). Use `measure` for validated Python numbers."""
    x = C.cloud(x)
    names = MEASURES[:7] + (("clustered_cosine", "best_k") if clustered else ())
    m = min(x.shape[0], max_points)
    return _compute(x, key, names, max_points, min(K_MAX, m - 1), min(lid_k, m - 1))


def _key(seed) -> jax.Array:
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return jax.random.PRNGKey(int(seed))
    if isinstance(seed, jax.Array) and (jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key)
                                        or (seed.dtype == jnp.uint32 and seed.shape == (2,))):
        return seed
    raise ValueError(f"seed must be an int or a PRNG key, got {seed!r}")


def _names(measures) -> tuple[str, ...]:
    if measures is None:
        return MEASURES
    if isinstance(measures, str):
        measures = [measures]
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measures {unknown}; valid names are {list(MEASURES)}")
    return tuple(m for m in MEASURES if m in measures)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _compute_jit(x, key, names, max_points, k_max, lid_k):
    return _measures(x, key, names, max_points, k_max, lid_k)


def _warn(messages: list[str]) -> None:
    for message in messages:
        warnings.warn(message, stacklevel=3)


def _cluster_sizes(labels) -> np.ndarray:
    """Sizes of the nonempty clusters of a clustering. [m] -> [k]"""
    counts = np.bincount(np.asarray(labels))
    return counts[counts > 0]


def measure(x: ArrayLike, seed: int | jax.Array = 0, measures: str | Sequence[str] | None = None,
            max_points: int = 2000, name: str = "x",
            uncertainty: bool | U.Uncertainty = False) -> dict[str, float | int]:
    """Isotropy measures of your own cloud x: [n, d] -> {name: Python float (int for best_k and zero_rows)}.

    `seed` (an int or a PRNG key) seeds the subsample and k-means of clustered cosine; `measures` picks names
    from MEASURES (all by default). Clustered cosine and the local intrinsic dimension use a seeded subsample
    of at most `max_points` rows. Small clouds: k runs over 2..min(16, m-1) and LID uses min(20, m-1)
    neighbours, each announced with a warning naming the value. The result also holds `zero_rows`, the number
    of rows the cosine measures leave out as having no direction: all-zero rows, and subnormal rows (every
    entry below the smallest normal float, which XLA on CPU flushes to zero), which the warning counts apart.

    `uncertainty=True` (or an `isotropy.Uncertainty` with its settings) adds per measure a bootstrap interval
    over rows (`{m}_low`, `{m}_high`), the mean and sd of the measure over isotropic Gaussian clouds of the
    same n and d (`{m}_null`, `{m}_null_sd`), and the value relative to that null (`{m}_rel`: 1 = as isotropic
    as the null, 0 = one direction); see `isojax.isotropy.uncertainty`. Warnings name a measure whose n is too
    small for it: spectral measures below 10·d rows, a clustering with clusters under 10 points or k at the
    top of its range. LID leaves duplicate rows out of each other's neighbourhoods (see
    `local_intrinsic_dimension`).

    Every measure but partition_isotropy is scale-invariant for clouds whose largest |x| is a normal float
    (partition isotropy runs from 1 as the scale goes to 0 to 0 as it grows, unless the cloud is balanced).
    Raises ValueError for NaN/inf, a point mass (with a spread-based measure selected), a cloud whose largest
    |x| is subnormal, d = 1 with IsoScore selected, fewer than 3 points (for lid or clustered cosine), fewer
    than k + 1 distinct rows for lid, arrays too large to compute, and a clustered cosine with no cluster
    holding two distinct points; float16/bfloat16 are computed in float32.
    """
    names = _names(measures)
    key = _key(seed)
    max_points = V.positive_int("max_points", max_points, 3)
    u = U.settings(uncertainty)
    x = C.cloud(x, name)
    k_max, lid_k, zero = _checked(x, key, names, max_points, name)
    values, aux = jax.device_get(_compute_jit(x, key, names, max_points, k_max, lid_k))
    if "clustered_cosine" in names:
        refuse_no_pairs(values["clustered_cosine"], aux["best_k"], x.shape, name)
    out: dict[str, float | int] = {k: (int(v) if k == "best_k" else float(v)) for k, v in values.items()}
    nulls = None
    if u is not None:
        nulls = _nulls(x, names, max_points, k_max, lid_k, u)
        boots = jax.device_get(U.bootstrap(x, key, jax.random.fold_in(key, U._BOOT_TAG), aux.get("labels"), names,
                                           u.boot, max_points, k_max, lid_k))
        out.update(U.summarise(out, boots, nulls, x.shape[1], u))
    sizes = _cluster_sizes(aux["labels"]) if "labels" in aux else None
    best_k = int(aux["best_k"]) if "best_k" in aux else None
    _warn(U.small_sample_messages(name, *x.shape, names, best_k, k_max, sizes, nulls))
    out["zero_rows"] = zero
    return out


def _checked(x, key, names, max_points: int, name: str) -> tuple[int, int, int]:
    """Refuse what `measure` cannot measure and warn about what it changes, before any compute ->
    (k_max, lid_k, zero rows). x: a validated cloud [n, d]"""
    n = x.shape[0]
    m = min(n, max_points)
    if ({"lid"} | _CLUSTERED) & set(names) and m < 3:
        raise ValueError(f"{name} needs at least 3 points for lid and clustered cosine, got shape {tuple(x.shape)}")
    if "isoscore" in names:
        refuse_one_dimension(x, name)
    C.check_distances(x[:m], name)
    a = np.asarray(x)
    tiny = np.finfo(a.dtype).tiny
    top = float(np.max(np.abs(a)))
    if 0 < top < tiny:
        raise ValueError(f"{name} is subnormal (shape {tuple(x.shape)}): its largest |x|, {top:.3g}, is below the "
                         f"smallest normal {a.dtype} ({tiny:.3g}), and XLA flushes such values to zero; multiply it "
                         "by a power of two (e.g. 2.0**100) first: every measure but partition_isotropy is "
                         "scale-invariant")
    if _SPREAD & set(names):
        C.refuse_point_mass(x, name, what=f"{sorted(_SPREAD & set(names))}")
    k_max, lid_k = min(K_MAX, m - 1), min(LID_K, m - 1)
    if _CLUSTERED & set(names) and k_max < K_MAX:
        warnings.warn(f"{name} has {m} points: clustered cosine tries k = 2..{k_max} (k_max = {k_max}) "
                      f"instead of 2..{K_MAX}", stacklevel=3)
    if "lid" in names:
        if lid_k < LID_K:
            warnings.warn(f"{name} has {m} points: lid uses k = {lid_k} neighbours instead of {LID_K}", stacklevel=3)
        refuse_few_distinct(a if n <= max_points else a[np.asarray(subsample(key, n, max_points))], lid_k, name)
    zero, subnormal = C.row_kinds(a)
    zero += subnormal
    if zero and _COSINE & set(names):
        why = (f" ({subnormal} of them subnormal: no entry reaches {tiny:.3g}, the smallest normal {a.dtype}, and "
               "XLA flushes them to zero)") if subnormal else ""
        warnings.warn(f"{name} has {zero} zero rows{why}: the cosine measures leave them out", stacklevel=3)
    if "cosine" in names and n - zero < 2:
        raise ValueError(f"{name} has fewer than 2 nonzero rows (shape {tuple(x.shape)}): the mean cosine is undefined")
    return k_max, lid_k, zero


def _nulls(x, names, max_points: int, k_max: int, lid_k: int, u: U.Uncertainty) -> dict[str, np.ndarray]:
    """The null draws of every measure in `names` for x's shape, measured by `measure`'s own compiled program
    (cached); partition isotropy's at x's scale."""
    def null_measure(z, k):
        return _compute_jit(z, k, names, max_points, k_max, lid_k)[0]

    nulls = U.null_draws(null_measure, ("measure", names, max_points, k_max, lid_k), *x.shape, x.dtype, u)
    nulls = {k: v for k, v in nulls.items() if k != "partition_isotropy"}  # drawn at unit scale: not its null
    if "partition_isotropy" in names:
        nulls["partition_isotropy"] = U.partition_null(x, u)
    return nulls


def measure_layers(hidden: ArrayLike | Sequence[ArrayLike] | Mapping[str, ArrayLike], seed: int | jax.Array = 0,
                   measures: str | Sequence[str] | None = None, max_points: int = 2000,
                   uncertainty: bool | U.Uncertainty = False) -> list[dict]:
    """`measure` for every layer: hidden is [layers, n, d], a list of [n, d] arrays or a dict name -> [n, d].
    Layer i is measured with key fold_in(key(seed), i). -> one dict per layer, with a "layer" entry (the
    index, or the dict key). `uncertainty` as in `measure` (layers of one shape share one cached null)."""
    if isinstance(hidden, Mapping):
        layers = list(hidden.items())
    elif isinstance(hidden, Sequence) and not isinstance(hidden, (str, bytes)):
        layers = list(enumerate(hidden))
    else:
        hidden = V.array("hidden", hidden, ndim=3, what="[layers, n, d]", upcast_low=True)
        layers = list(enumerate(hidden))
    if not layers:
        raise ValueError("hidden holds no layers")
    key = _key(seed)
    U.settings(uncertainty)  # checked before the first layer is measured
    return [{"layer": name, **measure(x, jax.random.fold_in(key, i), measures, max_points, name=f"hidden[{name!r}]",
                                      uncertainty=uncertainty)}
            for i, (name, x) in enumerate(layers)]


_LAYER_NAMES = ("isoscore", "d80_fraction", "clustered_cosine", "best_k", "best_silhouette")


def _layer_row(x, key) -> tuple[dict[str, float | int], ClusteredCosine]:
    cc = clustered_cosine(x, key, k_max=min(K_MAX, x.shape[0] - 1))
    lam = covariance_spectrum(x)
    row = {"clustered_cosine": float(cc.score), "best_k": int(cc.best_k),
           "best_silhouette": float(jnp.max(cc.silhouettes)), "isoscore": float(isoscore_from_spectrum(lam)),
           "d80_fraction": float(d_80_from_spectrum(lam)) / x.shape[1]}
    return row, cc


def layer_summary(x: ArrayLike, key: jax.Array, uncertainty: bool | U.Uncertainty = False) -> dict[str, float | int]:
    """The trained-model experiments' row for one layer x: [n, d], bit for bit: clustered cosine (k = 2..
    min(16, n-1)), its best k and best silhouette, IsoScore and d(0.8)/d. Callers pass the layer's own key,
    e.g. jax.random.fold_in(key, layer).

    `uncertainty` as in `measure`: adds {m}_low/_high (clustered_cosine, isoscore, d80_fraction), {m}_null/
    _null_sd (all five) and {m}_rel (the three), and warns when n is too small for a measure. The values
    themselves are the same with or without it. Measure every run on the same number of rows: one compiled
    program and one cached null then serve them all. Raises ValueError for d = 1 and for a clustered cosine
    with no cluster holding two distinct points (see `clustered_cosine`)."""
    u = U.settings(uncertainty)
    x = C.cloud(x)
    refuse_one_dimension(x)
    row, cc = _layer_row(x, key)
    if u is None:
        return row
    n, d = x.shape
    k_max = min(K_MAX, n - 1)
    nulls = U.null_draws(lambda z, k: _layer_row(z, k)[0], ("layer_summary",), n, d, x.dtype, u)
    boots = jax.device_get(U.bootstrap(x, key, jax.random.fold_in(key, U._BOOT_TAG), cc.labels,
                                       ("isoscore", "d80_fraction", "clustered_cosine"), u.boot, 2000, k_max, LID_K))
    ordered = {name: row[name] for name in _LAYER_NAMES}
    row = {**row, **U.summarise(ordered, boots, nulls, d, u)}
    _warn(U.small_sample_messages("x", n, d, _LAYER_NAMES, row["best_k"], k_max, _cluster_sizes(cc.labels), nulls))
    return row

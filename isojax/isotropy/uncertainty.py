"""A measure with its uncertainty and its null: a bootstrap interval over rows, the value an isotropic Gaussian
cloud of the same n and d gets (simulated, cached), and the value relative to that null.

Every isotropy measure is biased by the sample size: IsoScore of an isotropic Gaussian in d = 64 is about 0.88
at n = 500, 0.60 at n = 100 and 0.11 at n = 10; clustered cosine on ~70 points picks k = 16 clusters of ~4
points, whose re-centred cosines average -1/(4 - 1) = -1/3. Clouds of different n cannot be compared on the raw
value. `isotropy.measure(x, uncertainty=True)` and `layer_summary(x, key, uncertainty=True)` add, per measure:

- `{m}_low`, `{m}_high`: a `level` confidence interval for the measure's expected value at this n, from
  `boot` bootstrap resamples of the rows (see `interval`): the spread of the resampled values, reflected
  about the estimate and centred on the resamples' median, so that the bootstrap's own bias (a resample holds
  only ~63% distinct rows) does not move it. How each measure is resampled (docs/statistics.md): the
  spectral measures and the two plain cosines are recomputed on row weights (the raw cosine leaves out pairs
  of a row with its own copy, so a resample is not pulled towards 1); LID takes each drawn point's nearest
  drawn neighbours; clustered cosine resamples rows with the clustering held fixed (so its interval
  leaves out the uncertainty of k and of the k-means fit). best_k and best_silhouette have no interval, nor
  has partition isotropy: it is set by the largest projections (a log-sum-exp), where the bootstrap is
  inconsistent (its 95% interval covered the expected value in 3 of 4 clouds in a direct simulation).
- `{m}_null`, `{m}_null_sd`: the mean and standard deviation of the measure over `null_draws` clouds drawn
  from N(0, I_d) with the same n, measured exactly as x is (same max_points, k range, LID k). Deterministic
  from `null_seed`, and the same for every cloud of one shape, so it adds no noise between runs; cached in
  memory per (n, d, dtype, measure settings). Partition isotropy is not scale-invariant: its null is drawn
  at the cloud's root-mean-square scale per coordinate, per call.
- `{m}_rel`: the value relative to the null, (value - a) / (null - a), where a is the measure's value for a
  cloud with a single direction (`ANISOTROPIC_END`: 0 for IsoScore, partition isotropy and LID, 1 for the
  cosines and the top-1 variance share, 1/d for d80_fraction). 1 = as isotropic as an isotropic Gaussian of
  this n and d, 0 = one direction, whatever the orientation of the raw measure. A difference value - null
  would leave the sample-size bias in the anisotropic end (a rank-one cloud would score -0.60 at n = 100
  and -0.88 at n = 500 in IsoScore); the ratio pins both ends. Map an interval with `relative_to_null`.

Costs (2-core CPU, n = 1000, d = 64-96): the bootstrap is one compiled program per shape, vectorised over
resamples; the null costs `null_draws` measurements once per shape and process.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from isojax import _validate as V
from isojax.isotropy import _cloud as C
from isojax.isotropy.clustered import copies_only, subsample
from isojax.isotropy.cosine import lid_neighbours, pooled_dimension
from isojax.isotropy.spectrum import d_80_from_spectrum, isoscore_from_covariance, partition_isotropy

__all__ = ["ANISOTROPIC_END", "MIN_CLUSTER_SIZE", "Uncertainty", "interval", "relative_to_null"]

# the value of each measure for a cloud with one direction; "1/d" is resolved per cloud
ANISOTROPIC_END: dict[str, float | str] = {"isoscore": 0.0, "d80_fraction": "1/d", "top1_variance": 1.0,
                                           "cosine": 1.0, "cosine_centred": 1.0, "clustered_cosine": 1.0,
                                           "partition_isotropy": 0.0, "lid": 0.0}
# the range each measure's values live in: interval ends are clipped to it
_BOUNDS = {"isoscore": (0.0, 1.0), "d80_fraction": (0.0, 1.0), "top1_variance": (0.0, 1.0),
           "cosine": (-1.0, 1.0), "cosine_centred": (-1.0, 1.0), "clustered_cosine": (-1.0, 1.0),
           "partition_isotropy": (0.0, 1.0), "lid": (0.0, math.inf)}
_SPECTRAL = ("isoscore", "d80_fraction", "top1_variance")
# a cluster of s isotropic points re-centred on its mean has a mean pairwise cosine near -1/(s - 1): -0.11 at
# s = 10, -1/3 at s = 4; below this size the clustered cosine mostly measures the cluster size
MIN_CLUSTER_SIZE = 10
SPECTRAL_ROWS_PER_DIM = 10  # IsoScore of an isotropic Gaussian is 0.88 at n = 7.8·d (d = 64), 0.60 at n = 1.6·d
_BOOT_TAG = 0xB007  # the bootstrap's key is fold_in(measurement key, _BOOT_TAG): the values themselves are unchanged
_PARTITION_TAG = 2**31 - 1  # the partition null's key: apart from the keys 0, 1, 2, ... of the other null draws
_CHUNK = 16  # resamples per vectorised step: bounds the [chunk, n, d] intermediates


class Uncertainty(NamedTuple):
    """Settings of `measure(..., uncertainty=Uncertainty(...))`; `uncertainty=True` uses these defaults.

    level: of the bootstrap interval; boot: resamples of the rows; null_draws: isotropic Gaussian clouds
    simulated for the null; null_seed: the null's key, PRNGKey(null_seed) (shared by every cloud of one
    shape, so the null adds no noise between runs)."""

    level: float = 0.95
    boot: int = 200
    null_draws: int = 16
    null_seed: int = 0


def settings(uncertainty) -> Uncertainty | None:
    """False/None -> None, True -> Uncertainty(), an Uncertainty -> itself after checking its fields."""
    if uncertainty is None or uncertainty is False:
        return None
    if uncertainty is True:
        return Uncertainty()
    if not isinstance(uncertainty, Uncertainty):
        raise ValueError(f"uncertainty must be True, False or an isotropy.Uncertainty, got {uncertainty!r}")
    V.real_in("uncertainty.level", uncertainty.level, 0.5, 0.999)
    V.positive_int("uncertainty.boot", uncertainty.boot, 20)
    V.positive_int("uncertainty.null_draws", uncertainty.null_draws, 2)
    V.positive_int("uncertainty.null_seed", uncertainty.null_seed, 0)
    return uncertainty


def anisotropic_end(name: str, d: int) -> float:
    a = ANISOTROPIC_END[name]
    return 1.0 / d if a == "1/d" else float(a)


def relative_to_null(name: str, value: float, null: float, d: int) -> float:
    """(value - a) / (null - a) for measure `name` of a cloud in d dimensions, with a = the measure's value
    for a single direction (`ANISOTROPIC_END`): 1 = as isotropic as the null, 0 = one direction. Monotone in
    value (decreasing for the cosines and top1_variance), so it maps an interval's ends too. NaN where the
    null sits at the anisotropic end (e.g. d = 1)."""
    if name not in ANISOTROPIC_END:
        raise ValueError(f"name must be one of {sorted(ANISOTROPIC_END)}, got {name!r}")
    a = anisotropic_end(name, d)
    gap = null - a
    if not np.isfinite(gap) or abs(gap) <= 1e-9 * max(1.0, abs(a)):
        return math.nan
    return (value - a) / gap


def interval(estimate: float, boots: np.ndarray, level: float = 0.95,
             bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float]:
    """Confidence interval for the expected value of a statistic at this sample size, from its bootstrap
    replicates: [est - (q_hi - mean*), est - (q_lo - mean*)], the replicates' quantiles q reflected about
    their median (the basic bootstrap interval, with the replicates' own bias removed), clipped to `bounds`.
    NaN when the estimate is not finite or more than 10% of the replicates are not. boots: [B] -> (low, high)
    """
    boots = np.asarray(boots, np.float64)
    finite = boots[np.isfinite(boots)]
    if not np.isfinite(estimate) or finite.size < 0.9 * boots.size or finite.size < 2:
        return math.nan, math.nan
    q_lo, q_hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    centre = np.median(finite)
    low, high = estimate - (q_hi - centre), estimate - (q_lo - centre)
    return float(np.clip(low, *bounds)), float(np.clip(high, *bounds))


# ----------------------------------------------------------------------------- the bootstrap program


def _counts(key, boot: int, n: int, dtype) -> jax.Array:
    """How often each of n rows is drawn in each of `boot` resamples (with replacement). -> [boot, n]"""
    idx = jax.random.randint(key, (boot, n), 0, n)
    return jax.vmap(lambda i: jnp.zeros((n,), dtype).at[i].add(1.0))(idx)


def _pair_cosine(u, weights) -> jax.Array:
    """Mean cosine over pairs of distinct draws of a weighted sample of unit rows u [n, d] (weights [n]: how
    often each row is drawn, 0 for rows without a direction), leaving out pairs of a row with its own copy:
    (‖Σ w_i u_i‖² - Σ w_i²) / ((Σ w_i)² - Σ w_i²). NaN with fewer than two distinct rows. -> []"""
    total = jnp.sum((weights @ u) ** 2)
    self_pairs = jnp.sum(weights**2)
    pairs = jnp.sum(weights) ** 2 - self_pairs
    return jnp.where(pairs > 0, (total - self_pairs) / jnp.maximum(pairs, 1.0), jnp.nan)


def _centred_cosine(u, weights) -> jax.Array:
    """Mean pair cosine of N = Σ w draws re-centred on their own mean, as the measure computes it for N
    points: (‖Σ w_i u_i‖² - N) / (N (N - 1)). Re-centring makes Σ w_i (x_i - μ) = 0, which already cancels
    what copies add to ‖Σ w u‖²; leaving their pairs out as in `_pair_cosine` would instead move the
    -1/(N - 1) that centring builds in, with how many copies a resample holds. -> []"""
    total = jnp.sum((weights @ u) ** 2)
    count = jnp.sum(weights)
    return jnp.where(count >= 2, (total - count) / jnp.maximum(count * (count - 1), 1.0), jnp.nan)


def _unit(v) -> tuple[jax.Array, jax.Array]:
    norm = jnp.linalg.norm(v, axis=-1, keepdims=True)
    return v / jnp.maximum(norm, jnp.finfo(v.dtype).tiny), norm[..., 0] > 0


def _covariances(xc, counts) -> jax.Array:
    """Covariance of each weighted resample. xc: [n, d] centred, counts: [B, n] -> [B, d, d]"""
    n = xc.shape[0]

    def cov(c):
        w = c / n
        mu = w @ xc
        return (xc * w[:, None]).T @ xc - jnp.outer(mu, mu)

    return jax.lax.map(cov, counts, batch_size=_CHUNK)


def _eigenvalues(covs) -> jax.Array:
    """Eigenvalues of each covariance, largest first, clipped at 0. [B, d, d] -> [B, d]"""
    # eigh, not eigvalsh: jaxlib 0.10.2's batched CPU eigvalsh took ~8x longer than eigh for 200 96x96 matrices
    return jnp.maximum(jnp.linalg.eigh(covs)[0][:, ::-1], 0.0)


def _lid(pts, counts, k: int) -> jax.Array:
    """LID of each resample: a drawn point's k nearest distinct neighbours among the drawn rows, found in its
    3k nearest in the whole cloud (a resample holds ~63% of the rows: its k nearest are among them unless
    fewer than k of 3k were drawn, then NaN), and the pooled estimate with each point counted as often as it
    was drawn. pts: [m, d] rescaled, counts: [B, m] -> [B]"""
    dist, idx = lid_neighbours(pts, min(3 * k, pts.shape[0] - 1))
    log_dist = jnp.log(dist)

    def one(c):
        present = (c[idx] > 0) & jnp.isfinite(dist)
        rank = jnp.cumsum(present, axis=1)
        kth = present & (rank == k)
        below = present & (rank < k)
        log_tk = jnp.sum(jnp.where(kth, log_dist, 0.0), axis=1)
        inv = log_tk - jnp.sum(jnp.where(below, log_dist, 0.0), axis=1) / (k - 1)
        inv = jnp.where(jnp.any(kth, axis=1), inv, jnp.nan)
        return pooled_dimension(jnp.where(c > 0, c * inv, 0.0))

    return jax.lax.map(one, counts, batch_size=_CHUNK)


def _clustered(pts, labels, counts, k_max: int) -> jax.Array:
    """Clustered cosine of each resample with the clustering held fixed: per cluster, re-centre on the
    resample's cluster mean and take the pair cosine of distinct draws; mean over clusters with a pair.
    pts: [m, d], labels: [m] < k_max -> [B]"""
    onehot = jax.nn.one_hot(labels, k_max, dtype=pts.dtype)  # [m, K]
    flat = copies_only(pts, labels, k_max)[:, None]  # as in the measure: such clusters have no direction

    def one(c):
        sizes = c @ onehot  # [K]
        means = ((onehot * c[:, None]).T @ pts) / jnp.maximum(sizes, 1.0)[:, None]
        u, direction = _unit(jnp.where(flat, 0.0, pts - means[labels]))
        w = c * direction
        per = jax.vmap(lambda col: _centred_cosine(u, w * col))(onehot.T)  # [K]
        return jnp.nanmean(per)

    return jax.lax.map(one, counts, batch_size=_CHUNK)


@functools.partial(jax.jit, static_argnames=("names", "boot", "max_points", "k_max", "lid_k"))
def bootstrap(x, key, boot_key, labels, names: tuple[str, ...], boot: int, max_points: int, k_max: int,
              lid_k: int) -> dict[str, jax.Array]:
    """Bootstrap replicates [boot] of each measure in `names` (those with an interval) for a validated cloud
    x [n, d] measured with `key` (which fixes the subsample that LID and clustered cosine use); `labels` [m]:
    the clustering clustered cosine chose (None without it). One program per shape and settings."""
    n = x.shape[0]
    m = min(n, max_points)
    k_rows, k_sub = jax.random.split(boot_key)
    xs = C.rescaled(x)
    counts = _counts(k_rows, boot, n, x.dtype)
    out = {}
    if set(_SPECTRAL) & set(names):
        covs = _covariances(xs - xs.mean(axis=0), counts)
        out["isoscore"] = jax.vmap(isoscore_from_covariance)(covs)  # tr Σ and ‖Σ‖_F: no eigenvalues needed
        if {"d80_fraction", "top1_variance"} & set(names):
            lam = _eigenvalues(covs)
            out["d80_fraction"] = (jax.vmap(d_80_from_spectrum)(lam) / x.shape[1]).astype(x.dtype)
            out["top1_variance"] = lam[:, 0] / lam.sum(axis=1)
    if "cosine" in names:
        u, direction = _unit(xs)
        out["cosine"] = jax.vmap(lambda c: _pair_cosine(u, c * direction))(counts)
    if "cosine_centred" in names:
        xc = xs - xs.mean(axis=0)

        def centred(c):
            u, direction = _unit(xc - (c / n) @ xc)
            return _centred_cosine(u, c * direction)

        out["cosine_centred"] = jax.lax.map(centred, counts, batch_size=_CHUNK)
    if "lid" in names or "clustered_cosine" in names:
        sample = subsample(key, n, m)
        sub = _counts(k_sub, boot, m, x.dtype)
        if "lid" in names:
            out["lid"] = _lid(xs[sample], sub, lid_k)
        if "clustered_cosine" in names:
            pts = xs[sample] - xs.mean(axis=0)
            out["clustered_cosine"] = _clustered(pts, labels, sub, k_max)
    return {name: out[name] for name in names if name in out}


# ----------------------------------------------------------------------------- the null


_NULL_CACHE: OrderedDict = OrderedDict()
_NULL_CACHE_SIZE = 64


@functools.partial(jax.jit, static_argnames=("n", "d", "dtype"))
def _gaussian(key, n: int, d: int, dtype) -> jax.Array:
    return jax.random.normal(key, (n, d), dtype)


def null_draws(measure_fn: Callable[[jax.Array, jax.Array], dict], tag: tuple, n: int, d: int, dtype,
               u: Uncertainty) -> dict[str, np.ndarray]:
    """The measures of `u.null_draws` N(0, I_d) clouds [n, d], each measured by measure_fn(cloud, key) exactly
    as the cloud under study is -> {name: [draws]}. Cached per (tag, n, d, dtype, draws, seed): `tag` must
    name every setting measure_fn depends on. Draw i uses the keys fold_in(PRNGKey(null_seed), 2i) for the
    cloud and fold_in(..., 2i + 1) for the measurement."""
    cache_key = (tag, n, d, np.dtype(dtype).name, u.null_draws, u.null_seed)
    if cache_key in _NULL_CACHE:
        _NULL_CACHE.move_to_end(cache_key)
        return _NULL_CACHE[cache_key]
    base = jax.random.PRNGKey(u.null_seed)
    rows = [measure_fn(_gaussian(jax.random.fold_in(base, 2 * i), n, d, np.dtype(dtype)),
                       jax.random.fold_in(base, 2 * i + 1)) for i in range(u.null_draws)]
    draws = {name: np.array([float(r[name]) for r in rows]) for name in rows[0]}
    _NULL_CACHE[cache_key] = draws
    while len(_NULL_CACHE) > _NULL_CACHE_SIZE:
        _NULL_CACHE.popitem(last=False)
    return draws


@functools.partial(jax.jit, static_argnames=("n", "d", "draws"))
def _partition_null_draws(key, log2_scale, rms, n: int, d: int, draws: int) -> jax.Array:
    """Partition isotropy of `draws` N(0, σ² I_d) clouds [n, d], σ = rms · 2^log2_scale. -> [draws]"""
    one = jnp.ones((), rms.dtype)
    sigma = rms * jnp.ldexp(one, log2_scale // 2) * jnp.ldexp(one, log2_scale - log2_scale // 2)
    z = jax.random.normal(key, (draws, n, d), rms.dtype) * sigma
    return jax.lax.map(partition_isotropy, z)


def partition_null(x, u: Uncertainty) -> np.ndarray:
    """Partition isotropy of isotropic Gaussian clouds of x's shape at x's root-mean-square scale per
    coordinate, sqrt(Σ‖x_i‖² / (n d)) (computed on the rescaled cloud, never overflowing). -> [draws]"""
    n, d = x.shape
    e = C.scale_exponent(x)
    rms = jnp.sqrt(jnp.mean(C.rescaled(x) ** 2))
    key = jax.random.fold_in(jax.random.PRNGKey(u.null_seed), _PARTITION_TAG)
    return np.asarray(_partition_null_draws(key, e, rms, n, d, u.null_draws), np.float64)


# ----------------------------------------------------------------------------- assembling and warnings


def summarise(values: dict, boots: dict, nulls: dict, d: int, u: Uncertainty) -> dict[str, float]:
    """The uncertainty entries of one cloud: {m}_low/_high (measures with replicates), {m}_null/_null_sd
    (every measure with null draws), {m}_rel (measures in ANISOTROPIC_END)."""
    out = {}
    for name, value in values.items():
        if name in boots:
            out[f"{name}_low"], out[f"{name}_high"] = interval(value, boots[name], u.level, _BOUNDS[name])
        if name in nulls:
            draws = nulls[name]
            null = float(np.mean(draws))
            out[f"{name}_null"] = null
            out[f"{name}_null_sd"] = float(np.std(draws, ddof=1))
            if name in ANISOTROPIC_END:
                out[f"{name}_rel"] = relative_to_null(name, value, null, d)
    return out


def small_sample_messages(name: str, n: int, d: int, names, best_k: int | None, k_max: int | None,
                          sizes: np.ndarray | None, nulls: dict | None) -> list[str]:
    """Why a measure of a cloud [n, d] may mean something else at this n: spectral measures below
    SPECTRAL_ROWS_PER_DIM·d rows, a chosen clustering with clusters under MIN_CLUSTER_SIZE points, or k at
    the top of its search range. `sizes`: the chosen clusters' sizes; `nulls`: null draws, when known."""
    out = []
    spectral = [m for m in _SPECTRAL if m in names]
    if spectral and n < SPECTRAL_ROWS_PER_DIM * d:
        if nulls and "isoscore" in nulls:
            null = f"an isotropic Gaussian of this n and d has IsoScore {np.mean(nulls['isoscore']):.2f}, not 1"
        else:
            null = "pass uncertainty=True for the values an isotropic Gaussian of this n and d gets"
        out.append(f"{name} has n = {n} rows for d = {d} (fewer than {SPECTRAL_ROWS_PER_DIM}·d): {', '.join(spectral)} "
                   f"are biased towards anisotropy at this n ({null}); compare clouds at one n, or use the _rel "
                   "values")
    if best_k is not None and sizes is not None and sizes.size:
        small = int(sizes.min())
        if small < MIN_CLUSTER_SIZE:
            out.append(f"{name}: clustered cosine's clustering (k = {best_k}) has a cluster of {small} points (under "
                       f"{MIN_CLUSTER_SIZE}): re-centred clusters of s points have cosines near -1/(s - 1) "
                       f"= {-1 / max(small - 1, 1):.2f} whatever their shape; compare with the null")
        if k_max is not None and best_k == k_max:
            out.append(f"{name}: clustered cosine chose k = {best_k}, the top of its search range 2..{k_max}: the "
                       "value depends on that bound (a larger k might fit better)")
    return out

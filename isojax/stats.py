"""Statistics for the study's isotropy-vs-error questions: rank correlations with bootstrap intervals, sample
means with t intervals, Welch's two-sample test, a fixed-effects regression with a cluster bootstrap, and the
power of that design (its minimum detectable slope).

Everything here is host-side numpy/scipy in float64 (results are small tables, not traced arrays), so the
numbers do not depend on JAX_ENABLE_X64. Every "sd" is the sample standard deviation (ddof = 1).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = ["MeanInterval", "Welch", "FixedEffects", "spearman_bootstrap", "within_group_spearman",
           "mean_interval", "welch", "fixed_effects", "variance_share", "minimum_detectable_effect",
           "simulated_power"]


class MeanInterval(NamedTuple):
    """Sample mean, sample sd (ddof = 1), size and the two-sided t interval of the mean."""
    mean: float
    sd: float
    n: int
    low: float
    high: float


class Welch(NamedTuple):
    """Welch's unequal-variance t-test of mean(a) − mean(b): the difference, t, the Welch–Satterthwaite df,
    the two-sided p and the t interval of the difference."""
    diff: float
    t: float
    df: float
    p: float
    low: float
    high: float


class FixedEffects(NamedTuple):
    """OLS slope of y on x net of indicator effects. se, t, p and df are the classical (homoscedastic) OLS
    ones; low/high and boot_se come from the cluster bootstrap; resid_sd = sqrt(RSS / df); x_resid_sd is the
    sd of x after the indicator effects are removed (the variation of x the slope is estimated from)."""
    slope: float
    se: float
    t: float
    p: float
    df: int
    low: float
    high: float
    boot_se: float
    resid_sd: float
    x_resid_sd: float
    n: int
    clusters: int
    draws: int


def _vector(name: str, x, min_len: int = 1, finite: bool = True) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1 or len(arr) < min_len:
        raise ValueError(f"{name} must be 1-D with at least {min_len} values, got shape {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {int(np.sum(~np.isfinite(arr)))} non-finite values "
                         f"(shape {arr.shape})")
    return arr


def spearman_bootstrap(x: npt.ArrayLike, y: npt.ArrayLike, seed: int = 0,
                       draws: int = 2000) -> tuple[float, float, float]:
    """Spearman ρ of the pairs (x, y) [n] and a percentile bootstrap 95% interval over the pairs.
    -> (ρ, low, high)"""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"x and y must be 1-D of one length >= 3, got shapes {x.shape} and {y.shape}")
    if len(np.unique(x)) < 2 or len(np.unique(y)) < 2:
        raise ValueError(f"x and y (shape {x.shape}) must each take at least 2 values: ρ of a constant is undefined")
    rho = stats.spearmanr(x, y).statistic
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(draws):
        idx = rng.integers(0, len(x), len(x))
        if len(np.unique(x[idx])) > 1 and len(np.unique(y[idx])) > 1:
            boots.append(stats.spearmanr(x[idx], y[idx]).statistic)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(rho), float(lo), float(hi)


def within_group_spearman(rows: list[dict], x: str, y: str, group: str, seed: int = 0,
                          draws: int = 2000) -> tuple[float, float, float, int]:
    """Mean over groups (with >= 3 rows) of the Spearman ρ between columns x and y within the group, and a
    bootstrap 95% interval over groups. Where y differs by orders of magnitude between groups, a pooled ρ
    mostly ranks the groups; this asks whether, within one group, a larger x goes with a larger y.
    -> (ρ, low, high, number of groups), NaN where fewer than 2 groups qualify."""
    per = []
    for g in dict.fromkeys(r[group] for r in rows):
        sel = [r for r in rows if r[group] == g]
        xs, ys = [r[x] for r in sel], [r[y] for r in sel]
        if len(sel) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1:
            per.append(stats.spearmanr(xs, ys).statistic)
    if len(per) < 2:
        return float("nan"), float("nan"), float("nan"), len(per)
    per = np.asarray(per)
    rng = np.random.default_rng(seed)
    boots = [np.mean(per[rng.integers(0, len(per), len(per))]) for _ in range(draws)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(np.mean(per)), float(lo), float(hi), len(per)


def mean_interval(x: npt.ArrayLike, level: float = 0.95) -> MeanInterval:
    """Mean of x [n ≥ 2], its sample sd (ddof = 1) and the t interval mean ± t_{(1+level)/2, n−1}·sd/√n."""
    x = _vector("x", x, 2)
    n, mean, sd = len(x), float(np.mean(x)), float(np.std(x, ddof=1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n)
    return MeanInterval(mean, sd, n, float(mean - half), float(mean + half))


def welch(a: npt.ArrayLike, b: npt.ArrayLike, level: float = 0.95) -> Welch:
    """Welch's t-test of mean(a) − mean(b), a [n_a ≥ 2], b [n_b ≥ 2], with the Welch–Satterthwaite df
    ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1)) and the t interval of the
    difference. ValueError when both samples are constant (t undefined)."""
    a, b = _vector("a", a, 2), _vector("b", b, 2)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    if va + vb == 0:
        raise ValueError(f"a and b are both constant (shapes {a.shape}, {b.shape}): the t statistic is undefined")
    diff, se = float(np.mean(a) - np.mean(b)), float(np.sqrt(va + vb))
    df = float((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)))
    t = diff / se
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return Welch(diff, float(t), df, float(2 * stats.t.sf(abs(t), df)), diff - half, diff + half)


def _indicators(factors: dict, n: int, rows=None) -> np.ndarray:
    """Treatment-coded indicator columns [n, Σ(levels − 1)] of each factor (labels [n]), restricted to `rows`."""
    cols = []
    for name, labels in factors.items():
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"factor {name!r} must have shape ({n},), got shape {labels.shape}")
        labels = labels if rows is None else labels[rows]
        levels = list(dict.fromkeys(labels.tolist()))
        cols += [(labels == level).astype(float) for level in levels[1:]]
    size = n if rows is None else len(rows)
    return np.stack(cols, 1) if cols else np.zeros((size, 0))


def _fit(y: np.ndarray, x: np.ndarray, effects: np.ndarray):
    """OLS of y on [1, x, effects]: (slope, its classical se, residual df, RSS, rank-complete?)."""
    design = np.column_stack([np.ones(len(y)), x, effects])
    coef, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    df = len(y) - design.shape[1]
    if rank < design.shape[1] or df < 1:
        return float("nan"), float("nan"), df, float("nan"), False
    rss = float(np.sum((y - design @ coef) ** 2))
    cov = np.linalg.inv(design.T @ design)
    return float(coef[1]), float(np.sqrt(rss / df * cov[1, 1])), df, rss, True


def fixed_effects(y: npt.ArrayLike, x: npt.ArrayLike, factors: dict, cluster: npt.ArrayLike, draws: int = 2000,
                  seed: int = 0, level: float = 0.95) -> FixedEffects:
    """OLS y = c + βx + Σ_f (indicator effects of factor f) + e, y and x [n], each factor's labels [n]
    (treatment coded: the first level seen is the reference). The slope β with its classical OLS se, t,
    two-sided p and df, and a percentile interval from a cluster bootstrap: each of `draws` resamples draws
    the clusters (labels [n], e.g. datasets) with replacement, G = number of clusters, as
    `rng.integers(0, G, G)` with `rng = np.random.default_rng(seed)`, in order of first appearance, keeps
    all rows of each drawn cluster, and refits (draws where β is not identified are skipped).
    ValueError when β is not identified on the full data (x collinear with the effects)."""
    y, x = _vector("y", y, 3), _vector("x", x, 3)
    if y.shape != x.shape:
        raise ValueError(f"y and x must have one length, got shapes {y.shape} and {x.shape}")
    n = len(y)
    effects = _indicators(factors, n)
    cluster = np.asarray(cluster)
    if cluster.shape != (n,):
        raise ValueError(f"cluster must have shape ({n},), got shape {cluster.shape}")
    slope, se, df, rss, ok = _fit(y, x, effects)
    if not ok:
        raise ValueError(f"the slope is not identified: x (shape {x.shape}) is collinear with the indicator "
                         f"effects, or too few rows ({n}) for {effects.shape[1] + 2} coefficients")
    t = slope / se
    # the variation of x the slope uses: x net of the effects (Frisch–Waugh–Lovell)
    base = np.column_stack([np.ones(n), effects])
    x_res = x - base @ np.linalg.lstsq(base, x, rcond=None)[0]
    groups = list(dict.fromkeys(cluster.tolist()))
    members = [np.flatnonzero(cluster == g) for g in groups]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(draws):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(groups), len(groups))])
        b, _, _, _, fine = _fit(y[rows], x[rows], _indicators(factors, n, rows))
        if fine:
            boots.append(b)
    if len(boots) < 2:
        raise ValueError(f"the cluster bootstrap identified the slope in {len(boots)} of {draws} resamples of "
                         f"{len(groups)} clusters: too few clusters for a bootstrap interval")
    lo, hi = np.percentile(boots, [50 - 50 * level, 50 + 50 * level])
    return FixedEffects(slope, se, float(t), float(2 * stats.t.sf(abs(t), df)), df, float(lo), float(hi),
                        float(np.std(boots, ddof=1)), float(np.sqrt(rss / df)), float(np.std(x_res, ddof=1)),
                        n, len(groups), len(boots))


def variance_share(y: npt.ArrayLike, factors: dict, base: dict | None = None) -> float:
    """The share of the variance of y [n] that the indicator effects of `factors` explain beyond those of
    `base` (partial R²): (R²(base + factors) − R²(base)) / (1 − R²(base)); with no base, plain R².
    E.g. factors = {tokenizer}, base = {dataset}: how much of the within-dataset variation of an isotropy
    measure the tokenizer alone accounts for."""
    y = _vector("y", y, 2)
    n, base = len(y), base or {}

    def r2(effects: np.ndarray) -> float:
        design = np.column_stack([np.ones(n), effects])
        resid = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
        return 1.0 - float(np.sum(resid**2) / np.sum((y - y.mean()) ** 2))

    if np.all(y == y[0]):
        raise ValueError(f"y is constant (shape {y.shape}): there is no variance to share")
    r_base = r2(_indicators(base, n))
    r_full = r2(np.column_stack([_indicators(base, n), _indicators(factors, n)]))
    return float((r_full - r_base) / (1.0 - r_base)) if r_base < 1.0 else float("nan")


def minimum_detectable_effect(se: float, alpha: float = 0.05, power: float = 0.8,
                              df: float | None = None) -> float:
    """The smallest |effect| a two-sided level-alpha test detects with the given power, from the estimate's
    standard error: (z_{1−α/2} + z_power)·se (2.80·se at 0.05 and 0.8), or with t quantiles on df degrees of
    freedom, (t_{1−α/2, df} + t_{power, df})·se, for small samples (3.7·se at df = 4)."""
    if not (np.isfinite(se) and se > 0):
        raise ValueError(f"se must be finite and positive, got {se!r}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha!r} and {power!r}")
    if df is not None and not df > 0:
        raise ValueError(f"df must be positive, got {df!r}")
    dist = stats.norm if df is None else stats.t(df)
    return float((dist.ppf(1 - alpha / 2) + dist.ppf(power)) * se)


def simulated_power(x: npt.ArrayLike, factors: dict, slope: float, resid_sd: float, alpha: float = 0.05,
                    draws: int = 2000, seed: int = 0) -> float:
    """Brute-force power of the fixed-effects design: the share of `draws` simulated data sets
    y = slope·x + N(0, resid_sd²) [n] (the indicator effects do not move the estimate, so they are left at 0)
    in which the classical OLS t-test of the slope, fit with the same indicator effects, rejects at alpha."""
    x = _vector("x", x, 3)
    effects = _indicators(factors, len(x))
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(draws):
        b, se, df, _, ok = _fit(slope * x + resid_sd * rng.standard_normal(len(x)), x, effects)
        if not ok:
            raise ValueError(f"the slope is not identified: x (shape {x.shape}) is collinear with the effects")
        hits += abs(b / se) > stats.t.ppf(1 - alpha / 2, df)
    return hits / draws

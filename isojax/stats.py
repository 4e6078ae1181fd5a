"""Statistics for the study's isotropy-vs-error questions: rank correlations with bootstrap intervals, sample
means with t intervals, Welch's two-sample test, a fixed-effects regression with a cluster bootstrap, the
within-cell slope (cell fixed effects, cluster-robust), a dose-response fit with Dunnett's comparisons against a
control, variance components, and the power of these designs (minimum detectable effects, seeds per arm).

Everything here is host-side numpy/scipy in float64 (results are small tables, not traced arrays), so the
numbers do not depend on JAX_ENABLE_X64. Every "sd" is the sample standard deviation (ddof = 1).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = ["MeanInterval", "Welch", "FixedEffects", "WithinSlope", "DoseResponse", "Dunnett", "VarianceComponents",
           "spearman_bootstrap", "within_group_spearman", "mean_interval", "welch", "fixed_effects", "within_slope",
           "cr2_df", "dose_response", "dunnett", "variance_components", "variance_share", "variance_bound",
           "minimum_detectable_effect", "slope_variance", "dunnett_critical", "dunnett_power", "seeds_per_arm",
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
    # every resample at once (the same index draws as one at a time): ρ = Pearson r of the average ranks, as
    # `spearmanr` computes it; a resample where x or y is constant has no ρ and is left out
    idx = np.random.default_rng(seed).integers(0, len(x), (draws, len(x)))
    rx, ry = stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    sx, sy = np.sqrt(np.sum(rx**2, axis=1)), np.sqrt(np.sum(ry**2, axis=1))
    ok = (np.ptp(x[idx], axis=1) > 0) & (np.ptp(y[idx], axis=1) > 0)
    boots = np.sum(rx * ry, axis=1)[ok] / (sx[ok] * sy[ok])
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


class WithinSlope(NamedTuple):
    """OLS slope of y on x net of cell effects (one indicator per cell: the within estimator), so it rests only on
    how x and y vary together inside cells (seed to seed). se, t, p and df are the classical ones
    (df = n − cells − 1). se_cluster is the cluster-robust CR2 se (clusters contain whole cells) and df_cluster
    its Bell–McCaffrey degrees of freedom (`cr2_df`: fewer than clusters − 1 where a few clusters hold most of
    the variation of x); low/high are its t interval and p_cluster its two-sided p; se_cr1 is the plain CR1 se
    for comparison. boot_low/boot_high and boot_se come from a cluster bootstrap. resid_sd = sqrt(RSS / df);
    x_within_sd is the sd of x net of the cell effects (sqrt(Σ (x − x̄_cell)² / (n − cells))), the variation the
    slope is estimated from."""
    slope: float
    se: float
    t: float
    p: float
    df: int
    se_cluster: float
    df_cluster: float
    p_cluster: float
    low: float
    high: float
    se_cr1: float
    boot_low: float
    boot_high: float
    boot_se: float
    resid_sd: float
    x_within_sd: float
    n: int
    cells: int
    clusters: int
    draws: int


def cr2_df(shares: npt.ArrayLike) -> float:
    """Bell–McCaffrey degrees of freedom of the CR2 variance of a within-cell slope, from each cluster's share
    s_g of Σ (x − x̄_cell)² [G] (shares sum to 1, each < 1). Under a working model of iid errors the CR2
    variance is σ²/Σx̃² · Σ_j λ_j χ²_1,j / Σ λ, λ the eigenvalues of diag(d) − r rᵀ, d_g = s_g / (1 − s_g),
    r_g = s_g / sqrt(1 − s_g); its Satterthwaite df (Σλ)² / Σλ² is 1 / (Σ d² − 2 Σ d r² + (Σ r²)²): G − 1 for
    equal shares, near 1 when one cluster holds almost all of x's variation (Imbens and Kolesár 2016)."""
    s = _vector("shares", shares, 2)
    if np.any(s < 0) or abs(np.sum(s) - 1) > 1e-9 or np.max(s) >= 1:
        raise ValueError(f"shares must be >= 0, sum to 1 and each be < 1, got shape {s.shape}, sum {np.sum(s)!r}, "
                         f"max {np.max(s)!r}")
    d, r2 = s / (1 - s), s**2 / (1 - s)
    return float(1.0 / (np.sum(d**2) - 2 * np.sum(d * r2) + np.sum(r2) ** 2))


def _codes(name: str, labels, n: int) -> tuple[np.ndarray, int]:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got shape {labels.shape}")
    _, codes = np.unique(labels.astype(str), return_inverse=True)
    return codes, int(codes.max()) + 1


def within_slope(y: npt.ArrayLike, x: npt.ArrayLike, cell: npt.ArrayLike, cluster: npt.ArrayLike | None = None,
                 draws: int = 2000, seed: int = 0, level: float = 0.95) -> WithinSlope:
    """The within-cell slope of y [n] on x [n], cell [n] labelling the cells (e.g. dataset × variant; the rows
    of a cell are its seeds): β = Σ x̃ỹ / Σ x̃², x̃ = x − mean of its cell (the OLS slope with one indicator per
    cell). Cells of one row carry no information and are allowed. cluster [n] (default: the cell) groups whole
    cells (e.g. datasets): the CR2 se is sqrt(Σ_g (Σ_{i∈g} x̃_i e_i)² / (1 − s_g)) / Σ x̃², e the within
    residuals and s_g the cluster's share of Σ x̃² (its leverage: the bias-reduced "CR2" of Bell and McCaffrey
    2002, whose adjustment (I − H_gg)^(-1/2) reduces to 1/sqrt(1 − s_g) here because the cell effects are
    nested in the clusters), with a t interval on the Bell–McCaffrey df (`cr2_df`); the CR1 se is
    sqrt(G/(G−1) · Σ_g (Σ_{i∈g} x̃_i e_i)²) / Σ x̃² (its factor (n−1)/(n−K) has K = 1: the cell effects are
    absorbed, as in Stata's xtreg, fe). Where a few clusters hold most of x's variation (e.g. cells whose
    IsoScore is 10x the others'), CR1 on G − 1 df rejects too often and CR2 with its df does not. The cluster
    bootstrap draws the G clusters with replacement (`rng.integers(0, G, G)`,
    `rng = np.random.default_rng(seed)`, clusters in sorted order of their labels) and refits, skipping draws
    where Σ x̃² = 0. ValueError when x does not vary within any cell, or a cell lies in two clusters."""
    y, x = _vector("y", y, 3), _vector("x", x, 3)
    if y.shape != x.shape:
        raise ValueError(f"y and x must have one length, got shapes {y.shape} and {x.shape}")
    n = len(y)
    cells, n_cells = _codes("cell", cell, n)
    groups, n_groups = _codes("cluster", cell if cluster is None else cluster, n)
    owner = np.full(n_cells, -1)
    for c, g in zip(cells, groups):
        if owner[c] not in (-1, g):
            raise ValueError(f"cluster must contain whole cells: a cell (shape {cells.shape}) lies in two clusters")
        owner[c] = g
    size = np.bincount(cells, minlength=n_cells)
    xw = x - (np.bincount(cells, x, n_cells) / size)[cells]
    yw = y - (np.bincount(cells, y, n_cells) / size)[cells]
    sxx = float(np.sum(xw**2))
    if not sxx > 1e-300:
        raise ValueError(f"the slope is not identified: x (shape {x.shape}) does not vary within any cell")
    slope = float(np.sum(xw * yw) / sxx)
    resid = yw - slope * xw
    df = n - n_cells - 1
    if df < 1:
        raise ValueError(f"too few rows ({n}) for {n_cells} cells and a slope: the residual df is {df}")
    se = float(np.sqrt(np.sum(resid**2) / df / sxx))
    score = np.bincount(groups, xw * resid, n_groups)
    if n_groups < 2:
        raise ValueError(f"cluster must have at least 2 groups for a cluster-robust se, got {n_groups}")
    share = np.bincount(groups, xw**2, n_groups) / sxx
    if np.max(share) > 1 - 1e-12:
        raise ValueError(f"x varies within the cells of one cluster only ({n_groups} clusters): a cluster-robust "
                         "se cannot be estimated")
    se_cr1 = float(np.sqrt(n_groups / (n_groups - 1) * np.sum(score**2)) / sxx)
    se_cl = float(np.sqrt(np.sum(score**2 / (1 - share))) / sxx)
    df_cl = cr2_df(share)
    q = stats.t.ppf(0.5 + level / 2, df_cl)
    # the bootstrap only reweights clusters, whose within-cell deviations are unchanged by resampling
    g_xy, g_xx = np.bincount(groups, xw * yw, n_groups), np.bincount(groups, xw**2, n_groups)
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups) for _ in range(draws)])
    den = counts @ g_xx
    boots = (counts @ g_xy)[den > 0] / den[den > 0]
    if len(boots) < 2:
        raise ValueError(f"the cluster bootstrap identified the slope in {len(boots)} of {draws} resamples of "
                         f"{n_groups} clusters")
    lo, hi = np.percentile(boots, [50 - 50 * level, 50 + 50 * level])
    t = slope / se
    return WithinSlope(slope, se, float(t), float(2 * stats.t.sf(abs(t), df)), df, se_cl, df_cl,
                       float(2 * stats.t.sf(abs(slope / se_cl), df_cl)), slope - q * se_cl, slope + q * se_cl, se_cr1,
                       float(lo), float(hi), float(np.std(boots, ddof=1)), float(np.sqrt(np.sum(resid**2) / df)),
                       float(np.sqrt(sxx / (n - n_cells))), n, n_cells, n_groups, len(boots))


class DoseResponse(NamedTuple):
    """A polynomial dose-response fit y = Σ_j b_j d^j (j = 0..degree) by OLS with one pooled residual variance
    across arms. coef, se [degree + 1] with df = n − degree − 1 and sigma = sqrt(RSS / df); doses [k] the arms
    other than the control, diff [k] the fitted ŷ(dose) − ŷ(control) with its se, two-sided p and t interval;
    lack_f, lack_p: the F-test of the polynomial against one mean per arm on (arms − degree − 1, n − arms) df
    (NaN when the polynomial has as many coefficients as there are arms); pure_sd: the within-arm sd, pooled."""
    coef: np.ndarray
    se: np.ndarray
    df: int
    sigma: float
    doses: np.ndarray
    diff: np.ndarray
    diff_se: np.ndarray
    p: np.ndarray
    low: np.ndarray
    high: np.ndarray
    lack_f: float
    lack_df: tuple[int, int]
    lack_p: float
    pure_sd: float


def dose_response(y: npt.ArrayLike, dose: npt.ArrayLike, degree: int = 2, control: float = 0.0,
                  level: float = 0.95) -> DoseResponse:
    """Fit y [n] (e.g. log NMSE of each run) against dose [n] (e.g. the penalty weight w) with a polynomial of
    `degree` (2: a linear and a quadratic term, which can bend into an inverted U), pooled variance across arms
    (each distinct dose is an arm; replicates within an arm give the pure error). -> `DoseResponse`, with the
    fitted contrast of every other arm against `control` (an arm that must exist)."""
    y, dose = _vector("y", y, 3), _vector("dose", dose, 3)
    if y.shape != dose.shape:
        raise ValueError(f"y and dose must have one length, got shapes {y.shape} and {dose.shape}")
    arms = np.unique(dose)
    if control not in arms:
        raise ValueError(f"control {control!r} is not one of the doses {arms.tolist()}")
    if not (isinstance(degree, int) and 1 <= degree < len(arms)):
        raise ValueError(f"degree must be an integer in [1, {len(arms) - 1}] for {len(arms)} arms, got {degree!r}")
    n, p = len(y), degree + 1
    df = n - p
    if df < 1:
        raise ValueError(f"too few runs ({n}) for a degree-{degree} fit")
    design = np.vander(dose, p, increasing=True)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    rss = float(np.sum((y - design @ coef) ** 2))
    cov = np.linalg.inv(design.T @ design) * rss / df
    others = arms[arms != control]
    contrast = np.vander(others, p, increasing=True) - np.vander(np.array([control]), p, increasing=True)
    diff, diff_se = contrast @ coef, np.sqrt(np.einsum("ij,jk,ik->i", contrast, cov, contrast))
    q = stats.t.ppf(0.5 + level / 2, df)
    arm_of = np.searchsorted(arms, dose)
    means = np.bincount(arm_of, y) / np.bincount(arm_of)
    pure = float(np.sum((y - means[arm_of]) ** 2))
    pure_df, lack_df = n - len(arms), len(arms) - p
    if lack_df > 0 and pure_df > 0 and pure > 0:
        lack_f = ((rss - pure) / lack_df) / (pure / pure_df)
        lack_p = float(stats.f.sf(lack_f, lack_df, pure_df))
    else:
        lack_f = lack_p = float("nan")
    return DoseResponse(coef, np.sqrt(np.diag(cov)), df, float(np.sqrt(rss / df)), others, diff, diff_se,
                        2 * stats.t.sf(np.abs(diff / diff_se), df), diff - q * diff_se, diff + q * diff_se,
                        float(lack_f), (lack_df, pure_df), lack_p,
                        float(np.sqrt(pure / pure_df)) if pure_df > 0 else float("nan"))


class Dunnett(NamedTuple):
    """Dunnett's many-to-one comparisons, each arm's mean minus the control's [k]: the pooled-variance t
    statistics, the two-sided p-values adjusted for the k comparisons, the simultaneous interval, and the
    pooled df (n_total − k − 1)."""
    diff: np.ndarray
    t: np.ndarray
    p: np.ndarray
    low: np.ndarray
    high: np.ndarray
    df: int


def dunnett(samples: list, control: npt.ArrayLike, level: float = 0.95, seed: int = 0) -> Dunnett:
    """Dunnett's test of each sample [n_i ≥ 2] against the control [n_0 ≥ 2] (`scipy.stats.dunnett`, two-sided,
    one variance pooled over every arm; its multivariate-t probabilities are integrated by randomised
    quasi-Monte Carlo, made repeatable with `seed`)."""
    arms = [_vector(f"samples[{i}]", a, 2) for i, a in enumerate(samples)]
    control = _vector("control", control, 2)
    if not arms:
        raise ValueError("samples must hold at least one arm besides the control, got none")
    res = stats.dunnett(*arms, control=control, alternative="two-sided", random_state=seed)
    ci = res.confidence_interval(level)
    df = sum(len(a) for a in arms) + len(control) - len(arms) - 1
    diff = np.array([np.mean(a) for a in arms]) - np.mean(control)
    return Dunnett(diff, np.asarray(res.statistic), np.asarray(res.pvalue), np.asarray(ci.low), np.asarray(ci.high),
                   df)


class VarianceComponents(NamedTuple):
    """Variance of y at two levels: `within` cells (seed to seed, the pure error, on within_df df) and `cell`
    (the cell effect beyond additive factor effects, e.g. dataset × variant beyond dataset + variant), with the
    additive fit's residual variance `residual` on residual_df df."""
    within: float
    within_df: int
    cell: float
    residual: float
    residual_df: int


def variance_components(y: npt.ArrayLike, factors: dict, cell: npt.ArrayLike,
                        within: tuple[float, int] | None = None) -> VarianceComponents:
    """Method-of-moments (ANOVA, Henderson's method 3) variance components of y [n] in the model
    y = additive indicator effects of `factors` + u_cell + e, u ~ (0, σ²_cell), e ~ (0, σ²_within), cell [n]
    nested in the factor combinations (e.g. dataset × variant, its rows the seeds): σ²_within is the pure error
    RSS / (n − cells) of a fit with one effect per cell; σ²_cell = (RSS_additive − σ²_within · df_additive) /
    tr(Zᵀ M Z), M the residual projection of the additive design and Z the cell indicators (exact in
    expectation for unbalanced designs; truncated at 0). Where no cell has two rows, pass `within` =
    (variance, df) measured elsewhere (e.g. seed-to-seed variance from replicated runs)."""
    y = _vector("y", y, 3)
    n = len(y)
    cells, n_cells = _codes("cell", cell, n)
    base = np.column_stack([np.ones(n), _indicators(factors, n)])
    coef, _, rank, _ = np.linalg.lstsq(base, y, rcond=None)
    df_add = n - rank
    if df_add < 1:
        raise ValueError(f"no residual df: {n} rows for {rank} additive effects")
    rss_add = float(np.sum((y - base @ coef) ** 2))
    size = np.bincount(cells, minlength=n_cells)
    pure_df = n - n_cells
    if within is None:
        if pure_df < 1:
            raise ValueError(f"no cell has two rows (shape {y.shape}, {n_cells} cells): pass within=(variance, df)")
        within = (float(np.sum((y - (np.bincount(cells, y, n_cells) / size)[cells]) ** 2)) / pure_df, pure_df)
    s2w, dfw = float(within[0]), int(within[1])
    z = np.zeros((n, n_cells))
    z[np.arange(n), cells] = 1.0
    mz = z - base @ np.linalg.lstsq(base, z, rcond=None)[0]
    trace = float(np.sum(mz * z))
    s2c = max((rss_add - s2w * df_add) / trace, 0.0) if trace > 0 else float("nan")
    return VarianceComponents(s2w, dfw, float(s2c), rss_add / df_add, int(df_add))


def variance_bound(variance: float, df: float, confidence: float = 0.8, upper: bool = True) -> float:
    """One-sided confidence bound of a variance σ² from an estimate s² on df degrees of freedom (df·s²/σ² ~ χ²_df):
    the upper bound df·s² / χ²_{1−confidence, df} (σ² lies below it with that confidence; for planning with a
    pilot's noise) or the lower bound df·s² / χ²_{confidence, df} (for a pilot's signal variation)."""
    if not (np.isfinite(variance) and variance >= 0 and df > 0 and 0 < confidence < 1):
        raise ValueError(f"variance must be finite and >= 0, df > 0 and confidence in (0, 1), got {variance!r}, "
                         f"{df!r}, {confidence!r}")
    q = stats.chi2.ppf(1 - confidence if upper else confidence, df)
    return float(df * variance / q)


def slope_variance(analysis: str, x_cell_ss: float, x_within_ss: float, cell: float, within: float,
                   seeds: float) -> float:
    """Var(β̂) of a fixed-effects slope in a design with `seeds` rows per cell, model
    y = β·x + additive effects + u_cell + e (Var u = `cell`, Var e = `within`), given how much x varies:
    x_within_ss = W = Σ (x − x̄_cell)² over all rows (seed to seed), and x_cell_ss = A = Σ over cells of x̃̄²,
    x̃̄ the cell's mean of x net of the additive effects (the variation between cells beyond the additive
    effects). Exact for a balanced design with fixed x (x̃ᵀΣx̃ / (x̃ᵀx̃)² and GLS information written out):
    - "within" (cell effects, the within estimator): within / x_within_ss;
    - "additive" (additive effects only, OLS with cell effects left in the residual, S = seeds):
      (S²·A·(cell + within/S) + W·within) / (S·A + W)², A = x_cell_ss, W = x_within_ss;
    - "mixed" (random cell effects, GLS with known components): 1 / (W/within + A/(cell + within/S)).
    With one seed, W = 0 and "additive" = "mixed" = (cell + within)/A."""
    if analysis not in ("within", "additive", "mixed"):
        raise ValueError(f"analysis must be 'within', 'additive' or 'mixed', got {analysis!r}")
    vals = {"x_cell_ss": x_cell_ss, "x_within_ss": x_within_ss, "cell": cell, "within": within, "seeds": seeds}
    bad = {k: v for k, v in vals.items() if not (np.isfinite(v) and v >= 0)}
    if bad or seeds < 1:
        raise ValueError(f"every argument must be finite and >= 0 (seeds >= 1), got {bad or {'seeds': seeds}}")
    a, w, s = float(x_cell_ss), float(x_within_ss), float(seeds)
    if analysis == "within":
        return within / w if w > 0 else float("inf")
    if analysis == "additive":
        den = (s * a + w) ** 2
        return (s * s * a * (cell + within / s) + w * within) / den if den > 0 else float("inf")
    info = (w / within if within > 0 else float("inf") if w > 0 else 0.0) + a / (cell + within / s)
    return 1.0 / info if info > 0 else float("inf")


def _t_or_normal(df: float | None):
    return stats.norm if df is None or not np.isfinite(df) else stats.t(df)


@functools.lru_cache(maxsize=1)
def _quadrature() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gauss–Hermite nodes and weights for u ~ N(0, 1) (96) and Gauss–Legendre ones on (0, 1) (128)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(96)
    v, w = np.polynomial.legendre.leggauss(128)
    return nodes, weights / np.sqrt(2 * np.pi), (v + 1) / 2, w / 2


def dunnett_critical(k: int, df: float | None = None, alpha: float = 0.05) -> float:
    """The two-sided critical value c of Dunnett's test of k arms against one control, equal group sizes
    (correlation 1/2 between the comparisons), on df pooled degrees of freedom (None: known variance):
    P(max_i |T_i| ≤ c) = 1 − alpha, T_i = (U_i − U_0)/(√2·s), U iid N(0, 1), s² ~ χ²_df/df. Computed as
    E_s ∫ φ(u)[Φ(u + √2 c s) − Φ(u − √2 c s)]^k du (Gauss–Hermite in u, Gauss–Legendre in the quantile of s).
    k = 1 gives the two-sample t quantile."""
    if not (isinstance(k, (int, np.integer)) and k >= 1 and isinstance(alpha, (float, int)) and 0 < alpha < 1) or (
            df is not None and not (isinstance(df, (float, int, np.number)) and df > 0)):
        raise ValueError(f"k must be an integer >= 1, alpha in (0, 1) and df > 0 or None, got {k!r}, {alpha!r}, "
                         f"{df!r}")
    return _dunnett_critical(int(k), None if df is None else float(df), float(alpha))


@functools.lru_cache(maxsize=4096)  # power searches ask for the same (k, df) again and again
def _dunnett_critical(k: int, df: float | None, alpha: float) -> float:
    from scipy import optimize

    nodes, weights, v, s_weights = _quadrature()
    if df is None:
        scales, s_weights = np.ones(1), np.ones(1)
    else:  # s = F⁻¹(v), v ~ U(0, 1), F the law of sqrt(χ²_df/df): Gauss–Legendre in v
        scales = stats.chi(df, scale=1 / np.sqrt(df)).ppf(v)

    from scipy.special import ndtr  # Φ, without the distribution objects' overhead (this runs ~30 times)

    def coverage(c: float) -> float:
        h = np.sqrt(2.0) * c * scales[:, None]
        inside = (ndtr(nodes + h) - ndtr(nodes - h)) ** k  # [scales, nodes]
        return float(s_weights @ (inside @ weights))

    if k == 1:
        return float(_t_or_normal(df).ppf(1 - alpha / 2))
    return float(optimize.brentq(lambda c: coverage(c) - (1 - alpha), 0.0, 50.0, xtol=1e-10))


def dunnett_power(delta: float, sd: float, n: int, k: int, alpha: float = 0.05, n_control: int | None = None) -> float:
    """Power of Dunnett's two-sided test (k arms against a control, one pooled sd) to flag one arm whose mean
    differs from the control's by delta, with n runs per arm (n_control in the control, default n; the
    critical value assumes equal sizes): P(|T| > c), T ~ noncentral t on df = k·n + n_control − k − 1 with
    noncentrality delta / (sd·sqrt(1/n + 1/n_control)). k = 1 is the pooled two-sample t-test."""
    n0 = n if n_control is None else n_control
    if not (sd > 0 and n >= 2 and n0 >= 2):
        raise ValueError(f"sd must be > 0 and n, n_control >= 2, got {sd!r}, {n!r}, {n0!r}")
    df = k * n + n0 - k - 1
    c = dunnett_critical(k, df, alpha)
    lam = abs(delta) / (sd * np.sqrt(1 / n + 1 / n0))
    # the lower tail as P(T_{-λ} > c): scipy's nct.cdf(-c, df, λ) is NaN where it underflows (large λ)
    return float(stats.nct.sf(c, df, lam) + stats.nct.sf(c, df, -lam))


def seeds_per_arm(delta: float, sd: float, k: int, power: float = 0.8, alpha: float = 0.05,
                  max_n: int = 100_000) -> int:
    """The smallest number of runs per arm (control included) with which Dunnett's test of k arms detects a
    difference delta with the given power (`dunnett_power`); ValueError when even max_n does not."""
    if not (abs(delta) > 0 and sd > 0 and 0 < power < 1):
        raise ValueError(f"delta must be non-zero, sd > 0 and power in (0, 1), got {delta!r}, {sd!r}, {power!r}")
    lo, hi = 2, 2
    while dunnett_power(delta, sd, hi, k, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > max_n:
            raise ValueError(f"more than max_n = {max_n} runs per arm are needed for delta {delta!r} at sd {sd!r}")
    while lo < hi:  # the power rises with n: bisect for the first n that reaches it
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if dunnett_power(delta, sd, mid, k, alpha) < power else (lo, mid)
    return lo

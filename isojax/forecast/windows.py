"""Rolling-origin backtest windows over the held-out tail of each series, and the season of a context.

The split is the one training uses (`isojax.data.real.split_by_time`, `isojax.data.corpus`): the first
`training_length(n, test_fraction)` values of a series of n values are the training part, the rest is the
held-out tail. A window at origin o (an index into its series, o ≥ the training length) is

    context = x[o - C : o]      (C values ending just before the origin; may reach back into the training part)
    target  = x[o : o + H]      (the H values from the origin on; always inside the held-out tail)

so no target value was ever a training value, and no target value is in its own context. Origins run from
max(training length, C) in steps of `stride` (default H: targets do not overlap) while o + H ≤ n; `origins=k`
keeps the first k of them and refuses a series where fewer fit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
from scipy import stats

from isojax.data import files

__all__ = ["Windows", "training_length", "backtest_windows", "detect_season", "max_season"]


@dataclasses.dataclass(frozen=True)
class Windows:
    """W backtest windows: contexts [W, C], targets [W, H] and what each came from.

    series [W]: index of the window's series in `names`; origin [W]: index (in its series) of the first target
    value; season [W]: the season m of the window (given, or detected from its context alone), which the
    seasonal-naive baseline and MASE's scale use; scale [W]: mean |x| over the training part of the window's
    series, the unit a window is divided by before windows of different series are pooled (NMSE, CRPS, WQL);
    train_length [n_series]: each series' training length; names: the series' names."""

    context: np.ndarray
    target: np.ndarray
    series: np.ndarray
    origin: np.ndarray
    season: np.ndarray
    scale: np.ndarray
    train_length: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @property
    def horizon(self) -> int:
        """H, the number of target values per window."""
        return int(self.target.shape[1])

    @property
    def per_series(self) -> np.ndarray:
        """Number of windows of each series. -> [n_series]"""
        return np.bincount(self.series, minlength=len(self.names))

    def subset(self, keep: npt.ArrayLike) -> Windows:
        """The windows selected by `keep` (indices or a boolean mask over W), with the same series table."""
        keep = np.asarray(keep)
        pick = lambda a: a[keep]
        return dataclasses.replace(self, context=pick(self.context), target=pick(self.target),
                                   series=pick(self.series), origin=pick(self.origin), season=pick(self.season),
                                   scale=pick(self.scale))


def training_length(length: int, test_fraction: float) -> int:
    """How many leading values of a series of `length` values are its training part: round(length·(1 −
    test_fraction)), the cut of `isojax.data.real.split_by_time` (training never sees the values after it)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    return int(round(length * (1 - test_fraction)))


def max_season(context: int) -> int:
    """The largest season `detect_season` considers for contexts of `context` values: ⌊C / 2⌋, so that at
    least two cycles are seen (and MASE's seasonal-naive scale has values to average)."""
    return context // 2


def _acf(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelation (the biased estimator, as statsmodels' acf) of each row of x [W, C] at lags
    0..max_lag, after removing each row's least-squares line (a trend would otherwise make every lag look
    seasonal). -> [W, max_lag + 1]; a row with no variation left gets 0 at every lag > 0."""
    w, c = x.shape
    t = np.arange(c, dtype=np.float64)
    design = np.stack([np.ones(c), t - t.mean()], axis=1)  # [C, 2]
    coef = np.linalg.lstsq(design, x.T, rcond=None)[0]  # [2, W]
    r = x - (design @ coef).T
    n = 1 << int(np.ceil(np.log2(2 * c)))  # zero padding: circular FFT correlation equals the linear one
    f = np.fft.rfft(r, n=n, axis=1)
    acov = np.fft.irfft(f * np.conj(f), n=n, axis=1)[:, :max_lag + 1]
    var = acov[:, :1]
    flat = var[:, 0] <= 1e-24 * np.maximum(np.sum(x * x, axis=1), np.finfo(float).tiny)
    out = np.where(flat[:, None], 0.0, acov / np.where(flat[:, None], 1.0, var))
    out[:, 0] = 1.0
    return out


def detect_season(contexts: npt.ArrayLike) -> np.ndarray:
    """The season m of each context [W, C] -> [W] ints ≥ 1, from the context alone.

    Rule (stated so it can be checked): remove each context's least-squares line and take the sample ACF r_k
    (the biased estimator) at lags k = 1 .. ⌊C/2⌋. The candidates are the local maxima (r_k > r_{k−1} and
    r_k ≥ r_{k+1}, k ≥ 2) above the white-noise bound z/√C, z the 1 − 0.1/K normal quantile over the K
    candidate lags (a family-wise 10% test, which keeps white noise at m = 1). For each candidate m, compare
    seasonal-naive with naive in-sample over a season: e_m = mean_t |x_t − x_{t−m}| (seasonal-naive's error at
    every step 1..m) against n_m = mean_{h=1..m} mean_t |x_t − x_{t−h}| (naive's error averaged over steps
    1..m). m is the candidate with e_m < n_m and the largest r_m, or 1 if there is none: a season that does
    not help forecasting is no season here (a random walk's slow ACF swings, or noise bumps on a smooth ACF,
    are refused so). An exactly periodic context of period p ≤ C/2 gets m = p (r_p is the highest useful peak:
    the biased ACF shrinks the multiples kp by (C − kp)/C)."""
    x = np.asarray(contexts, np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < 4:
        raise ValueError(f"contexts must be [W, C] with W ≥ 1 and C ≥ 4, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"contexts has non-finite values (shape {x.shape})")
    c = x.shape[1]
    top = max_season(c)
    r = _acf(x, top + 1)  # one lag past the last candidate, to test it for a local maximum
    k = np.arange(2, top + 1)
    peak = (r[:, k] > r[:, k - 1]) & (r[:, k] >= r[:, k + 1])
    z = stats.norm.ppf(1 - 0.1 / len(k))
    ok = peak & (r[:, k] > z / np.sqrt(c))
    # mae[:, h − 1] = mean_t |x_t − x_{t−h}|: the in-sample error of naive h steps ahead, and of seasonal-naive
    # (at every step) for season h
    mae = np.stack([np.mean(np.abs(x[:, h:] - x[:, :-h]), axis=1) for h in range(1, top + 1)], axis=1)
    naive_over_season = np.cumsum(mae, axis=1) / np.arange(1, top + 1)  # naive's mean error over steps 1..m
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mae[:, k - 1] / naive_over_season[:, k - 1]  # < 1: seasonal-naive beats naive over a season
    useful = ok & (ratio < 1)
    best = k[np.argmax(np.where(useful, r[:, k], -np.inf), axis=1)]
    return np.where(useful.any(axis=1), best, 1).astype(np.int64)


def _positive_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
    return int(value)


def _origins(name: str, n: int, cut: int, context: int, horizon: int, stride: int, origins: int | None) -> np.ndarray:
    first, last = max(cut, context), n - horizon
    if last < first:
        raise ValueError(f"{name} is too short for one window: {n} values with training length {cut} (the held-out "
                         f"tail has {n - cut}) need the first origin max({cut}, context={context}) = {first} plus "
                         f"horizon={horizon} ≤ {n}")
    fits = np.arange(first, last + 1, stride)
    if origins is not None:
        if len(fits) < origins:
            raise ValueError(f"{name} is too short for origins={origins}: only {len(fits)} origins fit at stride "
                             f"{stride} in its held-out tail of {n - cut} values (context={context}, "
                             f"horizon={horizon})")
        fits = fits[:origins]
    return fits


def backtest_windows(series: list, context: int, horizon: int, test_fraction: float = 0.2,
                     origins: int | None = None, stride: int | None = None, season: int | None = None,
                     names: list[str] | None = None) -> Windows:
    """Rolling-origin windows over the held-out tail of each series: a list of 1-D arrays [n_i] -> `Windows`.

    The training part of a series is its first `training_length(n_i, test_fraction)` values; every target lies
    after it (see the module docstring for the exact indices). Origins start at max(training length, context)
    and step by `stride` (default `horizon`, non-overlapping targets); `origins=k` keeps the first k per series.
    `season`: the season of every window (1 ≤ season ≤ context − 1), or None to detect it from each context
    alone (`detect_season`). Deterministic: no randomness. ValueError naming the series when one is too short
    for a window (or for `origins`), and for bad arguments or series (not 1-D, non-finite, constant, or a
    training part that is all zero, which leaves no scale)."""
    context = _positive_int("context", context, 4)
    horizon = _positive_int("horizon", horizon)
    stride = horizon if stride is None else _positive_int("stride", stride)
    origins = None if origins is None else _positive_int("origins", origins)
    if season is not None:
        season = _positive_int("season", season)
        if season >= context:
            raise ValueError(f"season must be smaller than context={context}, got {season}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    series = files.check_series(series, names)
    names = tuple(names) if names is not None else tuple(f"series[{i}]" for i in range(len(series)))
    ctx, tgt, idx, org, scale, cuts = [], [], [], [], [], []
    for i, (s, name) in enumerate(zip(series, names)):
        cut = training_length(len(s), test_fraction)
        unit = float(np.mean(np.abs(s[:cut]))) if cut else 0.0
        if not unit > 0:
            raise ValueError(f"{name} has no scale: its training part ({cut} of {len(s)} values) is empty or all zero")
        o = _origins(name, len(s), cut, context, horizon, stride, origins)
        ctx.append(s[o[:, None] + np.arange(-context, 0)])
        tgt.append(s[o[:, None] + np.arange(horizon)])
        idx.append(np.full(len(o), i))
        org.append(o)
        scale.append(np.full(len(o), unit))
        cuts.append(cut)
    contexts = np.concatenate(ctx)
    seasons = np.full(len(contexts), season, np.int64) if season is not None else detect_season(contexts)
    return Windows(context=contexts, target=np.concatenate(tgt), series=np.concatenate(idx).astype(np.int64),
                   origin=np.concatenate(org).astype(np.int64), season=seasons, scale=np.concatenate(scale),
                   train_length=np.asarray(cuts, np.int64), names=names)

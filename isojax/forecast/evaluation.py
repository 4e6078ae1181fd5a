"""Evaluate any forecaster on backtest windows against the baselines on exactly the same windows.

A forecaster is a function f(key, contexts [W, C] float64, horizon H) -> samples [W, S, H] (numpy or JAX): a
trained isojax model, a baseline (`baselines.baseline_forecaster`) and your own model plug in the same way.

Aggregation over windows (and so over series of different scales) is a ratio of sums, Σ_w a_w / Σ_w b_w:
- MASE, sMAPE: a_w = the window's value, b_w = 1 (a plain mean; MASE is scale-free by its scaling, sMAPE by
  its form);
- NMSE: a_w = mean_h (ŷ − y)² / u_w², b_w = mean_h y² / u_w²; scaled CRPS: a_w = mean_h CRPS / u_w,
  b_w = mean_h |y| / u_w; WQL: a_w = mean_h mean_q 2·QL_q / u_w, b_w = mean_h |y| / u_w. Here u_w is the window's
  `scale` (mean |x| over its series' training part), so within one series these are the textbook pooled
  definitions (Σ(ŷ − y)² / Σy², Σ CRPS / Σ|y|, …) and across series each series counts in its own units
  instead of the largest series dominating.
A window where a metric is undefined (MASE of a context that repeats exactly, an all-zero target) is left out
of that metric (b_w = 0) for the model and the baselines alike; `windows` in the row counts the rest.

Intervals: a percentile bootstrap over windows (or over series, `resample="series"`, when windows of one series
are too dependent: rolling windows overlap in time, so the window bootstrap is optimistic for one long
series); the skill (metric / seasonal-naive's) is bootstrapped paired, both from the same resampled windows.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
import numpy.typing as npt

from isojax.forecast import baselines as bl
from isojax.forecast import metrics as mt
from isojax.forecast.windows import Windows

__all__ = ["METRICS", "REFERENCE", "Forecaster", "window_scores", "baseline_scores", "aggregate", "evaluate",
           "evaluate_baselines"]

METRICS = ("mase", "smape", "nmse", "scaled_crps", "wql")
REFERENCE = "seasonal_naive"  # the baseline every skill is relative to

Forecaster = Callable[[jax.Array, np.ndarray, int], npt.ArrayLike]

# scores: metric -> (a [W], b [W]); the aggregate is Σ a / Σ b over the windows where both are finite
Scores = dict[str, tuple[np.ndarray, np.ndarray]]


def _check_windows(windows) -> Windows:
    """A Windows whose arrays agree (one built by hand, or edited, may not): [W, C], [W, H] and [W] each, finite,
    seasons in [1, C − 1], scales > 0."""
    if not isinstance(windows, Windows):
        raise ValueError(f"windows must be a Windows (from backtest_windows), got {type(windows).__name__}")
    if len(windows) == 0:
        raise ValueError("windows is empty")
    ctx, tgt = np.asarray(windows.context), np.asarray(windows.target)
    w = tgt.shape[0]
    per_window = [np.shape(getattr(windows, f)) for f in ("series", "origin", "season", "scale")]
    if ctx.ndim != 2 or tgt.ndim != 2 or ctx.shape[0] != w or any(shape != (w,) for shape in per_window):
        raise ValueError(f"windows' arrays disagree: context {ctx.shape}, target {tgt.shape}, series/origin/season/"
                         f"scale {per_window}")
    if not (np.isfinite(ctx).all() and np.isfinite(tgt).all() and np.isfinite(windows.scale).all()):
        raise ValueError("windows has non-finite contexts, targets or scales")
    if (windows.scale <= 0).any() or (windows.season < 1).any() or (windows.season >= ctx.shape[1]).any():
        raise ValueError(f"windows needs scales > 0 and seasons in [1, C - 1] = [1, {ctx.shape[1] - 1}]")
    return windows


def window_scores(samples: npt.ArrayLike, windows: Windows, crps_estimator: str = "fair") -> Scores:
    """Per-window numerators and denominators of every metric in METRICS for samples [W, S, H] on `windows`:
    {metric: (a [W], b [W])} (module docstring); a window where the metric is undefined has a = b = 0.
    crps_estimator: "fair" for samples that are independent draws, "empirical" for a grid of quantiles
    (`metrics.crps`)."""
    windows = _check_windows(windows)
    w, h = windows.target.shape
    s = np.asarray(samples, np.float64)
    if s.ndim != 3 or s.shape[0] != w or s.shape[2] != h or s.shape[1] < 1:
        raise ValueError(f"samples must be [W, S, H] = [{w}, S, {h}] for these windows, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"samples has non-finite values (shape {s.shape})")
    if crps_estimator not in mt.CRPS_ESTIMATORS:
        raise ValueError(f"crps_estimator must be one of {mt.CRPS_ESTIMATORS}, got {crps_estimator!r}")
    levels = np.asarray(mt.QUANTILE_LEVELS)
    y, u = windows.target, windows.scale
    srt = np.sort(s, axis=1)  # once, for the median, the quantiles and the CRPS
    point = mt._quantiles_sorted(srt, np.array([0.5]))[:, 0]  # the median, as np.median
    ones = np.ones(w)
    mean_abs = np.mean(np.abs(y), axis=1) / u
    raw = {
        "mase": (mt.mase(point, y, windows.context, windows.season), ones),
        "smape": (mt.smape(point, y), ones),
        "nmse": (np.mean((point - y) ** 2, axis=1) / u**2, np.mean(y * y, axis=1) / u**2),
        "scaled_crps": (np.mean(mt._crps_sorted(srt, y, crps_estimator), axis=1) / u, mean_abs),
        "wql": (np.mean(2.0 * np.mean(mt._quantile_loss_sorted(srt, y, levels), axis=1), axis=1) / u, mean_abs),
    }
    out = {}
    for name, (a, b) in raw.items():
        ok = np.isfinite(a) & np.isfinite(b) & (b > 0)
        out[name] = (np.where(ok, a, 0.0), np.where(ok, b, 0.0))
    return out


def baseline_scores(windows: Windows, samples: int = 101) -> dict[str, Scores]:
    """`window_scores` of every baseline in `baselines.BASELINES` on `windows` (seasonal-naive with the windows'
    own seasons), from `samples` (odd) samples each. Their samples are a grid of quantiles, not draws, so their
    CRPS is the empirical one (within O(1/S²) of the CRPS of the residual distribution). Compute once per set
    of windows and pass it to `evaluate` as `reference` when many models share the windows."""
    windows = _check_windows(windows)
    out = {}
    for name in bl.BASELINES:
        season = windows.season if name == "seasonal_naive" else None
        out[name] = window_scores(bl.baseline_samples(name, windows.context, windows.horizon, season, samples),
                                  windows, crps_estimator="empirical")
    return out


def _clusters(windows: Windows, resample: str) -> np.ndarray:
    if resample == "window":
        return np.arange(len(windows))
    if resample == "series":
        return np.unique(windows.series, return_inverse=True)[1]
    raise ValueError(f"resample must be 'window' or 'series', got {resample!r}")


def _ratio(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _percentiles(x: np.ndarray, level: float) -> np.ndarray:
    """Percentile interval of each row of x [M, D] -> [M, 2]; NaN draws (a resample with no usable window) are
    dropped, a row with none left gives NaN."""
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    if np.isfinite(x).all():
        return np.percentile(x, tails, axis=1).T
    out = np.full((x.shape[0], 2), np.nan)
    for i, row in enumerate(x):
        row = row[np.isfinite(row)]
        if row.size:
            out[i] = np.percentile(row, tails)
    return out


def _bootstrap(model: np.ndarray, ref: np.ndarray, clusters: np.ndarray, draws: int, level: float,
               seed: int) -> dict[str, np.ndarray]:
    """M metrics at once: model, ref [M, 2, W] (a and b of each metric), clusters [W] in 0 .. K−1 -> dict of [M]
    arrays (see `aggregate`). Each draw resamples K clusters with replacement, the same
    draws for every metric and both sides (paired)."""
    both = (model[:, 1] > 0) & (ref[:, 1] > 0)  # [M, W]
    vals = (np.concatenate([model, ref], axis=1) * both[:, None, :]).reshape(-1, clusters.size)  # [4M, W]
    k = int(clusters.max()) + 1
    if k == clusters.size and (clusters == np.arange(k)).all():  # one window per cluster
        sums = vals
    else:
        sums = np.stack([np.bincount(clusters, weights=row, minlength=k) for row in vals])  # [4M, K]
    pick = np.random.default_rng(seed).integers(0, k, size=(draws, k))  # draw d resamples clusters pick[d]
    counts = np.bincount((np.arange(draws)[:, None] * k + pick).ravel(), minlength=draws * k).reshape(draws, k)
    # Σ over the resampled clusters; a 2-D product (a stacked matmul with broadcasting is a slow loop in numpy)
    boot = (sums @ counts.T.astype(np.float64)).reshape(-1, 4, draws)  # [M, 4, D]
    total = sums.sum(axis=1).reshape(-1, 4)
    value, reference = _ratio(total[:, 0], total[:, 1]), _ratio(total[:, 2], total[:, 3])
    val_b, ref_b = _ratio(boot[:, 0], boot[:, 1]), _ratio(boot[:, 2], boot[:, 3])
    with np.errstate(divide="ignore", invalid="ignore"):
        skill, skill_b = value / reference, val_b / ref_b
    m = len(value)
    interval = _percentiles(np.concatenate([val_b, skill_b]), level)  # [2M, 2]
    used = [len(np.unique(clusters[row])) for row in both] if k < clusters.size else both.sum(axis=1)
    return {"value": value, "low": interval[:m, 0], "high": interval[:m, 1], "reference": reference,
            "skill": skill, "skill_low": interval[m:, 0], "skill_high": interval[m:, 1],
            "windows": both.sum(axis=1), "clusters": np.asarray(used)}


def _draws_level(draws, level) -> None:
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise ValueError(f"draws must be an integer ≥ 1, got {draws!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def aggregate(scores: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray],
              clusters: npt.ArrayLike, draws: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """One metric aggregated over windows, with its bootstrap interval and the paired skill against `reference`.

    scores, reference: (a [W], b [W]) of the model and of the reference baseline; clusters [W]: the resampling
    unit of each window (integers 0 .. K−1). Windows where either side is undefined (b = 0) are left out of
    both. -> {value, low, high, reference, skill, skill_low, skill_high, windows, clusters}: the value Σa/Σb,
    its percentile interval, the reference's value, skill = value / reference and its paired percentile interval
    (each draw resamples the K clusters with replacement, the same ones for both sides)."""
    model, ref = np.asarray(scores, np.float64), np.asarray(reference, np.float64)
    cl = np.asarray(clusters)
    if model.ndim != 2 or model.shape[0] != 2 or model.shape != ref.shape or cl.shape != model.shape[1:]:
        raise ValueError(f"scores and reference must be pairs of [W] arrays and clusters [W], got shapes "
                         f"{model.shape}, {ref.shape} and {cl.shape}")
    if cl.size == 0 or not np.issubdtype(cl.dtype, np.integer) or cl.min() < 0:
        raise ValueError(f"clusters must be non-empty integers ≥ 0, got shape {cl.shape} dtype {cl.dtype}")
    _draws_level(draws, level)
    out = _bootstrap(model[None], ref[None], cl, int(draws), level, seed)
    return {key: (int(v[0]) if key in ("windows", "clusters") else float(v[0])) for key, v in out.items()}


def _verdict(low: float, high: float) -> str:
    if high < 1:
        return "better"
    if low > 1:
        return "worse"
    return "no difference detected"


def _stack(scores: Scores) -> np.ndarray:
    return np.stack([np.stack(scores[m]) for m in METRICS])  # [M, 2, W]


def _rows(name: str, scores: Scores, reference: dict[str, Scores], windows: Windows, draws: int, level: float,
          seed: int, resample: str, samples: int, crps_estimator: str) -> list[dict]:
    cl = _clusters(windows, resample)
    model, ref = _stack(scores), _stack(reference[REFERENCE])
    agg = _bootstrap(model, ref, cl, draws, level, seed)
    both = (model[:, 1] > 0) & (ref[:, 1] > 0)
    rows = []
    for i, metric in enumerate(METRICS):
        row = {"forecaster": name, "metric": metric, "value": float(agg["value"][i]), "low": float(agg["low"][i]),
               "high": float(agg["high"][i]), "skill": float(agg["skill"][i]),
               "skill_low": float(agg["skill_low"][i]), "skill_high": float(agg["skill_high"][i]),
               "vs_seasonal_naive": _verdict(agg["skill_low"][i], agg["skill_high"][i]),
               "beats_seasonal_naive": bool(agg["skill_high"][i] < 1)}
        for base in bl.BASELINES:  # each baseline's value on the same windows
            a, b = (v * both[i] for v in reference[base][metric])
            row[base] = float(_ratio(a.sum(), b.sum()))
        row.update({"windows": int(agg["windows"][i]), "series": int(len(np.unique(windows.series))),
                    "resample": resample, "clusters": int(agg["clusters"][i]), "draws": draws, "level": level,
                    "samples": samples, "crps_estimator": crps_estimator})
        rows.append(row)
    return rows


def _check_reference(reference, windows: Windows, samples: int) -> dict[str, Scores]:
    if reference is None:
        return baseline_scores(windows, samples)
    w = len(windows)
    try:
        ok = (isinstance(reference, dict) and all(np.shape(reference[b][m]) == (2, w)
                                                  for b in bl.BASELINES for m in METRICS))
    except (KeyError, TypeError, ValueError):
        ok = False
    if ok:  # the denominators depend on the windows alone: those of other windows of the same count differ
        y, u = windows.target, windows.scale
        expect = np.mean(y * y, axis=1) / u**2
        got = np.asarray(reference[REFERENCE]["nmse"][1], np.float64)
        ok = bool(np.allclose(got[got > 0], expect[got > 0], rtol=1e-9, atol=0))
    if not ok:
        raise ValueError(f"reference must be baseline_scores(windows) for these {w} windows")
    return reference


def evaluate(forecaster: Forecaster, windows: Windows, key: jax.Array, name: str = "model",
             reference: dict | None = None, draws: int = 2000, level: float = 0.95, seed: int = 0,
             resample: str = "window", baseline_samples: int = 101, crps_estimator: str = "fair") -> list[dict]:
    """Score `forecaster` on `windows` against the baselines on the same windows: one row per metric in METRICS.

    forecaster(key, windows.context [W, C], horizon) must return samples [W, S, H]. Each row: forecaster, metric,
    value, low, high (bootstrap interval), skill = value / seasonal-naive's value and its paired interval
    (skill_low, skill_high), vs_seasonal_naive ("better" when the skill interval lies below 1, "worse" above,
    else "no difference detected"), beats_seasonal_naive (skill_high < 1: the mark to filter on, so that models
    that do not beat the baseline are not silently pooled), the value of every baseline (naive, seasonal_naive,
    context_mean, linear_ar), windows (those where the metric is defined), series, resample, clusters, draws,
    level, samples (the forecaster's S) and crps_estimator. reference: `baseline_scores(windows)` to reuse
    (computed here from `baseline_samples` samples per baseline if None).
    crps_estimator: "fair" (default) when the forecaster returns independent draws, "empirical" when it returns
    a grid of quantiles (`metrics.crps`)."""
    windows = _check_windows(windows)
    _draws_level(draws, level)
    if not callable(forecaster):
        raise ValueError(f"forecaster must be callable f(key, contexts, horizon), got {type(forecaster).__name__}")
    _clusters(windows, resample)  # refuse a bad resample or estimator before any compute
    if crps_estimator not in mt.CRPS_ESTIMATORS:
        raise ValueError(f"crps_estimator must be one of {mt.CRPS_ESTIMATORS}, got {crps_estimator!r}")
    reference = _check_reference(reference, windows, baseline_samples)
    out = forecaster(key, windows.context.copy(), windows.horizon)
    try:
        scores = window_scores(out, windows, crps_estimator)
    except ValueError as err:
        raise ValueError(f"forecaster {name!r} returned unusable samples: {err}") from None
    return _rows(name, scores, reference, windows, draws, level, seed, resample, int(np.shape(out)[1]),
                 crps_estimator)


def evaluate_baselines(windows: Windows, reference: dict | None = None, draws: int = 2000, level: float = 0.95,
                       seed: int = 0, resample: str = "window", baseline_samples: int = 101) -> list[dict]:
    """The rows `evaluate` gives, for each baseline in `baselines.BASELINES` as the forecaster (seasonal-naive's
    own rows have skill 1; `baseline_samples` is recorded as their samples: pass the value `reference` was
    computed with)."""
    windows = _check_windows(windows)
    _draws_level(draws, level)
    _clusters(windows, resample)
    reference = _check_reference(reference, windows, baseline_samples)
    return [row for name in bl.BASELINES
            for row in _rows(name, reference[name], reference, windows, draws, level, seed, resample, baseline_samples,
                             "empirical")]

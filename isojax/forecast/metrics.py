"""Point and probabilistic forecast metrics, per window, vectorised over windows (host-side numpy, float64).

Point metrics take the point forecast ŷ (`point_forecast`: the median of the samples, as the study's NMSE
always did); probabilistic ones take the samples themselves. Definitions (y: target [W, H], x: context):

- MASE = mean_h |y − ŷ| / s, with s = mean_{t=m..C−1} |x_t − x_{t−m}| the in-sample MAE of the seasonal-naive
  forecast of season m over the *context* (Hyndman & Koehler 2006; the M4 definition with the context as the
  in-sample data). s = 0 (a context that repeats exactly with period m) leaves MASE undefined: NaN.
- sMAPE = (2/H) Σ_h |y − ŷ| / (|y| + |ŷ|), in [0, 2] (M4's, without its ×100%); a step with y = ŷ = 0
  counts 0.
- NMSE = mean_h (ŷ − y)² / mean_h y² (the study's); NaN for an all-zero target. Computed in units of the
  window's max |y|, so it is defined for any finite values (1e±300 included), not NaN from inf/inf or 0/0.
- CRPS(F, y) = E|X − y| − ½ E|X − X′| (scoringrules' `crps_ensemble`), in y's units, by default its "fair"
  estimator (the pair term over i ≠ j, divided by S(S − 1)): unbiased for the forecaster's distribution
  whatever its number of samples S, so a model sampling 20 and a baseline given as 101 quantiles compare
  fairly; "empirical" is the CRPS of the samples' own empirical distribution (biased up by E|X − X′|/(2S)).
- WQL = Σ_h Σ_q 2·QL_q(y, ŷ_q) / (|Q| Σ_h |y|) over levels Q (default 0.1, …, 0.9), ŷ_q the samples'
  q-quantile (linear interpolation), QL_q the pinball loss (as GluonTS's mean weighted quantile loss and
  Chronos' WQL). As the level grid gets dense, 2·mean_q QL_q tends to the CRPS.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["QUANTILE_LEVELS", "CRPS_ESTIMATORS", "point_forecast", "seasonal_scale", "mase", "smape", "nmse", "crps",
           "quantile_loss", "wql"]

QUANTILE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _arr(name: str, x, ndim: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x, np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} could not be read as a numeric array: {err}") from None
    if arr.ndim != ndim or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty {what} array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite values (shape {arr.shape})")
    return arr


def _pair(forecast, target) -> tuple[np.ndarray, np.ndarray]:
    f = _arr("forecast", forecast, 2, "[W, H]")
    y = _arr("target", target, 2, "[W, H]")
    if f.shape != y.shape:
        raise ValueError(f"forecast and target must have the same shape [W, H], got {f.shape} and {y.shape}")
    return f, y


def _samples(samples, target) -> tuple[np.ndarray, np.ndarray]:
    s = _arr("samples", samples, 3, "[W, S, H]")
    y = _arr("target", target, 2, "[W, H]")
    if (s.shape[0], s.shape[2]) != y.shape:
        raise ValueError(f"samples [W, S, H] and target [W, H] disagree: shapes {s.shape} and {y.shape}")
    return s, y


def point_forecast(samples: npt.ArrayLike) -> np.ndarray:
    """The point forecast of samples [W, S, H]: their median over S -> [W, H]."""
    return np.median(_arr("samples", samples, 3, "[W, S, H]"), axis=1)


def seasonal_scale(context: npt.ArrayLike, season: npt.ArrayLike | int) -> np.ndarray:
    """MASE's scale: the in-sample MAE of the season-m naive forecast over each context [W, C],
    mean_{t=m..C−1} |x_t − x_{t−m}|; season: an int or [W] ints in [1, C − 1]. -> [W]"""
    x = _arr("context", context, 2, "[W, C]")
    w, c = x.shape
    m = np.broadcast_to(np.asarray(season), (w,))
    if not np.issubdtype(m.dtype, np.integer) or (m < 1).any() or (m >= c).any():
        raise ValueError(f"season must be integers in [1, C - 1] = [1, {c - 1}], one or one per window, got {season!r}")
    t = np.arange(c)
    lagged = np.take_along_axis(x, np.clip(t[None, :] - m[:, None], 0, c - 1), axis=1)
    valid = t[None, :] >= m[:, None]
    return np.sum(np.where(valid, np.abs(x - lagged), 0.0), axis=1) / (c - m)


def mase(forecast: npt.ArrayLike, target: npt.ArrayLike, context: npt.ArrayLike,
         season: npt.ArrayLike | int) -> np.ndarray:
    """MASE of each window: mean_h |y − ŷ| / `seasonal_scale(context, season)`; forecast, target [W, H],
    context [W, C]. -> [W], NaN where the scale is 0."""
    f, y = _pair(forecast, target)
    scale = seasonal_scale(context, season)
    if scale.shape[0] != f.shape[0]:
        raise ValueError(f"context has {scale.shape[0]} windows, forecast {f.shape[0]}")
    mae = np.mean(np.abs(f - y), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, mae / np.where(scale > 0, scale, 1.0), np.nan)


def smape(forecast: npt.ArrayLike, target: npt.ArrayLike) -> np.ndarray:
    """sMAPE of each window, (2/H) Σ_h |y − ŷ| / (|y| + |ŷ|) in [0, 2]; forecast, target [W, H] -> [W]."""
    f, y = _pair(forecast, target)
    den = np.abs(y) + np.abs(f)
    ratio = np.abs(y - f) / np.where(den > 0, den, 1.0)  # y = ŷ = 0: a perfect step, 0
    return 2.0 * np.mean(ratio, axis=1)


def nmse(forecast: npt.ArrayLike, target: npt.ArrayLike) -> np.ndarray:
    """The study's NMSE of each window, mean_h (ŷ − y)² / mean_h y²; forecast, target [W, H] -> [W]
    (NaN for an all-zero target)."""
    f, y = _pair(forecast, target)
    # in units of each window's max |y|: the ratio is unchanged, and squares of huge (1e200) or tiny (1e-200)
    # values neither overflow to inf/inf nor underflow to 0/0; a forecast beyond the float range gives inf
    top = np.max(np.abs(y), axis=1, keepdims=True)
    unit = np.where(top > 0, top, 1.0)
    with np.errstate(over="ignore"):
        err = f / unit - y / unit
        num = np.mean(err * err, axis=1)
    den = np.mean((y / unit) ** 2, axis=1)
    return np.where(top[:, 0] > 0, num / np.where(den > 0, den, 1.0), np.nan)


CRPS_ESTIMATORS = ("fair", "empirical")


def crps(samples: npt.ArrayLike, target: npt.ArrayLike, estimator: str = "fair") -> np.ndarray:
    """CRPS of samples [W, S, H] at target [W, H], per step -> [W, H] (through scoringrules).

    estimator "fair": E|X − y| − Σ_{i≠j} |X_i − X_j| / (2S(S − 1)), unbiased for the CRPS of the distribution the
    samples are independent draws from, whatever S (scoringrules' "pwm"); "empirical": E|X − y| − ½E|X − X′|,
    the CRPS of the samples' empirical distribution (scoringrules' "qd"), which exceeds the first by
    E|X − X′|/(2S) on average: a forecaster drawing fewer samples would score worse for that alone. Use
    "empirical" for samples that are not draws (a grid of quantiles). With S = 1 both give |x − y|."""
    s, y = _samples(samples, target)
    if estimator not in CRPS_ESTIMATORS:
        raise ValueError(f"estimator must be one of {CRPS_ESTIMATORS}, got {estimator!r}")
    return _crps_sorted(np.sort(s, axis=1), y, estimator)


def _crps_sorted(srt: np.ndarray, y: np.ndarray, estimator: str) -> np.ndarray:
    """`crps` of samples already sorted along S (window_scores sorts once for every metric)."""
    import scoringrules  # imported here: it loads its backends, which `import isojax` need not pay for

    if srt.shape[1] == 1:
        return np.abs(srt[:, 0] - y)
    name = "pwm" if estimator == "fair" else "qd"
    return np.asarray(scoringrules.crps_ensemble(y, srt, m_axis=1, estimator=name, sorted_ensemble=True,
                                                 backend="numpy"), np.float64)


def _quantiles_sorted(srt: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """np.quantile's default ("linear") quantiles of samples sorted along S [W, S, H] at levels [Q] -> [W, Q, H]."""
    pos = levels * (srt.shape[1] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, srt.shape[1] - 1)
    frac = (pos - lo)[None, :, None]
    return (1 - frac) * srt[:, lo, :] + frac * srt[:, hi, :]


def _levels(levels) -> np.ndarray:
    q = np.asarray(levels, np.float64)
    if q.ndim != 1 or q.size == 0 or not np.isfinite(q).all() or (q <= 0).any() or (q >= 1).any():
        raise ValueError(f"levels must be a non-empty 1-D list of numbers in (0, 1), got {levels!r}")
    return q


def quantile_loss(samples: npt.ArrayLike, target: npt.ArrayLike,
                  levels: npt.ArrayLike = QUANTILE_LEVELS) -> np.ndarray:
    """Pinball loss QL_q(y, ŷ_q) = (1{y < ŷ_q} − q)(ŷ_q − y) of the samples' q-quantiles (linear interpolation)
    at each level q; samples [W, S, H], target [W, H] -> [W, Q, H]."""
    s, y = _samples(samples, target)
    return _quantile_loss_sorted(np.sort(s, axis=1), y, _levels(levels))


def _quantile_loss_sorted(srt: np.ndarray, y: np.ndarray, q: np.ndarray) -> np.ndarray:
    import scoringrules

    pred = _quantiles_sorted(srt, q)  # [W, Q, H]
    return np.asarray(scoringrules.quantile_score(y[:, None, :], pred, q[None, :, None], backend="numpy"),
                      np.float64)


def wql(samples: npt.ArrayLike, target: npt.ArrayLike, levels: npt.ArrayLike = QUANTILE_LEVELS) -> np.ndarray:
    """Weighted quantile loss of each window, Σ_h mean_q 2·QL_q / Σ_h |y|; samples [W, S, H], target [W, H]
    -> [W] (NaN for an all-zero target)."""
    ql = quantile_loss(samples, target, levels)
    num = np.sum(2.0 * np.mean(ql, axis=1), axis=1)
    den = np.sum(np.abs(np.asarray(target, np.float64)), axis=1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

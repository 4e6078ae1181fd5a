"""Forecast evaluation as the field does it, for any forecaster: rolling-origin backtest windows over the held-out
tail of each series, point and probabilistic metrics (MASE, sMAPE, NMSE, CRPS, WQL), baselines on exactly the
same windows (naive, seasonal-naive, context mean, linear AR), and rows with bootstrap intervals and the skill
against seasonal-naive. See docs/forecasting.md.

    windows = backtest_windows(series, context=64, horizon=16, test_fraction=0.2, origins=8)
    rows = evaluate(forecaster, windows, key)   # forecaster(key, contexts [W, C], H) -> samples [W, S, H]
"""

from __future__ import annotations

from isojax.forecast.baselines import (
                                       BASELINES,
                                       baseline_forecaster,
                                       baseline_samples,
                                       context_mean,
                                       fit_ar,
                                       linear_ar,
                                       naive,
                                       seasonal_naive,
)
from isojax.forecast.evaluation import (
                                      METRICS,
                                      REFERENCE,
                                      Forecaster,
                                      aggregate,
                                      baseline_scores,
                                      evaluate,
                                      evaluate_baselines,
                                      window_scores,
)
from isojax.forecast.metrics import CRPS_ESTIMATORS, QUANTILE_LEVELS, crps, mase, nmse, point_forecast, smape, wql
from isojax.forecast.windows import Windows, backtest_windows, detect_season, training_length

__all__ = ["BASELINES", "CRPS_ESTIMATORS", "METRICS", "QUANTILE_LEVELS", "REFERENCE", "Forecaster", "Windows",
           "aggregate", "backtest_windows", "baseline_forecaster", "baseline_samples", "baseline_scores",
           "context_mean", "crps", "detect_season", "evaluate", "evaluate_baselines", "fit_ar", "linear_ar", "mase",
           "naive", "nmse", "point_forecast", "seasonal_naive", "smape", "training_length", "window_scores", "wql"]

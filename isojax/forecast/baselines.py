"""Baseline forecasts fitted to each context alone, vectorised over windows: naive, seasonal-naive, the context
mean and a linear AR; and their probabilistic versions (samples) for CRPS and WQL.

Point forecasts (contexts x [W, C], horizon H -> [W, H], step h = 0 .. H−1):
- naive: ŷ_h = x_{C−1}.
- seasonal-naive of season m: ŷ_h = x_{C−m+(h mod m)} (the last full season, repeated); m = 1 is naive.
- context mean: ŷ_h = mean(x).
- linear AR: y_t = c + Σ_{i≤p} φ_i y_{t−i} by least squares on the context, iterated H steps. The order p is
  chosen by AIC over 0 .. p_max on the common sample t ≥ p_max (statsmodels' `ar_select_order(..., ic="aic")`
  rule; p = 0 is the mean), then refitted on t ≥ p; p_max = `ar_max_order(C)` (Schwert's rule
  ⌊12 (C/100)^¼⌋, at most ⌊(C − 2)/3⌋).

Probabilistic versions (`baseline_samples`): S samples (S odd) per step, the point forecast plus the centred
empirical quantiles of the method's in-sample h-step errors on the same context (levels (s + ½)/S, each
quantile minus the errors' median, so that the middle sample, and hence the samples' median, is exactly the
point forecast). The errors of step h: naive and seasonal-naive are applied at every earlier origin of the
context (e_t = x_{t+h} − ŷ_{t,h}); the mean's are x_t − mean(x) for every h; AR's come from iterating the fitted
model from every origin t ≥ p_max. Deterministic: no key is used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np
import numpy.typing as npt

from isojax.forecast import windows as wn

__all__ = ["BASELINES", "ARFit", "naive", "seasonal_naive", "context_mean", "ar_max_order", "fit_ar", "linear_ar",
           "in_sample_errors", "baseline_samples", "baseline_forecaster"]

BASELINES = ("naive", "seasonal_naive", "context_mean", "linear_ar")


def _contexts(contexts) -> np.ndarray:
    x = np.asarray(contexts, np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < 2:
        raise ValueError(f"contexts must be [W, C] with W ≥ 1 and C ≥ 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"contexts has non-finite values (shape {x.shape})")
    return x


def _horizon(horizon) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be an integer ≥ 1, got {horizon!r}")
    return int(horizon)


def _season(season, w: int, c: int) -> np.ndarray:
    m = np.asarray(season)
    if m.ndim > 1 or (m.ndim == 1 and m.shape[0] != w) or not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"season must be an int or [W] = [{w}] ints, got {season!r}")
    m = np.broadcast_to(m, (w,)).astype(np.int64)
    if (m < 1).any() or (m >= c).any():
        raise ValueError(f"season must lie in [1, C - 1] = [1, {c - 1}], got {season!r}")
    return m


def naive(contexts: npt.ArrayLike, horizon: int) -> np.ndarray:
    """The last value repeated: contexts [W, C] -> [W, H]."""
    x, h = _contexts(contexts), _horizon(horizon)
    return np.repeat(x[:, -1:], h, axis=1)


def _seasonal_index(c: int, m: np.ndarray, h: int) -> np.ndarray:
    return c - m[:, None] + np.arange(h)[None, :] % m[:, None]  # [W, H]


def seasonal_naive(contexts: npt.ArrayLike, horizon: int, season: npt.ArrayLike | int) -> np.ndarray:
    """The last season repeated, ŷ_h = x_{C−m+(h mod m)}: contexts [W, C], season an int or [W] -> [W, H]."""
    x, h = _contexts(contexts), _horizon(horizon)
    m = _season(season, x.shape[0], x.shape[1])
    return np.take_along_axis(x, _seasonal_index(x.shape[1], m, h), axis=1)


def context_mean(contexts: npt.ArrayLike, horizon: int) -> np.ndarray:
    """The context's mean repeated: contexts [W, C] -> [W, H]."""
    x, h = _contexts(contexts), _horizon(horizon)
    return np.repeat(np.mean(x, axis=1, keepdims=True), h, axis=1)


def ar_max_order(context: int) -> int:
    """The largest AR order tried for contexts of `context` values: ⌊12·(C/100)^¼⌋ (Schwert's rule), at most
    ⌊(C − 2)/3⌋ (so that the common sample of C − p_max values is over twice the p_max + 1 coefficients)."""
    return int(max(0, min(np.floor(12 * (context / 100) ** 0.25), (context - 2) // 3)))


@dataclasses.dataclass(frozen=True)
class ARFit:
    """Per-window AR fits: coef [W, 1 + p_max] = (c, φ_1 .. φ_pmax) with φ_i = 0 beyond the window's order,
    order [W], and the p_max tried."""

    coef: np.ndarray
    order: np.ndarray
    max_order: int


def _lagged(x: np.ndarray, p: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Regression of x_t on (1, x_{t−1} .. x_{t−p}) for t = start .. C−1: design [W, n, 1 + p], response [W, n]."""
    c = x.shape[1]
    t = np.arange(start, c)
    lags = [x[:, t - i] for i in range(1, p + 1)]
    design = np.stack([np.ones((x.shape[0], len(t)))] + lags, axis=2)
    return design, x[:, start:]


def _lstsq(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Batched least squares (minimum-norm where the lags are collinear, e.g. an exactly periodic context)."""
    return np.einsum("wpn,wn->wp", np.linalg.pinv(design), y)


def fit_ar(contexts: npt.ArrayLike, max_order: int | None = None) -> ARFit:
    """AR fits to each context [W, C], the order chosen by AIC over 0 .. max_order (default `ar_max_order(C)`)
    on the common sample t ≥ max_order, then refitted on t ≥ order (see the module docstring)."""
    x = _contexts(contexts)
    w, c = x.shape
    top = ar_max_order(c) if max_order is None else max_order
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 0 <= top <= (c - 2) // 2:
        raise ValueError(f"max_order must be an integer in [0, (C - 2) // 2] = [0, {(c - 2) // 2}], got {max_order!r}")
    top = int(top)
    n = c - top
    aic = np.empty((top + 1, w))
    for p in range(top + 1):
        design, y = _lagged(x, p, top)
        resid = y - np.einsum("wnp,wp->wn", design, _lstsq(design, y))
        sigma2 = np.maximum(np.mean(resid * resid, axis=1), np.finfo(np.float64).tiny)
        aic[p] = n * np.log(sigma2) + 2 * (p + 1)  # -2 llf + 2 k up to terms common to every order
    order = np.argmin(aic, axis=0)  # ties go to the lowest order, as statsmodels' stable sort does
    coef = np.zeros((w, top + 1))
    for p in np.unique(order):
        rows = order == p
        design, y = _lagged(x[rows], int(p), int(p))
        coef[rows, :p + 1] = _lstsq(design, y)
    return ARFit(coef=coef, order=order.astype(np.int64), max_order=top)


def _iterate(coef: np.ndarray, history: np.ndarray, horizon: int) -> np.ndarray:
    """Iterate y_t = c + Σ_i φ_i y_{t−i} from coef [..., 1 + p] and histories [..., p] (oldest first; p may be 0)
    for H steps -> [..., H]."""
    p = coef.shape[-1] - 1
    shape = np.broadcast_shapes(coef.shape[:-1], history.shape[:-1])
    state = np.broadcast_to(history, shape + (p,)).copy()
    phi = coef[..., :0:-1]  # φ_p .. φ_1, aligned with the state's oldest-first order
    out = np.empty(shape + (horizon,))
    for k in range(horizon):
        out[..., k] = coef[..., 0] + np.sum(phi * state, axis=-1)
        if p:
            state = np.concatenate([state[..., 1:], out[..., k:k + 1]], axis=-1)
    return out


def _ar_point(fit: ARFit, x: np.ndarray, h: int) -> np.ndarray:
    return _iterate(fit.coef, x[:, x.shape[1] - fit.max_order:], h)


def _ar_errors(fit: ARFit, x: np.ndarray, h: int) -> np.ndarray:
    w, c = x.shape
    p = fit.max_order
    origins = np.arange(max(p, 1), c)  # at least one value of history, also for p = 0
    hist = np.stack([x[:, o - p:o] for o in origins], axis=1)  # [W, n_origins, p_max]
    pred = _iterate(fit.coef[:, None, :], hist, h)  # [W, n_origins, H]
    dst = origins[:, None] + np.arange(h)[None, :]
    out = np.full((w, c, h), np.nan)
    out[:, origins, :] = np.where((dst <= c - 1)[None], x[:, np.clip(dst, 0, c - 1)] - pred, np.nan)
    return out


def linear_ar(contexts: npt.ArrayLike, horizon: int, max_order: int | None = None) -> np.ndarray:
    """The AR forecast of `fit_ar`, iterated H steps from the end of each context: [W, C] -> [W, H]."""
    x, h = _contexts(contexts), _horizon(horizon)
    return _ar_point(fit_ar(x, max_order), x, h)


def in_sample_errors(name: str, contexts: npt.ArrayLike, horizon: int,
                     season: npt.ArrayLike | int | None = None) -> np.ndarray:
    """The in-sample errors of baseline `name` for each step h (module docstring): [W, C] -> [W, C, H], NaN where
    origin t gives no error for step h. season: needed for "seasonal_naive" (int or [W])."""
    x, h = _contexts(contexts), _horizon(horizon)
    w, c = x.shape
    t = np.arange(c)[None, :, None]  # the origin: index of the first forecast value
    step = np.arange(h)[None, None, :]
    if name in ("naive", "seasonal_naive"):
        if name == "seasonal_naive" and season is None:
            raise ValueError("seasonal_naive needs a season")
        m = np.ones(w, np.int64) if name == "naive" else _season(season, w, c)
        m = m[:, None, None]
        src, dst = t - m + step % m, t + step
        ok = (t - m >= 0) & (dst <= c - 1)
        flat = lambda i: np.take_along_axis(x, np.clip(i, 0, c - 1).reshape(w, -1), axis=1).reshape(w, c, h)
        return np.where(ok, flat(np.broadcast_to(dst, (w, c, h))) - flat(np.broadcast_to(src, (w, c, h))), np.nan)
    if name == "context_mean":
        return np.broadcast_to((x - x.mean(axis=1, keepdims=True))[:, :, None], (w, c, h)).copy()
    if name == "linear_ar":
        return _ar_errors(fit_ar(x), x, h)
    raise ValueError(f"name must be one of {BASELINES}, got {name!r}")


def _centred_quantiles(errors: np.ndarray, samples: int) -> np.ndarray:
    """Quantiles at levels (s + ½)/S of each [W, ·, H] column of errors ignoring NaN (linear interpolation, as
    np.nanquantile), minus the column's median -> [W, S, H]. ValueError if a column has no error."""
    srt = np.sort(errors, axis=1)  # NaN sorts last
    n = np.sum(~np.isnan(errors), axis=1)  # [W, H]
    if (n == 0).any():
        w, h = np.argwhere(n == 0)[0]
        raise ValueError(f"the context is too short to give an in-sample error for step {h + 1} (window {w}): use "
                         f"a longer context or a shorter horizon")
    levels = np.concatenate([(np.arange(samples) + 0.5) / samples, [0.5]])
    pos = levels[None, :, None] * (n[:, None, :] - 1)  # [W, S + 1, H]
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n[:, None, :] - 1)
    frac = pos - lo
    q = (1 - frac) * np.take_along_axis(srt, lo, axis=1) + frac * np.take_along_axis(srt, hi, axis=1)
    return q[:, :-1] - q[:, -1:]


def _point(name: str, x: np.ndarray, h: int, season) -> np.ndarray:
    if name == "naive":
        return naive(x, h)
    if name == "seasonal_naive":
        if season is None:
            raise ValueError("seasonal_naive needs a season")
        return seasonal_naive(x, h, season)
    if name == "context_mean":
        return context_mean(x, h)
    raise ValueError(f"name must be one of {BASELINES}, got {name!r}")


def baseline_samples(name: str, contexts: npt.ArrayLike, horizon: int, season: npt.ArrayLike | int | None = None,
                     samples: int = 101) -> np.ndarray:
    """Samples of baseline `name` ("naive", "seasonal_naive", "context_mean", "linear_ar"): the point forecast plus
    the centred empirical quantiles of its in-sample h-step errors (module docstring). contexts [W, C] ->
    [W, S, H]; `samples` S must be odd (the middle sample is the point forecast); season: for seasonal_naive,
    an int, [W] ints, or None to detect it from each context (`windows.detect_season`)."""
    if name not in BASELINES:
        raise ValueError(f"name must be one of {BASELINES}, got {name!r}")
    x, h = _contexts(contexts), _horizon(horizon)
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1 or samples % 2 == 0:
        raise ValueError(f"samples must be an odd integer ≥ 1, got {samples!r}")
    if name == "seasonal_naive" and season is None:
        season = wn.detect_season(x)
    if name == "linear_ar":  # fitted once for the point forecast and its errors
        fit = fit_ar(x)
        point, errors = _ar_point(fit, x, h), _ar_errors(fit, x, h)
    else:
        point, errors = _point(name, x, h, season), in_sample_errors(name, x, h, season)
    return point[:, None, :] + _centred_quantiles(errors, int(samples))


def baseline_forecaster(name: str, season: npt.ArrayLike | int | None = None,
                        samples: int = 101) -> Callable[[jax.Array, np.ndarray, int], np.ndarray]:
    """Baseline `name` as a forecaster, f(key, contexts [W, C], horizon) -> samples [W, S, H] (`baseline_samples`;
    the key is not used). Checks its arguments now, not at the first call."""
    if name not in BASELINES:
        raise ValueError(f"name must be one of {BASELINES}, got {name!r}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1 or samples % 2 == 0:
        raise ValueError(f"samples must be an odd integer ≥ 1, got {samples!r}")

    def forecaster(key: jax.Array, contexts: np.ndarray, horizon: int) -> np.ndarray:
        del key  # deterministic
        return baseline_samples(name, contexts, horizon, season, samples)

    forecaster.__name__ = name
    return forecaster

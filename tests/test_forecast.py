"""isojax.forecast: backtest windows, metrics, baselines and evaluation, each against an independent route
(hand-computed cases, a loop or brute-force reference, closed forms, statsmodels, utilsforecast), and each
check shown to fail on the broken implementation a careless colleague would write (the MUTANTS at the end)."""

import dataclasses

import jax
import numpy as np
import pandas as pd
import pytest

import isojax.forecast as fc
from isojax.data import real
from isojax.forecast import baselines as bl
from isojax.forecast import evaluation as ev
from isojax.forecast import metrics as mt
from isojax.forecast import windows as wn

KEY = jax.random.PRNGKey(0)


def _seasonal(n, period, seed=0, noise=0.0, trend=0.0):
    rng = np.random.default_rng(seed)
    pattern = rng.normal(size=period) * 3
    t = np.arange(n)
    return 10 + pattern[t % period] + trend * t + noise * rng.normal(size=n)


def _ramp(n, offset=0.0):
    return offset + np.arange(n, dtype=np.float64) + 1.0  # value = index + 1 + offset: positions are readable


# ---------------------------------------------------------------------------------------------- windows
def check_windows(make):
    """Every window is exactly (x[o−C:o], x[o:o+H]) with o at or after the training cut, origins step by the stride
    from max(cut, C), and nothing of a target is in the training part or its own context."""
    series = [_ramp(200), _ramp(131, 1000.0)]
    c, h, stride, frac = 24, 6, 5, 0.25
    w = make(series, context=c, horizon=h, test_fraction=frac, stride=stride)
    for i, s in enumerate(series):
        cut = int(round(len(s) * (1 - frac)))
        assert w.train_length[i] == cut
        rows = np.flatnonzero(w.series == i)
        o = w.origin[rows]
        expect = np.arange(max(cut, c), len(s) - h + 1, stride)
        np.testing.assert_array_equal(o, expect)
        for r, oo in zip(rows, o):
            np.testing.assert_array_equal(w.context[r], s[oo - c:oo])
            np.testing.assert_array_equal(w.target[r], s[oo:oo + h])
            assert w.target[r].min() > s[cut - 1]  # ramp: every target value comes after the training part
            assert w.context[r].max() < w.target[r].min()  # and after its own context


def test_windows_are_the_documented_slices_and_never_leak():
    check_windows(fc.backtest_windows)


def test_window_counts_origins_and_determinism():
    series = [_ramp(200), _ramp(300)]
    w = fc.backtest_windows(series, context=32, horizon=8, test_fraction=0.2, origins=3, stride=1)
    np.testing.assert_array_equal(w.per_series, [3, 3])
    assert len(w) == 6 and w.horizon == 8
    np.testing.assert_array_equal(w.origin, [160, 161, 162, 240, 241, 242])
    again = fc.backtest_windows(series, context=32, horizon=8, test_fraction=0.2, origins=3, stride=1)
    for f in dataclasses.fields(w):
        np.testing.assert_array_equal(getattr(w, f.name), getattr(again, f.name))
    # the scale of a window is mean |x| of its series' training part
    np.testing.assert_allclose(w.scale, np.repeat([np.mean(np.abs(series[0][:160])), np.mean(series[1][:240])], 3))
    sub = w.subset(w.series == 1)
    assert len(sub) == 3 and sub.names == w.names


def test_training_length_is_the_split_training_uses():
    for n in range(5, 140, 7):
        for frac in (0.1, 0.2, 0.25, 0.5, 0.73):
            train, test = real.split_by_time([np.arange(n)], frac)
            assert fc.training_length(n, frac) == len(train[0])


def test_context_may_reach_into_the_training_part_but_targets_start_at_the_cut():
    s = _ramp(100)
    w = fc.backtest_windows([s], context=40, horizon=5, test_fraction=0.2)
    assert w.origin[0] == 80 and w.context[0][0] == s[40]


@pytest.mark.parametrize("kwargs, match", [
    (dict(context=3), "context"), (dict(horizon=0), "horizon"), (dict(horizon=True), "horizon"),
    (dict(stride=0), "stride"), (dict(origins=0), "origins"), (dict(season=32), "season"),
    (dict(season=0), "season"), (dict(test_fraction=0.0), "test_fraction"), (dict(test_fraction=1.0), "test_fraction"),
])
def test_windows_refuse_bad_arguments(kwargs, match):
    args = dict(context=32, horizon=8) | kwargs
    with pytest.raises(ValueError, match=match):
        fc.backtest_windows([_ramp(200)], **args)


def test_windows_refuse_short_and_bad_series_by_name():
    with pytest.raises(ValueError, match="b is too short for one window"):
        fc.backtest_windows([_ramp(200), _ramp(30)], context=32, horizon=8, names=["a", "b"])
    with pytest.raises(ValueError, match=r"series\[0\] is too short for origins=10: only 5"):
        fc.backtest_windows([_ramp(200)], context=32, horizon=8, origins=10)  # tail 40 = 5 strides of 8
    with pytest.raises(ValueError, match="non-finite"):
        fc.backtest_windows([np.r_[_ramp(100), np.nan]], context=16, horizon=4)
    with pytest.raises(ValueError, match="constant"):
        fc.backtest_windows([np.ones(100)], context=16, horizon=4)
    with pytest.raises(ValueError, match="1-D"):
        fc.backtest_windows([np.ones((10, 10))], context=4, horizon=2)
    with pytest.raises(ValueError, match="no scale"):
        fc.backtest_windows([np.r_[np.zeros(80), _ramp(20)]], context=16, horizon=4)


# ---------------------------------------------------------------------------------------------- season
def test_acf_matches_statsmodels_on_detrended_rows():
    from statsmodels.tsa.stattools import acf

    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 50)).cumsum(axis=1)
    got = wn._acf(x, 20)
    t = np.arange(50)
    for row, g in zip(x, got):
        resid = row - np.polyval(np.polyfit(t, row, 1), t)
        np.testing.assert_allclose(g, acf(resid, nlags=20, fft=False), atol=1e-10)


def check_detect_season(detect):
    for period in (2, 3, 7, 12, 24, 32):  # 4 cycles or more in the context
        ctx = np.stack([_seasonal(max(64, 4 * period + 8), period, seed=s) for s in range(4)])
        np.testing.assert_array_equal(detect(ctx), period, err_msg=f"period {period}")
    # a trend on top of the season, and a little noise, leave it found
    ctx = np.stack([_seasonal(96, 12, seed=s, noise=0.2, trend=0.05) for s in range(8)])
    np.testing.assert_array_equal(detect(ctx), 12)
    # a sinusoid in noise (signal sd 2.1, noise sd 1) is found at 64 values
    rng = np.random.default_rng(1)
    t = np.arange(64)
    sines = np.stack([3 * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 6)) + rng.normal(size=64) for _ in range(20)])
    np.testing.assert_array_equal(detect(sines), 12)
    # a line, white noise or a random walk has no season (the family-wise 10% test lets about 1% of noise
    # contexts through; the in-sample check against naive refuses the random walks' slow ACF swings)
    assert detect(np.linspace(0, 5, 64)[None])[0] == 1
    noise = rng.normal(size=(300, 128))
    assert np.mean(detect(noise) == 1) > 0.97
    assert np.mean(detect(np.cumsum(noise, axis=1)) == 1) > 0.95


def test_detect_season_finds_exact_periods_and_nothing_in_noise():
    check_detect_season(fc.detect_season)


# ---------------------------------------------------------------------------------------------- metrics
def check_mase(mase):
    ctx, f, y = np.array([[1.0, 2.0, 4.0, 7.0]]), np.array([[8.0, 8.0]]), np.array([[9.0, 11.0]])
    np.testing.assert_allclose(mase(f, y, ctx, 1), [1.0])  # scale mean(1, 2, 3) = 2, MAE 2
    np.testing.assert_allclose(mase(f, y, ctx, 2), [0.5])  # scale mean(|4−1|, |7−2|) = 4
    # utilsforecast's MASE (scale from the training frame, here the context) on random windows
    from utilsforecast.losses import mase as uf_mase

    rng = np.random.default_rng(3)
    ctx, f, y = rng.normal(size=(4, 30)).cumsum(axis=1), rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    for m in (1, 4):
        ids = np.repeat(np.arange(4), 5)
        df = pd.DataFrame({"unique_id": ids, "ds": np.tile(np.arange(30, 35), 4), "y": y.ravel(), "m": f.ravel()})
        train = pd.DataFrame({"unique_id": np.repeat(np.arange(4), 30), "ds": np.tile(np.arange(30), 4),
                              "y": ctx.ravel()})
        ref = uf_mase(df, ["m"], m, train).sort_values("unique_id")["m"].to_numpy()
        np.testing.assert_allclose(mase(f, y, ctx, m), ref, rtol=1e-12)


def test_mase_by_hand_and_against_utilsforecast():
    check_mase(fc.mase)


def test_mase_is_nan_where_the_context_repeats_exactly():
    ctx = np.array([[1.0, 2.0, 1.0, 2.0, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    got = fc.mase(np.zeros((2, 2)), np.ones((2, 2)), ctx, 2)
    assert np.isnan(got[0]) and got[1] == pytest.approx(0.5)


def check_smape(smape):
    np.testing.assert_allclose(smape(np.array([[3.0, 2.0]]), np.array([[1.0, 2.0]])), [0.5])
    np.testing.assert_allclose(smape(np.array([[0.0, 1.0]]), np.array([[0.0, -1.0]])), [1.0])  # 0/0 counts 0
    from utilsforecast.losses import smape as uf_smape

    rng = np.random.default_rng(4)
    f, y = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    df = pd.DataFrame({"unique_id": np.repeat(np.arange(3), 6), "y": y.ravel(), "m": f.ravel()})
    ref = uf_smape(df, ["m"]).sort_values("unique_id")["m"].to_numpy()
    np.testing.assert_allclose(smape(f, y), 2 * ref, rtol=1e-12)  # utilsforecast's has no factor 2: [0, 1]


def test_smape_by_hand_and_against_utilsforecast():
    check_smape(fc.smape)


def check_nmse(nmse):
    np.testing.assert_allclose(nmse(np.array([[3.0, 2.0]]), np.array([[1.0, 2.0]])), [0.8])
    rng = np.random.default_rng(5)
    f, y = rng.normal(size=(3, 7)) + 2, rng.normal(size=(3, 7)) + 2
    loop = [sum((a - b) ** 2 for a, b in zip(fw, yw)) / sum(b * b for b in yw) for fw, yw in zip(f, y)]
    np.testing.assert_allclose(nmse(f, y), loop, rtol=1e-12)  # the study's definition, one window at a time


def test_nmse_by_hand_and_against_the_studys():
    check_nmse(fc.nmse)


def _crps_brute(samples, y, fair=False):
    """E|X − y| − ½ E|X − X′| by a double loop over the samples (the energy form, independent of sorting); fair:
    the pair term averaged over the S(S − 1) pairs i ≠ j."""
    w, s, h = samples.shape
    out = np.zeros((w, h))
    for i in range(w):
        for k in range(h):
            x = samples[i, :, k]
            pairs = np.sum(np.abs(x[:, None] - x[None, :])) / (s * (s - 1) if fair else s * s)
            out[i, k] = np.mean(np.abs(x - y[i, k])) - 0.5 * pairs
    return out


def check_crps(crps):
    two = np.array([[[0.0], [2.0]]])
    np.testing.assert_allclose(crps(two, np.array([[1.0]]), "empirical"), [[0.5]])  # 1 − ½·(0 + 2 + 2 + 0)/4
    np.testing.assert_allclose(crps(two, np.array([[1.0]]), "fair"), [[0.0]])  # 1 − ½·4/2
    for est in fc.CRPS_ESTIMATORS:
        np.testing.assert_allclose(crps(np.full((1, 5, 1), 3.0), np.array([[1.0]]), est), [[2.0]])  # |ŷ − y|
        np.testing.assert_allclose(crps(np.full((1, 1, 1), 3.0), np.array([[1.0]]), est), [[2.0]])
    rng = np.random.default_rng(6)
    samples, y = rng.normal(size=(4, 9, 3)), rng.normal(size=(4, 3))
    np.testing.assert_allclose(crps(samples, y, "empirical"), _crps_brute(samples, y), atol=1e-12)
    np.testing.assert_allclose(crps(samples, y, "fair"), _crps_brute(samples, y, fair=True), atol=1e-12)
    # a grid of many N(0, 1) quantiles approaches the closed form σ[z(2Φ(z) − 1) + 2φ(z) − 1/√π]
    from scipy import stats

    z = np.array([[-1.5, 0.0, 0.7]])
    grid = stats.norm.ppf((np.arange(4000) + 0.5) / 4000)[None, :, None] * np.ones((1, 1, 3))
    exact = z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi)
    np.testing.assert_allclose(crps(grid, z, "empirical"), exact, atol=2e-3)
    # with 4 random draws per window, the fair estimator's mean is the closed form; the empirical one's is higher
    y = rng.normal(size=(20000, 1))
    draws = rng.normal(size=(20000, 4, 1))
    truth = 1 / np.sqrt(np.pi)  # E over y ~ N(0, 1) of the CRPS of N(0, 1) at y
    assert np.mean(crps(draws, y, "fair")) == pytest.approx(truth, abs=0.015)
    assert np.mean(crps(draws, y, "empirical")) - truth > 0.1  # + E|X − X′| / (2·4) = 0.141


def test_crps_by_hand_brute_force_and_the_normal_closed_form():
    check_crps(fc.crps)


def check_wql(wql):
    # a point forecast 2 at y = 1: every quantile is 2, mean_q 2(1 − q)·1 = 1 over the symmetric grid
    np.testing.assert_allclose(wql(np.full((1, 4, 1), 2.0), np.array([[1.0]])), [1.0])
    from utilsforecast.losses import scaled_crps

    rng = np.random.default_rng(7)
    samples, y = rng.normal(size=(3, 50, 6)) + 1, rng.normal(size=(3, 6)) + 1
    q = np.quantile(samples, fc.QUANTILE_LEVELS, axis=1)  # [Q, W, H]
    cols = {f"m{i}": q[i].ravel() for i in range(len(fc.QUANTILE_LEVELS))}
    df = pd.DataFrame({"unique_id": np.repeat(np.arange(3), 6), "y": y.ravel(), **cols})
    ref = scaled_crps(df, {"m": list(cols)}, np.array(fc.QUANTILE_LEVELS)).sort_values("unique_id")["m"]
    np.testing.assert_allclose(wql(samples, y), ref.to_numpy(), rtol=1e-9)


def test_wql_by_hand_and_against_utilsforecast():
    check_wql(fc.wql)


def test_dense_quantile_loss_approaches_the_crps():
    rng = np.random.default_rng(8)
    samples, y = rng.normal(size=(2, 200, 3)), rng.normal(size=(2, 3))
    levels = (np.arange(999) + 0.5) / 999
    twice_ql = 2 * np.mean(mt.quantile_loss(samples, y, levels), axis=1)
    np.testing.assert_allclose(twice_ql, fc.crps(samples, y), rtol=0.02, atol=2e-3)


def test_sorted_quantiles_are_numpys():
    s = np.sort(np.random.default_rng(17).normal(size=(3, 8, 4)), axis=1)
    levels = np.array([0.01, 0.1, 0.5, 0.77, 0.99])
    np.testing.assert_allclose(mt._quantiles_sorted(s, levels), np.moveaxis(np.quantile(s, levels, axis=1), 0, 1),
                               atol=1e-14)


def test_point_forecast_is_the_median_of_the_samples():
    s = np.random.default_rng(9).normal(size=(3, 7, 4))
    np.testing.assert_array_equal(fc.point_forecast(s), np.median(s, axis=1))


def test_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        fc.smape(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        fc.nmse(np.full((1, 2), np.nan), np.ones((1, 2)))
    with pytest.raises(ValueError, match="samples"):
        fc.crps(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="season"):
        fc.mase(np.zeros((1, 2)), np.ones((1, 2)), np.ones((1, 4)), 4)
    with pytest.raises(ValueError, match="levels"):
        fc.wql(np.zeros((1, 3, 2)), np.ones((1, 2)), levels=[0.0, 0.5])


# ---------------------------------------------------------------------------------------------- baselines
def check_seasonal_naive(seasonal_naive):
    for period in (3, 12, 24):
        s = _seasonal(160, period, seed=period)
        w = fc.backtest_windows([s], context=64, horizon=30, test_fraction=0.4)
        np.testing.assert_array_equal(w.season, period)  # detected right
        np.testing.assert_allclose(seasonal_naive(w.context, 30, w.season), w.target, atol=1e-12)  # error 0


def test_seasonal_naive_is_exact_on_a_pure_seasonal_series():
    check_seasonal_naive(fc.seasonal_naive)


def test_naive_and_context_mean_by_hand():
    ctx = np.array([[1.0, 5.0, 3.0], [2.0, 2.0, 8.0]])
    np.testing.assert_array_equal(fc.naive(ctx, 2), [[3.0, 3.0], [8.0, 8.0]])
    np.testing.assert_array_equal(fc.context_mean(ctx, 2), [[3.0, 3.0], [4.0, 4.0]])
    np.testing.assert_array_equal(fc.seasonal_naive(ctx, 5, np.array([1, 2])), [[3] * 5, [2, 8, 2, 8, 2]])


def check_ar(fit_ar, linear_ar):
    from statsmodels.tsa.ar_model import AutoReg, ar_select_order

    rng = np.random.default_rng(10)
    ctx = np.empty((6, 80))
    for i in range(6):  # AR(2) and AR(1) draws with a mean, and a random walk
        e, x = rng.normal(size=80), np.zeros(80)
        phi = [(0.6, -0.3), (0.9, 0.0), (1.0, 0.0), (0.3, 0.4), (-0.5, 0.0), (0.0, 0.0)][i]
        for t in range(2, 80):
            x[t] = 1.0 + phi[0] * x[t - 1] + phi[1] * x[t - 2] + e[t]
        ctx[i] = x
    fit = fit_ar(ctx)
    pred = linear_ar(ctx, 7)
    for i, x in enumerate(ctx):
        sel = ar_select_order(x, fit.max_order, ic="aic", trend="c")
        p = len(sel.ar_lags) if sel.ar_lags else 0
        assert fit.order[i] == p, f"window {i}: order {fit.order[i]}, statsmodels {p}"
        res = AutoReg(x, lags=p, trend="c").fit()
        np.testing.assert_allclose(fit.coef[i, :p + 1], res.params, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(pred[i], res.predict(start=80, end=86), rtol=1e-8, atol=1e-10)


def test_linear_ar_matches_statsmodels_order_fit_and_forecast():
    check_ar(fc.fit_ar, fc.linear_ar)


def test_linear_ar_is_exact_on_a_noise_free_ar_series():
    t = np.arange(120)
    x = 3 + np.sin(2 * np.pi * t / 9.5)  # an AR(2) with a constant, exactly
    got = fc.linear_ar(x[None, :100], 20)
    np.testing.assert_allclose(got[0], x[100:], atol=1e-6)


def _errors_loop(x, h, m):
    """Seasonal-naive (m = 1: naive) applied at every origin t of the context by hand: e[t, k] = x[t + k] − the
    forecast of step k from x[:t]."""
    c = len(x)
    out = np.full((c, h), np.nan)
    for t in range(m, c):
        last_season = np.tile(x[t - m:t], h)  # the last full season before t, repeated
        for k in range(min(h, c - t)):
            out[t, k] = x[t + k] - last_season[k]
    return out


def test_in_sample_errors_match_a_loop():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 30)).cumsum(axis=1)
    for name, m in (("naive", 1), ("seasonal_naive", 5)):
        got = bl.in_sample_errors(name, x, 8, season=m if name == "seasonal_naive" else None)
        for i in range(2):
            np.testing.assert_allclose(got[i], _errors_loop(x[i], 8, m), equal_nan=True)
    got = bl.in_sample_errors("context_mean", x, 3)
    np.testing.assert_allclose(got[0, :, 1], x[0] - x[0].mean())


def test_centred_quantiles_match_nanquantile():
    rng = np.random.default_rng(12)
    e = rng.normal(size=(3, 20, 4))
    e[0, 15:, 2] = np.nan
    got = bl._centred_quantiles(e, 5)
    levels = (np.arange(5) + 0.5) / 5
    ref = np.nanquantile(e, levels, axis=1) - np.nanquantile(e, 0.5, axis=1)
    np.testing.assert_allclose(got, np.moveaxis(ref, 0, 1), atol=1e-12)


@pytest.mark.parametrize("name", fc.BASELINES)
def test_baseline_samples_have_the_point_forecast_as_median(name):
    ctx = np.stack([_seasonal(64, 7, seed=s, noise=0.5) for s in range(3)])
    season = fc.detect_season(ctx)
    samples = fc.baseline_samples(name, ctx, 10, season if name == "seasonal_naive" else None, samples=21)
    point = {"naive": fc.naive(ctx, 10), "seasonal_naive": fc.seasonal_naive(ctx, 10, season),
             "context_mean": fc.context_mean(ctx, 10), "linear_ar": fc.linear_ar(ctx, 10)}[name]
    assert samples.shape == (3, 21, 10)
    np.testing.assert_allclose(fc.point_forecast(samples), point, atol=1e-9)
    assert (np.diff(samples, axis=1) >= -1e-12).all()  # ordered by level


def test_baselines_refuse_bad_input():
    ctx = np.ones((2, 10)).cumsum(axis=1)
    with pytest.raises(ValueError, match="odd"):
        fc.baseline_samples("naive", ctx, 3, samples=20)
    with pytest.raises(ValueError, match="name"):
        fc.baseline_samples("drift", ctx, 3)
    with pytest.raises(ValueError, match="season"):
        fc.seasonal_naive(ctx, 3, 10)
    with pytest.raises(ValueError, match="too short to give an in-sample error"):
        fc.baseline_samples("naive", ctx, 12)
    with pytest.raises(ValueError, match="contexts"):
        fc.naive(np.ones(5), 2)
    with pytest.raises(ValueError, match="max_order"):
        fc.fit_ar(ctx, max_order=6)


# ---------------------------------------------------------------------------------------------- evaluate
def _windows(scale_second=1.0, n=3):
    series = [_seasonal(400, 12, seed=s, noise=0.5, trend=0.01) * (scale_second if s == 1 else 1.0)
              for s in range(n)]
    return fc.backtest_windows(series, context=64, horizon=12, test_fraction=0.3, stride=6)


def _noisy_truth(windows, sd):
    def forecaster(key, contexts, horizon):
        noise = np.asarray(jax.random.normal(key, (len(windows), 15, horizon)), np.float64)
        return windows.target[:, None, :] + sd * windows.scale[:, None, None] * noise

    return forecaster


def test_seasonal_naive_as_the_model_has_skill_one_exactly():
    w = _windows()
    rows = fc.evaluate(fc.baseline_forecaster("seasonal_naive", season=w.season), w, KEY, draws=200,
                       crps_estimator="empirical")  # its samples are a quantile grid
    assert [r["metric"] for r in rows] == list(fc.METRICS)
    for r in rows:
        assert r["skill"] == r["skill_low"] == r["skill_high"] == 1.0  # paired: the same windows both sides
        assert r["value"] == pytest.approx(r["seasonal_naive"])
        assert r["vs_seasonal_naive"] == "no difference detected" and not r["beats_seasonal_naive"]
        assert r["windows"] == len(w) and r["series"] == 3
        assert r["samples"] == 101 and r["crps_estimator"] == "empirical"


def test_a_near_perfect_model_is_better_and_a_bad_one_is_marked():
    w = _windows()
    good = fc.evaluate(_noisy_truth(w, 1e-3), w, KEY, draws=300)
    bad = fc.evaluate(_noisy_truth(w, 3.0), w, KEY, draws=300)
    for g, b in zip(good, bad):
        assert g["beats_seasonal_naive"] and g["vs_seasonal_naive"] == "better" and g["skill_high"] < 0.05
        assert not b["beats_seasonal_naive"] and b["vs_seasonal_naive"] == "worse"
        assert g["low"] <= g["value"] <= g["high"]


def check_pooling(window_scores):
    """One series: the aggregates are the textbook pooled definitions over all its windows' steps."""
    w = fc.backtest_windows([_seasonal(300, 12, noise=0.5)], context=48, horizon=8, test_fraction=0.4, stride=4)
    s = np.random.default_rng(13).normal(size=(len(w), 11, 8)) + w.target[:, None, :]
    sc = window_scores(s, w, "fair")
    agg = {m: sc[m][0].sum() / sc[m][1].sum() for m in fc.METRICS}
    point, y = np.median(s, axis=1), w.target
    assert agg["nmse"] == pytest.approx(np.sum((point - y) ** 2) / np.sum(y**2), rel=1e-12)
    assert agg["scaled_crps"] == pytest.approx(np.sum(_crps_brute(s, y, fair=True)) / np.sum(np.abs(y)), rel=1e-10)
    assert agg["mase"] == pytest.approx(np.mean(fc.mase(point, y, w.context, w.season)), rel=1e-12)
    assert agg["smape"] == pytest.approx(np.mean(fc.smape(point, y)), rel=1e-12)
    q = np.quantile(s, fc.QUANTILE_LEVELS, axis=1)  # [Q, W, H], numpy's own quantiles
    lev = np.array(fc.QUANTILE_LEVELS)[:, None, None]
    ql = np.maximum(lev * (y - q), (lev - 1) * (y - q))  # the pinball loss in its max form
    assert agg["wql"] == pytest.approx(2 * np.sum(np.mean(ql, axis=0)) / np.sum(np.abs(y)), rel=1e-10)


def test_aggregates_are_the_pooled_textbook_definitions():
    check_pooling(fc.window_scores)


def check_scale_free(window_scores):
    """Multiplying one series by 1000 (and its forecasts with it) changes no aggregate."""
    out = []
    for k in (1.0, 1000.0):
        w = _windows(scale_second=k)
        s = np.random.default_rng(14).normal(size=(len(w), 9, 12)) * w.scale[:, None, None] * 0.1
        sc = window_scores(w.target[:, None, :] + s, w)
        out.append([sc[m][0].sum() / sc[m][1].sum() for m in fc.METRICS])
    np.testing.assert_allclose(out[0], out[1], rtol=1e-9)


def test_aggregates_do_not_depend_on_a_series_units():
    check_scale_free(fc.window_scores)


def test_undefined_windows_are_left_out_and_counted():
    series = [np.r_[np.tile([1.0, 2.0], 60), 1.0, 2.0, 1.0], _seasonal(123, 5)]
    w = fc.backtest_windows(series, context=16, horizon=4, test_fraction=0.3, season=2)
    rows = {r["metric"]: r for r in fc.evaluate(fc.baseline_forecaster("naive"), w, KEY, draws=50)}
    exact = int(np.sum(w.series == 0))  # every context of the alternating series repeats exactly: no MASE scale
    assert rows["mase"]["windows"] == len(w) - exact and rows["smape"]["windows"] == len(w)


def check_paired_bootstrap(aggregate):
    """The skill interval is paired: a model that is the reference plus a small jitter has a skill interval
    much narrower than the metric's own, which an unpaired bootstrap cannot give."""
    rng = np.random.default_rng(15)
    ref = rng.gamma(1.0, size=60)
    model = ref * (1 + 0.01 * rng.normal(size=60))
    ones = np.ones(60)
    agg = aggregate((model, ones), (ref, ones), np.arange(60), draws=500)
    assert (agg["skill_high"] - agg["skill_low"]) < 0.1 * (agg["high"] - agg["low"]) / agg["value"]


def test_skill_interval_is_paired():
    check_paired_bootstrap(fc.aggregate)


def test_bootstrap_interval_covers_the_mean_about_95_percent():
    rng = np.random.default_rng(16)
    hits, reps = 0, 200
    for _ in range(reps):
        x = rng.exponential(size=60)  # true mean 1
        agg = fc.aggregate((x, np.ones(60)), (np.ones(60), np.ones(60)), np.arange(60), draws=400,
                           seed=int(rng.integers(1 << 30)))
        hits += agg["low"] <= 1.0 <= agg["high"]
    assert 0.87 <= hits / reps <= 0.99, hits / reps  # percentile intervals undercover a little on skewed data


def test_series_resampling_uses_series_as_clusters():
    w = _windows(n=4)
    rows = fc.evaluate(_noisy_truth(w, 0.5), w, KEY, draws=200, resample="series")
    assert all(r["clusters"] == 4 and r["resample"] == "series" for r in rows)
    again = fc.evaluate(_noisy_truth(w, 0.5), w, KEY, draws=200, resample="series")
    assert rows == again  # deterministic in (key, seed)


def test_evaluate_baselines_and_shared_reference():
    w = _windows()
    ref = fc.baseline_scores(w, samples=21)
    rows = fc.evaluate_baselines(w, reference=ref, draws=100)
    assert len(rows) == len(fc.BASELINES) * len(fc.METRICS)
    naive_mase = next(r for r in rows if r["forecaster"] == "naive" and r["metric"] == "mase")
    assert naive_mase["value"] == pytest.approx(naive_mase["naive"]) and naive_mase["skill"] > 1
    model = fc.evaluate(fc.baseline_forecaster("naive", samples=21), w, KEY, reference=ref, draws=100)
    assert model[0]["value"] == pytest.approx(naive_mase["value"], rel=1e-12)


def test_evaluate_refuses_bad_input():
    w = _windows()
    good = _noisy_truth(w, 0.1)
    with pytest.raises(ValueError, match="returned unusable samples.*shape"):
        fc.evaluate(lambda k, c, h: np.zeros((len(w), h)), w, KEY)
    with pytest.raises(ValueError, match="returned unusable samples.*non-finite"):
        fc.evaluate(lambda k, c, h: np.full((len(w), 3, h), np.nan), w, KEY)
    with pytest.raises(ValueError, match="windows must be a Windows"):
        fc.evaluate(good, (w.context, w.target), KEY)
    with pytest.raises(ValueError, match="resample"):
        fc.evaluate(good, w, KEY, resample="block")
    with pytest.raises(ValueError, match="draws"):
        fc.evaluate(good, w, KEY, draws=0)
    with pytest.raises(ValueError, match="level"):
        fc.evaluate(good, w, KEY, level=95)
    with pytest.raises(ValueError, match="reference"):
        fc.evaluate(good, w, KEY, reference=fc.baseline_scores(w.subset(np.arange(3)), samples=5))
    with pytest.raises(ValueError, match="reference"):  # same window count, other windows
        other = dataclasses.replace(w, target=w.target + 1.0)
        fc.evaluate(good, w, KEY, reference=fc.baseline_scores(other, samples=5))
    with pytest.raises(ValueError, match="callable"):
        fc.evaluate("model", w, KEY)
    with pytest.raises(ValueError, match="disagree"):
        fc.evaluate(good, dataclasses.replace(w, season=w.season[:-1]), KEY)
    with pytest.raises(ValueError, match="seasons"):
        fc.evaluate(good, dataclasses.replace(w, season=w.season * 0), KEY)


@pytest.mark.float32_only
def test_the_docs_example_runs_and_prints_what_it_says():
    import re
    import subprocess
    import sys

    from tests.conftest import ROOT, subprocess_env

    code = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "forecasting.md").read_text(), re.S)[0]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("15 [5 5 5] [12 12 12]\n") and done.stdout.count("\n") == 6


# ---------------------------------------------------------------------------------------------- mutants
def _mutant_windows_leak(series, context, horizon, test_fraction, stride):
    """Off by one: each context ends at the origin inclusive, so it holds the first target value."""
    w = fc.backtest_windows(series, context, horizon, test_fraction, stride=stride)
    s = [np.asarray(x, float) for x in series]
    ctx = np.stack([s[i][o - context + 1:o + 1] for i, o in zip(w.series, w.origin)])
    return dataclasses.replace(w, context=ctx)


def _mutant_windows_early(series, context, horizon, test_fraction, stride):
    """Origins start one step early, so the first target value was a training value."""
    w = fc.backtest_windows(series, context, horizon, test_fraction, stride=stride)
    s = [np.asarray(x, float) for x in series]
    o = w.origin - 1
    return dataclasses.replace(w, origin=o,
                               context=np.stack([s[i][oo - context:oo] for i, oo in zip(w.series, o)]),
                               target=np.stack([s[i][oo:oo + horizon] for i, oo in zip(w.series, o)]))


def _mutant_mase_lag_one(f, y, ctx, season):
    return fc.mase(f, y, ctx, 1)  # the scale ignores the season


def _mutant_mase_out_of_sample(f, y, ctx, season):
    return np.mean(np.abs(f - y), axis=1) / np.mean(np.abs(np.diff(y, axis=1)), axis=1)


def _mutant_crps_plus(samples, y, estimator="fair"):
    s = np.asarray(samples)
    m = s.shape[1]
    pairs = np.sum(np.abs(s[:, :, None] - s[:, None, :]), axis=(1, 2)) / (m * (m - 1) if estimator == "fair" else m * m)
    return np.mean(np.abs(s - y[:, None]), axis=1) + 0.5 * pairs  # the spread term with the wrong sign


def _mutant_crps_swapped(samples, y, estimator="fair"):
    """scoringrules' "pwm" taken for the empirical CRPS (it is the fair one), and the other way round."""
    return fc.crps(samples, y, "empirical" if estimator == "fair" else "fair")


def _mutant_seasonal_no_mod(ctx, h, season):
    m = np.broadcast_to(season, (ctx.shape[0],))
    idx = np.clip(ctx.shape[1] - m[:, None] + np.arange(h)[None, :], 0, ctx.shape[1] - 1)
    return np.take_along_axis(ctx, idx, axis=1)


def _mutant_seasonal_shift(ctx, h, season):
    m = np.broadcast_to(season, (ctx.shape[0],))
    return np.take_along_axis(ctx, ctx.shape[1] - m[:, None] - 1 + np.arange(h)[None, :] % m[:, None], axis=1)


def _mutant_detect_first_peak(ctx):
    """The first local maximum of the ACF instead of the highest significant one."""
    r = wn._acf(np.asarray(ctx, float), ctx.shape[1] // 2 + 1)
    k = np.arange(2, ctx.shape[1] // 2 + 1)
    peak = (r[:, k] > r[:, k - 1]) & (r[:, k] >= r[:, k + 1])
    return np.where(peak.any(axis=1), k[np.argmax(peak, axis=1)], 1)


def _mutant_detect_no_test(ctx):
    """The highest local maximum without the significance test: noise gets a season."""
    r = wn._acf(np.asarray(ctx, float), ctx.shape[1] // 2 + 1)
    k = np.arange(2, ctx.shape[1] // 2 + 1)
    peak = (r[:, k] > r[:, k - 1]) & (r[:, k] >= r[:, k + 1])
    return np.where(peak.any(axis=1), k[np.argmax(np.where(peak, r[:, k], -np.inf), axis=1)], 1)


def _mutant_detect_acf_only(ctx):
    """The highest significant ACF peak, without asking whether that season beats naive in-sample."""
    c = ctx.shape[1]
    r = wn._acf(np.asarray(ctx, float), c // 2 + 1)
    k = np.arange(2, c // 2 + 1)
    peak = (r[:, k] > r[:, k - 1]) & (r[:, k] >= r[:, k + 1]) & (r[:, k] > 2.95 / np.sqrt(c))
    return np.where(peak.any(axis=1), k[np.argmax(np.where(peak, r[:, k], -np.inf), axis=1)], 1)


def _mutant_ar_no_penalty(ctx, max_order=None):
    """Order by residual variance alone (no AIC penalty): always the largest order."""
    fit = bl.fit_ar(ctx, max_order)
    top = fit.max_order
    x = np.asarray(ctx, float)
    design, y = bl._lagged(x, top, top)
    coef = bl._lstsq(design, y)
    return bl.ARFit(coef=coef, order=np.full(len(x), top), max_order=top)


def _mutant_ar_linear(ctx, h, max_order=None):
    fit = _mutant_ar_no_penalty(ctx, max_order)
    return bl._iterate(fit.coef, np.asarray(ctx, float)[:, ctx.shape[1] - fit.max_order:], h)


def _mutant_scores(transform):
    def window_scores(samples, windows, crps_estimator="fair"):
        return transform(ev.window_scores(samples, windows, crps_estimator), windows)
    return window_scores


def _per_window_mean_nmse(sc, windows):
    a, b = sc["nmse"]
    return sc | {"nmse": (a / b, np.ones_like(a))}  # mean of per-window NMSE instead of the pooled ratio


def _unscaled(sc, windows):
    u = windows.scale
    return sc | {"nmse": (sc["nmse"][0] * u**2, sc["nmse"][1] * u**2),
                 "scaled_crps": (sc["scaled_crps"][0] * u, sc["scaled_crps"][1] * u)}


def _mutant_unpaired(scores, reference, clusters, draws=2000, level=0.95, seed=0):
    """Resample the model and the reference independently."""
    a = ev.aggregate(scores, reference, clusters, draws, level, seed)
    b = ev.aggregate(reference, reference, clusters, draws, level, seed + 1)
    return a | {"skill_low": a["low"] / b["high"], "skill_high": a["high"] / b["low"]}


def _mutant_wql_half(samples, y, levels=fc.QUANTILE_LEVELS):
    return fc.wql(samples, y, levels) / 2


def _mutant_nmse_var(f, y):
    return np.mean((np.asarray(f) - y) ** 2, axis=1) / np.var(y, axis=1)


def _mutant_smape_no_two(f, y):
    return fc.smape(f, y) / 2


MUTANTS = [
    (check_windows, (_mutant_windows_leak,)), (check_windows, (_mutant_windows_early,)),
    (check_mase, (_mutant_mase_lag_one,)), (check_mase, (_mutant_mase_out_of_sample,)),
    (check_smape, (_mutant_smape_no_two,)), (check_nmse, (_mutant_nmse_var,)),
    (check_crps, (_mutant_crps_plus,)), (check_crps, (_mutant_crps_swapped,)), (check_wql, (_mutant_wql_half,)),
    (check_seasonal_naive, (_mutant_seasonal_no_mod,)), (check_seasonal_naive, (_mutant_seasonal_shift,)),
    (check_detect_season, (_mutant_detect_first_peak,)), (check_detect_season, (_mutant_detect_no_test,)),
    (check_detect_season, (_mutant_detect_acf_only,)),
    (check_ar, (_mutant_ar_no_penalty, _mutant_ar_linear)),
    (check_pooling, (_mutant_scores(_per_window_mean_nmse),)), (check_scale_free, (_mutant_scores(_unscaled),)),
    (check_paired_bootstrap, (_mutant_unpaired,)),
]


@pytest.mark.parametrize("check, broken", MUTANTS, ids=[f"{c.__name__}-{b[0].__name__}" for c, b in MUTANTS])
def test_each_check_fails_on_a_broken_implementation(check, broken):
    with pytest.raises(AssertionError):
        check(*broken)

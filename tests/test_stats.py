import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from isojax import stats


def test_within_group_spearman_removes_the_group_confound():
    # within each dataset the more isotropic run forecasts better (ρ = -1), but the easy dataset is the more
    # isotropic one overall, so the pooled ρ is positive: only the within-group ρ sees the -1
    rows = [{"data": d, "iso": base + i, "nmse": scale * (3 - i)}
            for d, base, scale in (("a", 0, 1.0), ("b", 10, 100.0)) for i in range(3)]
    rho, lo, hi, n = stats.within_group_spearman(rows, "iso", "nmse", "data")
    assert n == 2 and rho == lo == hi == -1.0
    assert stats.spearman_bootstrap([r["iso"] for r in rows], [r["nmse"] for r in rows])[0] > 0
    assert np.isnan(stats.within_group_spearman(rows[:3], "iso", "nmse", "data")[0])  # one group: no interval


def test_spearman_bootstrap_matches_scipy_and_brackets_it():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    rho, lo, hi = stats.spearman_bootstrap(x, y, seed=1)
    assert rho == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    assert lo < rho < hi and 0 < lo


def test_spearman_bootstrap_refuses_bad_shapes():
    with pytest.raises(ValueError, match="1-D of one length"):
        stats.spearman_bootstrap([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="1-D of one length"):
        stats.spearman_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 values"):
        stats.spearman_bootstrap([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])


def test_mean_interval_is_the_sample_sd_and_the_t_interval_of_statsmodels():
    from statistics import stdev

    from statsmodels.stats.weightstats import DescrStatsW

    x = np.random.default_rng(2).normal(3.0, 2.0, size=7)
    res = stats.mean_interval(x)
    assert res.n == 7 and res.mean == pytest.approx(np.mean(x), rel=1e-12)
    assert res.sd == pytest.approx(stdev(x.tolist()), rel=1e-12)  # ddof = 1, not the population sd
    assert res.sd > np.std(x)
    assert (res.low, res.high) == pytest.approx(DescrStatsW(x).tconfint_mean(0.05), rel=1e-10)
    with pytest.raises(ValueError, match="at least 2"):
        stats.mean_interval([1.0])
    with pytest.raises(ValueError, match="finite"):
        stats.mean_interval([1.0, np.nan, 2.0])


def test_welch_matches_scipy_and_statsmodels():
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    rng = np.random.default_rng(3)
    a, b = rng.normal(0.0, 1.0, size=5), rng.normal(1.0, 3.0, size=9)
    res = stats.welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert res.t == pytest.approx(ref.statistic, rel=1e-10) and res.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert res.df == pytest.approx(ref.df, rel=1e-10)
    assert res.diff == pytest.approx(np.mean(a) - np.mean(b), rel=1e-12)
    cm = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    assert (res.low, res.high) == pytest.approx(cm.tconfint_diff(usevar="unequal"), rel=1e-10)
    pooled = sps.ttest_ind(a, b, equal_var=True)  # the equal-variance test is a different number here
    assert abs(pooled.pvalue - res.p) > 1e-3
    with pytest.raises(ValueError, match="both constant"):
        stats.welch([1.0, 1.0], [2.0, 2.0, 2.0])


def _panel(seed, datasets=8, variants=4, slope=0.5, noise=0.3):
    rng = np.random.default_rng(seed)
    data = np.repeat([f"d{i}" for i in range(datasets)], variants)
    variant = np.tile([f"v{j}" for j in range(variants)], datasets)
    d_eff, v_eff = rng.normal(0, 3, datasets), rng.normal(0, 1, variants)
    x = rng.normal(size=len(data)) + v_eff[np.arange(len(data)) % variants]  # x confounded with the variant
    y = (np.repeat(d_eff, variants) + 2 * v_eff[np.arange(len(data)) % variants] + slope * x
         + noise * rng.normal(size=len(data)))
    return y, x, data, variant


def test_fixed_effects_slope_se_and_p_match_statsmodels_ols():
    import statsmodels.formula.api as smf

    y, x, data, variant = _panel(4)
    res = stats.fixed_effects(y, x, {"data": data, "variant": variant}, cluster=data, draws=200)
    frame = pd.DataFrame({"y": y, "x": x, "data": data, "variant": variant})
    fit = smf.ols("y ~ x + C(data) + C(variant)", frame).fit()
    assert res.slope == pytest.approx(fit.params["x"], rel=1e-9)
    assert res.se == pytest.approx(fit.bse["x"], rel=1e-9)
    assert res.p == pytest.approx(fit.pvalues["x"], rel=1e-7)
    assert res.df == fit.df_resid and res.n == len(y) and res.clusters == 8
    assert res.resid_sd == pytest.approx(np.sqrt(fit.scale), rel=1e-9)
    # without the variant effects the slope absorbs the variant's own effect on y (the confound)
    naive = smf.ols("y ~ x + C(data)", pd.DataFrame({"y": y, "x": x, "data": data})).fit().params["x"]
    assert abs(naive - 0.5) > 3 * abs(res.slope - 0.5)


def test_cluster_bootstrap_is_the_brute_force_loop_over_resampled_datasets():
    import statsmodels.formula.api as smf

    y, x, data, variant = _panel(5, datasets=6, variants=3)
    res = stats.fixed_effects(y, x, {"data": data, "variant": variant}, cluster=data, draws=60, seed=7)
    rng, groups, boots = np.random.default_rng(7), list(dict.fromkeys(data)), []
    for _ in range(60):
        pick = [groups[i] for i in rng.integers(0, len(groups), len(groups))]
        rows = np.concatenate([np.flatnonzero(data == g) for g in pick])
        frame = pd.DataFrame({"y": y[rows], "x": x[rows], "data": data[rows], "variant": variant[rows]})
        fit = smf.ols("y ~ x + C(data) + C(variant)" if len(set(pick)) > 1 else "y ~ x + C(variant)", frame).fit()
        if fit.df_resid >= 1:
            boots.append(fit.params["x"])
    assert res.draws == len(boots)
    assert (res.low, res.high) == pytest.approx(tuple(np.percentile(boots, [2.5, 97.5])), rel=1e-8)
    assert res.boot_se == pytest.approx(np.std(boots, ddof=1), rel=1e-8)


def test_cluster_bootstrap_widens_when_datasets_disagree_on_the_slope():
    # every dataset has its own slope (mean 0.5, sd 0.5): rows within a dataset are not independent, and only
    # resampling whole datasets sees that; the classical OLS interval does not
    rng = np.random.default_rng(6)
    data = np.repeat(np.arange(12), 10)
    x = rng.normal(size=len(data))
    y = (0.5 + 0.5 * rng.normal(size=12))[data] * x + 0.05 * rng.normal(size=len(data))
    res = stats.fixed_effects(y, x, {"data": data}, cluster=data, draws=500)
    classical = 2 * sps.t.ppf(0.975, res.df) * res.se
    assert res.high - res.low > 2 * classical
    assert res.low < 0.5 < res.high


def test_fixed_effects_refuses_an_unidentified_slope_and_bad_shapes():
    y, x, data, variant = _panel(8, datasets=4, variants=3)
    with pytest.raises(ValueError, match="not identified"):
        stats.fixed_effects(y, (variant == "v1").astype(float), {"variant": variant}, cluster=data)
    with pytest.raises(ValueError, match="one length"):
        stats.fixed_effects(y, x[:-1], {"data": data}, cluster=data)
    with pytest.raises(ValueError, match="factor 'data'"):
        stats.fixed_effects(y, x, {"data": data[:-1]}, cluster=data)
    with pytest.raises(ValueError, match="finite"):
        stats.fixed_effects(np.where(np.arange(len(y)) == 0, np.inf, y), x, {"data": data}, cluster=data)


def test_variance_share_matches_statsmodels_r_squared():
    import statsmodels.formula.api as smf

    y, x, data, variant = _panel(9)
    frame = pd.DataFrame({"x": x, "data": data, "variant": variant})
    r_data = smf.ols("x ~ C(data)", frame).fit().rsquared
    r_both = smf.ols("x ~ C(data) + C(variant)", frame).fit().rsquared
    assert stats.variance_share(x, {"data": data}) == pytest.approx(r_data, rel=1e-9)
    assert stats.variance_share(x, {"variant": variant}, base={"data": data}) == pytest.approx(
        (r_both - r_data) / (1 - r_data), rel=1e-9)
    # a measure the variant fixes exactly within every dataset: the variant explains all of it
    exact = np.array([float(v[1:]) for v in variant]) + np.array([float(d[1:]) for d in data])
    assert stats.variance_share(exact, {"variant": variant}, base={"data": data}) == pytest.approx(1.0)


def test_minimum_detectable_effect_has_the_stated_power_by_simulation():
    y, x, data, variant = _panel(10, datasets=17, variants=6)
    factors = {"data": data, "variant": variant}
    res = stats.fixed_effects(y, x, factors, cluster=data, draws=50)
    mde = stats.minimum_detectable_effect(res.se)
    assert mde == pytest.approx((sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * res.se)
    # a design with the same x and residual sd: the MDE is detected about 80% of the time, a null about 5%,
    # and half the MDE far less often (binomial sd of a share over 2000 draws: <= 0.011)
    power = stats.simulated_power(x, factors, mde, res.resid_sd, draws=2000, seed=1)
    assert 0.75 < power < 0.83
    assert stats.simulated_power(x, factors, 0.0, res.resid_sd, draws=2000, seed=2) < 0.075
    assert stats.simulated_power(x, factors, mde / 2, res.resid_sd, draws=2000, seed=3) < 0.4
    with pytest.raises(ValueError, match="se must be finite and positive"):
        stats.minimum_detectable_effect(0.0)


@pytest.mark.parametrize("n", [3, 5, 20])
def test_minimum_detectable_effect_with_t_quantiles_matches_the_exact_two_sample_power(n):
    from statsmodels.stats.power import TTestIndPower

    # two groups of n, unit sd: se of the difference sqrt(2/n), df 2n - 2; statsmodels solves the noncentral t
    exact = TTestIndPower().solve_power(nobs1=n, alpha=0.05, power=0.8, ratio=1.0)
    approx = stats.minimum_detectable_effect(np.sqrt(2 / n), df=2 * n - 2)
    assert approx == pytest.approx(exact, rel=0.02)


def _summary(slope_iso, slope_cc, seed=0):
    # 6 datasets x 4 variants x 2 seeds; the tokenizer shifts IsoScore (the confound), NMSE follows the measures
    rng, rows = np.random.default_rng(seed), []
    for d in range(6):
        for tok in ("bins", "digits"):
            for arch in ("decoder", "encoder"):
                for s in range(2):
                    iso = 0.1 + (0.1 if tok == "bins" else 0.0) + 0.03 * rng.normal()
                    cc = 0.02 + 0.02 * rng.normal()
                    nmse = np.exp(d + slope_iso * iso + slope_cc * cc + 0.05 * rng.normal())
                    rows.append({"data": f"d{d}", "tokenizer": tok, "arch": arch, "seed": s, "nmse": nmse,
                                 "isoscore_last": iso, "clustered_cosine_last": cc, "isoscore_mean": iso})
    return rows


def test_t6_effect_table_reads_the_sign_of_each_measure():
    from experiments import runner as experiment

    t6 = experiment.load("trained_isotropy")
    rows = {r["measure"]: r for r in t6.effect_rows(_summary(-10.0, 10.0), draws=200)}
    assert rows["isoscore_last"]["slope"] == pytest.approx(-10.0, abs=1.0)
    # lower NMSE with more isotropy supports the hypothesis; so does higher NMSE with more clustered cosine
    assert rows["isoscore_last"]["verdict"] == "supports" and rows["clustered_cosine_last"]["verdict"] == "supports"
    assert rows["isoscore_last"]["seeds"] == 2 and rows["isoscore_last"]["datasets"] == 6
    flipped = {r["measure"]: r for r in t6.effect_rows(_summary(10.0, -10.0), draws=200)}
    assert flipped["isoscore_last"]["verdict"] == "contradicts" == flipped["clustered_cosine_last"]["verdict"]
    confound = {(r["measure"], r["factor"]): r["share"] for r in t6.confound_rows(_summary(0.0, 0.0))}
    assert confound[("isoscore_last", "tokenizer")] > 0.5 > 0.2 > confound[("clustered_cosine_last", "tokenizer")]


def test_intervention_effects_are_welch_tests_against_no_penalty():
    from statsmodels.stats.multitest import multipletests

    from experiments import runner as experiment

    rng = np.random.default_rng(11)
    rows = [{"data": "a", "strength": w, "seed": s, "nmse": 1.0 + 0.3 * w + 0.1 * rng.normal(),
             "isoscore_mean": 0.5 + 0.1 * w + 0.01 * rng.normal()} for w in (-1.0, 0.0, 1.0, 3.0) for s in range(3)]
    table = experiment.load("intervention").effect_rows(rows)
    nmse = [r for r in table if r["measure"] == "nmse"]
    ref = [r["nmse"] for r in rows if r["strength"] == 0.0]
    for r in nmse:
        sample = [x["nmse"] for x in rows if x["strength"] == r["strength"]]
        assert r["sd"] == pytest.approx(np.std(sample, ddof=1)) and r["n"] == 3
        if r["strength"] != 0.0:
            assert r["p"] == pytest.approx(sps.ttest_ind(sample, ref, equal_var=False).pvalue, rel=1e-9)
    tested = [r for r in nmse if r["strength"] != 0.0]
    holm = multipletests([r["p"] for r in tested], method="holm")[1]
    assert [r["p_holm"] for r in tested] == pytest.approx(list(holm))
    assert [r["supports_if"] for r in nmse] == ["diff > 0", "", "diff < 0", "diff < 0"]


def test_t5b_probe_reads_a_linear_target_exactly():
    from experiments import runner as experiment

    rng = np.random.default_rng(12)
    h = rng.normal(size=(400, 6))
    y = h @ rng.normal(size=6) + 0.3
    y_hat = y + 0.1 * rng.normal(size=400)
    res = experiment.load("guarantee").probe(h, y, y_hat)
    assert res["probe_mse"] < 1e-6 and res["gap"] == pytest.approx(-res["lm_mse"], abs=1e-6)
    assert res["lm_mse"] == pytest.approx(np.mean((y_hat[200:] - y[200:]) ** 2))

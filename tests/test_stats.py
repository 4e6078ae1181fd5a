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


def test_intervention_effects_are_dunnett_tests_against_no_penalty():
    from experiments import runner as experiment

    rng = np.random.default_rng(11)
    rows = [{"data": "a", "strength": w, "seed": s, "nmse": np.exp(0.3 * w + 0.1 * rng.normal()),
             "isoscore_mean": 0.5 + 0.1 * w + 0.01 * rng.normal()} for w in (-1.0, 0.0, 1.0, 3.0) for s in range(3)]
    table = experiment.load("intervention").effect_rows(rows)
    logs = [r for r in table if r["measure"] == "log_nmse"]
    arm = lambda w: np.log([x["nmse"] for x in rows if x["strength"] == w])
    # scipy's Dunnett on the same arms, an independent route to the table's p and interval
    ref = sps.dunnett(arm(-1.0), arm(1.0), arm(3.0), control=arm(0.0), random_state=0)
    ci = ref.confidence_interval()
    for r in logs:
        sample = arm(r["strength"])
        assert r["sd"] == pytest.approx(np.std(sample, ddof=1)) and r["n"] == 3
        assert r["mean_low"] < r["mean"] < r["mean_high"] and r["mean"] == pytest.approx(sample.mean())
        if r["strength"] != 0.0:
            i = (-1.0, 1.0, 3.0).index(r["strength"])
            assert r["diff_vs_0"] == pytest.approx(sample.mean() - arm(0.0).mean())
            assert r["p_dunnett"] == pytest.approx(ref.pvalue[i], abs=2e-3)
            assert (r["diff_low"], r["diff_high"]) == pytest.approx((ci.low[i], ci.high[i]), abs=2e-3)
            assert r["df"] == 12 - 4 and r["mde"] > r["diff_high"] - r["diff_vs_0"] > 0
        else:
            assert r["p_dunnett"] == "" and r["diff_vs_0"] == ""
    assert [r["supports_if"] for r in logs] == ["diff > 0", "", "diff < 0", "diff < 0"]


def test_t5b_probe_reads_a_linear_target_exactly():
    from experiments import runner as experiment

    rng = np.random.default_rng(12)
    h = rng.normal(size=(400, 6))
    y = h @ rng.normal(size=6) + 0.3
    y_hat = y + 0.1 * rng.normal(size=400)
    res = experiment.load("guarantee").probe(h, y, y_hat)
    assert res["probe_mse"] < 1e-6 and res["gap"] == pytest.approx(-res["lm_mse"], abs=1e-6)
    assert res["lm_mse"] == pytest.approx(np.mean((y_hat[200:] - y[200:]) ** 2))


def _cells_panel(seed=0, datasets=6, variants=3, seeds=4, within=0.5, confound=2.0):
    """Rows of a dataset × variant × seed design: cell effects move x and y together (a between-cell confound),
    and inside a cell y moves with x by `within`."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame([(d, v, s) for d in range(datasets) for v in range(variants) for s in range(seeds)],
                      columns=["d", "v", "s"])
    df["cell"] = df.d.astype(str) + "|" + df.v.astype(str)
    u = rng.normal(size=datasets * variants)[df.d * variants + df.v]
    df["x"] = rng.normal(size=len(df)) + u
    df["y"] = within * df.x + confound * u + rng.normal(size=len(df))
    return df


def test_within_slope_matches_statsmodels_with_cell_dummies_and_clusters():
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    df = _cells_panel()
    res = stats.within_slope(df.y, df.x, df.cell, df.d)
    dummies = smf.ols("y ~ x + C(cell)", df).fit()
    assert res.slope == pytest.approx(dummies.params["x"], rel=1e-10)
    assert (res.se, res.df, res.p) == pytest.approx((dummies.bse["x"], dummies.df_resid, dummies.pvalues["x"]),
                                                    rel=1e-9)
    # CR1 on the within-transformed data: the cell effects are absorbed, only the slope is a parameter
    g = df.groupby("cell")
    demeaned = sm.OLS((df.y - g.y.transform("mean")).values, (df.x - g.x.transform("mean")).values).fit(
        cov_type="cluster", cov_kwds={"groups": df.d.values})
    assert res.se_cr1 == pytest.approx(demeaned.bse[0], rel=1e-10)
    q = sps.t.ppf(0.975, res.df_cluster)
    assert (res.low, res.high) == pytest.approx((res.slope - q * res.se_cluster, res.slope + q * res.se_cluster))
    assert res.p_cluster == pytest.approx(2 * sps.t.sf(abs(res.slope / res.se_cluster), res.df_cluster), rel=1e-10)
    assert (res.cells, res.clusters, res.n) == (18, 6, 72)
    # with cells as clusters (the default) CR1 counts 18 clusters
    assert stats.within_slope(df.y, df.x, df.cell, draws=10).clusters == 18


def _cr2_by_matrices(df):
    """CR2 and its Bell–McCaffrey df written out with the full design [x, cell indicators]: A_g the
    Moore–Penrose inverse square root of I − H_gg, Ω = Q Qᵀ with Q_g = (row of x in (XᵀX)⁻¹Xᵀ)_g A_g (I − H)_g."""
    x = np.column_stack([df.x.values, pd.get_dummies(df.cell, dtype=float).values])
    xtx_inv = np.linalg.inv(x.T @ x)
    hat = x @ xtx_inv @ x.T
    resid = df.y.values - hat @ df.y.values
    weights = (xtx_inv @ x.T)[0]
    rows, var = [], 0.0
    for g in sorted(df.d.unique()):
        idx = np.flatnonzero(df.d.values == g)
        lam, vec = np.linalg.eigh(np.eye(len(idx)) - hat[np.ix_(idx, idx)])
        inv_sqrt = (vec * np.where(lam > 1e-10, 1 / np.sqrt(np.clip(lam, 1e-10, None)), 0.0)) @ vec.T
        var += float(weights[idx] @ inv_sqrt @ resid[idx]) ** 2
        rows.append(weights[idx] @ inv_sqrt @ (np.eye(len(df)) - hat)[idx])
    omega = np.array(rows) @ np.array(rows).T
    return np.sqrt(var), np.trace(omega) ** 2 / np.trace(omega @ omega)


def test_within_slope_cr2_and_its_df_are_the_matrix_formulas():
    df = _cells_panel(seed=12, datasets=5, variants=2, seeds=3)
    df.loc[df.d == 0, "x"] *= 6.0  # one dataset holds most of the variation of x: unequal leverage
    res = stats.within_slope(df.y, df.x, df.cell, df.d, draws=10)
    se, dof = _cr2_by_matrices(df)
    assert res.se_cluster == pytest.approx(se, rel=1e-9)
    assert res.df_cluster == pytest.approx(dof, rel=1e-9)
    assert res.df_cluster < 3.0 < res.clusters - 1  # the leverage leaves fewer effective clusters
    assert stats.cr2_df(np.full(7, 1 / 7)) == pytest.approx(6.0, rel=1e-12)
    with pytest.raises(ValueError, match="each be < 1"):
        stats.cr2_df([1.0, 0.0])


def test_within_slope_cr2_keeps_its_size_where_cr1_does_not():
    # 12 datasets, one of which holds most of x's seed-to-seed variation, no effect: CR1 on 11 df rejects over
    # twice as often as it should (0.12), CR2 on its Bell–McCaffrey df at most 5% (0.02: conservative)
    rng = np.random.default_rng(13)
    cell = np.repeat(np.arange(24), 3)
    data = cell // 2
    scale = np.where(data == 0, 4.0, 1.0)
    cr1 = cr2 = 0
    sims = 1500
    for _ in range(sims):
        x, y = rng.normal(size=72) * scale, rng.normal(size=72)
        res = stats.within_slope(y, x, cell, data, draws=2)
        cr1 += abs(res.slope / res.se_cr1) > sps.t.ppf(0.975, 11)
        cr2 += res.p_cluster < 0.05
    assert cr1 / sims > 0.09
    assert cr2 / sims < 0.05


def test_within_slope_sees_the_within_effect_that_the_additive_fit_mixes_with_the_confound():
    # the cells whose x is high have high y (confound 2.0), while within cells y falls with x (-0.5)
    df = _cells_panel(seed=1, datasets=8, seeds=5, within=-0.5, confound=3.0)
    res = stats.within_slope(df.y, df.x, df.cell, df.d)
    assert res.high < 0 and res.low < -0.5 < res.high
    additive = stats.fixed_effects(df.y, df.x, {"d": df.d, "v": df.v}, df.d, draws=200)
    assert additive.slope > 0  # the additive effects leave the dataset × variant confound in


def test_within_slope_bootstrap_is_the_brute_force_loop_over_resampled_clusters():
    df = _cells_panel(seed=2)
    res = stats.within_slope(df.y, df.x, df.cell, df.d, draws=60, seed=7)
    rng = np.random.default_rng(7)
    labels = sorted(df.d.astype(str).unique())
    boots = []
    for _ in range(60):
        parts = [df[df.d.astype(str) == labels[i]] for i in rng.integers(0, len(labels), len(labels))]
        sub = pd.concat(parts)
        g = sub.groupby("cell")
        xw, yw = sub.x - g.x.transform("mean"), sub.y - g.y.transform("mean")
        boots.append(np.sum(xw * yw) / np.sum(xw**2))
    assert res.draws == 60
    assert (res.boot_low, res.boot_high) == pytest.approx(tuple(np.percentile(boots, [2.5, 97.5])), rel=1e-10)
    assert res.boot_se == pytest.approx(np.std(boots, ddof=1), rel=1e-10)


def test_within_slope_refuses_what_it_cannot_estimate():
    df = _cells_panel(seeds=2)
    with pytest.raises(ValueError, match="does not vary within any cell"):
        stats.within_slope(df.y, df.groupby("cell").x.transform("mean"), df.cell, df.d)
    with pytest.raises(ValueError, match="lies in two clusters"):
        stats.within_slope(df.y, df.x, df.cell, df.s)
    with pytest.raises(ValueError, match=r"cell must have shape \(36,\)"):
        stats.within_slope(df.y, df.x, df.cell[:3], df.d)


def test_dose_response_matches_statsmodels_fit_contrasts_and_lack_of_fit():
    import statsmodels.api as sm
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(4)
    w = np.repeat([-3.0, -1.0, -0.3, 0.0, 0.3, 1.0, 3.0], 3)
    y = 0.1 * w - 0.05 * w**2 + 0.3 * rng.normal(size=len(w))
    res = stats.dose_response(y, w)
    fit = sm.OLS(y, np.vander(w, 3, increasing=True)).fit()
    np.testing.assert_allclose(res.coef, fit.params, rtol=1e-10)
    np.testing.assert_allclose(res.se, fit.bse, rtol=1e-10)
    assert res.df == 18 and res.sigma == pytest.approx(np.sqrt(fit.scale), rel=1e-12)
    assert res.doses.tolist() == [-3.0, -1.0, -0.3, 0.3, 1.0, 3.0]
    for dose, diff, se, p, lo in zip(res.doses, res.diff, res.diff_se, res.p, res.low):
        test = fit.t_test(np.array([[0.0, dose, dose**2]]))  # ŷ(dose) − ŷ(0)
        assert (diff, se, p) == pytest.approx((float(test.effect[0]), float(test.sd[0, 0]), float(test.pvalue)),
                                              rel=1e-9)
        assert lo == pytest.approx(float(test.conf_int()[0, 0]), rel=1e-9)
    frame = pd.DataFrame({"y": y, "w": w})
    table = anova_lm(smf.ols("y ~ w + I(w**2)", frame).fit(), smf.ols("y ~ C(w)", frame).fit())
    assert (res.lack_f, res.lack_p) == pytest.approx((table.F[1], table["Pr(>F)"][1]), rel=1e-9)
    assert res.lack_df == (4, 14)
    assert res.pure_sd == pytest.approx(np.sqrt(table.ssr[1] / 14), rel=1e-12)


def test_dose_response_refuses_bad_designs():
    w = np.repeat([-1.0, 0.0, 1.0], 2)
    with pytest.raises(ValueError, match="control 0.5 is not one of the doses"):
        stats.dose_response(np.arange(6.0), w, control=0.5)
    with pytest.raises(ValueError, match=r"degree must be an integer in \[1, 2\]"):
        stats.dose_response(np.arange(6.0), w, degree=3)
    assert np.isnan(stats.dose_response(np.arange(6.0), w, degree=2).lack_f)  # as many coefficients as arms


def test_dunnett_is_scipys_with_pooled_t_and_the_critical_value_matches_it():
    rng = np.random.default_rng(5)
    control, arms = rng.normal(size=4), [rng.normal(m, 1.0, size=4) for m in (0.0, 1.5, -2.0)]
    res = stats.dunnett(arms, control, seed=1)
    pooled = np.sqrt(sum(np.sum((a - a.mean()) ** 2) for a in [control, *arms]) / res.df)
    np.testing.assert_allclose(res.t, res.diff / (pooled * np.sqrt(0.5)), rtol=1e-10)
    assert res.df == 12
    # independent route: the level at which the quadrature's critical value is |t| is the p-value, up to scipy's
    # quasi-Monte Carlo error
    for t, p in zip(res.t, res.p):
        assert p == pytest.approx(_dunnett_p(3, 12, abs(t)), abs=2e-3)
    with pytest.raises(ValueError, match="at least one arm"):
        stats.dunnett([], control)


def _dunnett_p(k, df, t):
    """P(max |T_i| > t): the alpha whose critical value is t, by bisection on the library's critical value."""
    from scipy import optimize
    return optimize.brentq(lambda a: stats.dunnett_critical(k, df, a) - t, 1e-9, 1 - 1e-9, xtol=1e-5)


@pytest.mark.parametrize(("k", "df"), [(6, 14), (3, 8), (2, None)])
def test_dunnett_critical_is_where_scipys_dunnett_p_equals_alpha(k, df):
    c = stats.dunnett_critical(k, df)
    n = 3 if df is None else (df + k + 1) // (k + 1)
    groups = np.random.default_rng(0).normal(size=(k + 1, n if df is not None else 400))
    groups -= groups.mean(1, keepdims=True)
    pooled = np.sqrt(np.sum(groups**2) / (groups.size - k - 1))
    arms = [g.copy() for g in groups[1:]]
    arms[0] += c * pooled * np.sqrt(2 / groups.shape[1])  # t of the first arm = c exactly
    res = sps.dunnett(*arms, control=groups[0], random_state=3)
    assert res.statistic[0] == pytest.approx(c, rel=1e-9)
    assert res.pvalue[0] == pytest.approx(0.05, abs=1.5e-3 if df is not None else 3e-3)


def test_dunnett_critical_special_cases():
    assert stats.dunnett_critical(1, 10) == pytest.approx(sps.t.ppf(0.975, 10), rel=1e-12)
    assert stats.dunnett_critical(1) == pytest.approx(1.959964, rel=1e-6)
    assert stats.dunnett_critical(6) == pytest.approx(2.567, abs=5e-4)  # Dunnett's (1964) table: 2.57
    assert stats.dunnett_critical(6, 14) > stats.dunnett_critical(6, 60) > stats.dunnett_critical(6)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        stats.dunnett_critical(0, 10)


def test_dunnett_power_is_the_rejection_rate_of_the_simulated_test():
    k, n, sd, delta = 4, 5, 1.0, 1.6
    rng = np.random.default_rng(6)
    sims = 20000
    data = rng.normal(size=(sims, k + 1, n)) * sd
    data[:, 1] += delta
    means = data.mean(2)
    pooled = np.sqrt(np.sum((data - means[..., None]) ** 2, (1, 2)) / ((k + 1) * (n - 1)))
    t = (means[:, 1] - means[:, 0]) / (pooled * np.sqrt(2 / n))
    rate = np.mean(np.abs(t) > stats.dunnett_critical(k, (k + 1) * (n - 1)))
    power = stats.dunnett_power(delta, sd, n, k)
    assert rate == pytest.approx(power, abs=4 * np.sqrt(power * (1 - power) / sims))


def test_seeds_per_arm_is_the_first_n_with_the_power():
    delta, sd = np.log(1.2), 0.344
    n = stats.seeds_per_arm(delta, sd, 1)
    assert stats.dunnett_power(delta, sd, n, 1) >= 0.8 > stats.dunnett_power(delta, sd, n - 1, 1)
    assert n == 57  # the pooled two-sample t-test; with 6 arms against one control Dunnett asks for more
    assert stats.seeds_per_arm(delta, sd, 6) > n
    with pytest.raises(ValueError, match="more than max_n"):
        stats.seeds_per_arm(1e-3, 1.0, 1, max_n=100)


def test_variance_components_match_statsmodels_reml_on_a_balanced_design():
    import statsmodels.api as sm

    df = _cells_panel(seed=8, datasets=7, variants=3, seeds=3)
    res = stats.variance_components(df.y, {"d": df.d, "v": df.v}, df.cell)
    fixed = np.column_stack([np.ones(len(df)), pd.get_dummies(df.d, drop_first=True, dtype=float),
                             pd.get_dummies(df.v, drop_first=True, dtype=float)])
    reml = sm.MixedLM(df.y.values, fixed, groups=df.cell.values).fit(reml=True)
    assert res.within == pytest.approx(reml.scale, rel=1e-4)
    assert res.cell == pytest.approx(float(np.asarray(reml.cov_re)[0, 0]), rel=1e-4)
    assert (res.within_df, res.residual_df) == (42, 63 - 9)
    # one row per cell: the seed variance comes from elsewhere, and the cell variance is what is left of the
    # additive fit's residual variance (balanced: tr(ZᵀMZ) = the residual df)
    one = df[df.s == 0]
    res1 = stats.variance_components(one.y, {"d": one.d, "v": one.v}, one.cell, within=(0.3, 6))
    assert res1.cell == pytest.approx(res1.residual - 0.3, rel=1e-10) and res1.within_df == 6
    with pytest.raises(ValueError, match="no cell has two rows"):
        stats.variance_components(one.y, {"d": one.d, "v": one.v}, one.cell)


def test_variance_components_are_unbiased_on_an_unbalanced_design():
    # cells of 1 to 4 seeds: the method of moments is unbiased where a balanced shortcut (tr(ZᵀMZ) = residual df)
    # is not; the mean over 300 simulated designs lands on the true components
    rng = np.random.default_rng(14)
    seeds = rng.integers(1, 5, size=40)
    cell = np.repeat(np.arange(40), seeds)
    d, v = cell // 4, cell % 4
    est = []
    for _ in range(300):
        y = (rng.normal(size=10)[d] + rng.normal(size=4)[v] + 1.5 * rng.normal(size=40)[cell]
             + 0.5 * rng.normal(size=len(cell)))
        res = stats.variance_components(y, {"d": d, "v": v}, cell)
        est.append((res.within, res.cell))
    within, cell_var = np.mean(est, 0)
    assert within == pytest.approx(0.25, rel=0.03)
    assert cell_var == pytest.approx(2.25, rel=0.06)


def test_variance_bound_covers_with_its_confidence():
    rng = np.random.default_rng(9)
    df, sims = 6, 40000
    s2 = rng.chisquare(df, sims) / df  # estimates of σ² = 1
    upper = np.array([stats.variance_bound(v, df, 0.8) for v in s2[:2000]])
    assert np.mean(upper >= 1.0) == pytest.approx(0.8, abs=0.03)
    assert stats.variance_bound(1.0, df, 0.8) == pytest.approx(df / sps.chi2.ppf(0.2, df), rel=1e-12)
    assert stats.variance_bound(1.0, df, 0.8, upper=False) == pytest.approx(df / sps.chi2.ppf(0.8, df), rel=1e-12)
    with pytest.raises(ValueError, match="confidence in"):
        stats.variance_bound(1.0, 6, 1.5)


@pytest.mark.parametrize("seeds", [1, 3])
def test_slope_variance_is_the_exact_variance_of_each_estimator(seeds):
    df = _cells_panel(seed=10, datasets=6, variants=3, seeds=seeds)
    n, cell_var, within_var = len(df), 0.7, 0.3
    factors = np.column_stack([np.ones(n), pd.get_dummies(df.d, drop_first=True, dtype=float),
                               pd.get_dummies(df.v, drop_first=True, dtype=float)])
    z = pd.get_dummies(df.cell, dtype=float).values
    x = df.x.values
    x_add = x - factors @ np.linalg.lstsq(factors, x, rcond=None)[0]
    means = (z.T @ x_add) / z.sum(0)
    a, w = float(np.sum(means**2)), float(np.sum((x - z @ ((z.T @ x) / z.sum(0))) ** 2))
    cov = cell_var * z @ z.T + within_var * np.eye(n)
    additive = x_add @ cov @ x_add / (x_add @ x_add) ** 2  # OLS with additive effects, written out
    assert stats.slope_variance("additive", a, w, cell_var, within_var, seeds) == pytest.approx(additive, rel=1e-10)
    inv = np.linalg.inv(cov)
    design = np.column_stack([x, factors])
    gls = np.linalg.inv(design.T @ inv @ design)[0, 0]  # GLS with the true components
    assert stats.slope_variance("mixed", a, w, cell_var, within_var, seeds) == pytest.approx(gls, rel=1e-9)
    if seeds > 1:
        assert stats.slope_variance("within", a, w, cell_var, within_var, seeds) == pytest.approx(within_var / w)
        # and by simulation: the within estimator's spread over draws of y
        rng = np.random.default_rng(11)
        draws = rng.multivariate_normal(np.zeros(n), cov, size=4000)
        slopes = [stats.within_slope(y, x, df.cell, draws=2).slope for y in draws[:400]]
        assert np.var(slopes, ddof=1) == pytest.approx(within_var / w, rel=0.2)
    with pytest.raises(ValueError, match="analysis must be"):
        stats.slope_variance("pooled", a, w, cell_var, within_var, seeds)

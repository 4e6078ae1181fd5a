"""experiments/t6_design.py, the power analysis that picks the T6 and intervention designs: it reproduces the
study issue's re-analysis from the committed pilot, its resampling simulation holds its size under the null
and agrees with its formula where the formula's assumptions hold, and it writes its tables and choice."""

import importlib.util
import shutil

import numpy as np
import pytest

from isojax import stats
from isojax.runs import results
from tests.conftest import ROOT

# Run in the float32 pass only: host-side numpy/scipy on committed tables, no dtype-specific path.
pytestmark = pytest.mark.float32_only

PILOT = ROOT / "full" / "tables"


def _design():
    spec = importlib.util.spec_from_file_location("t6_design", ROOT / "experiments" / "t6_design.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pilot(design):
    t6 = design._t6_rows(PILOT, "isoscore_last")
    seed_cells = {}
    for r in design._intervention_rows(PILOT, "isoscore_last"):
        if r["strength"] == 0.0:
            seed_cells.setdefault(r["data"], []).append((r["x"], r["y"]))
    return t6, seed_cells


def test_it_reproduces_the_issues_reanalysis_of_the_committed_pilot():
    design = _design()
    t6, seed_cells = _pilot(design)
    issue = design.issue_numbers(t6, seed_cells, boot_mde=0.44143498188529606)
    # the issue: 0.354 -> 0.318 from 1 to 10 seeds, 94% of the residual variance at the cell level, 0.14-0.15
    # with 3 seeds and 0.10 with 5 under cell effects, 64-99 datasets at 6 variants with one seed
    assert issue["additive_1"] == pytest.approx(0.354, abs=0.002)
    assert issue["additive_10"] == pytest.approx(0.318, abs=0.007)
    assert issue["seed_share"] == pytest.approx(0.06, abs=0.005)
    assert 0.14 <= issue["within_3"] <= 0.155 and issue["within_5"] == pytest.approx(0.10, abs=0.01)
    assert round(issue["datasets_ols"]) == 64 and 99 <= issue["datasets_boot"] <= 100
    # the one-seed additive MDE is the OLS slope's, 2.80 · se · x_resid_sd of the fit on the committed runs, to 1%
    # (the components come from the fit without the slope: 80 residual df instead of 79, and the slope's share)
    runs = results.read_table(PILOT / "trained_isotropy_runs.csv")
    factors = {"data": [r["data"] for r in runs], "variant": [f"{r['tokenizer']}|{r['arch']}" for r in runs]}
    fe = stats.fixed_effects(np.log([r["nmse"] for r in runs]), [r["isoscore_last"] for r in runs], factors,
                             factors["data"], draws=20)
    assert issue["additive_1"] == pytest.approx(stats.minimum_detectable_effect(fe.se) * fe.x_resid_sd, rel=0.01)


def test_the_seed_variance_rests_on_the_intervention_arms_and_their_df():
    design = _design()
    t6, seed_cells = _pilot(design)
    pilot = design.t6_pilot(t6, seed_cells, design.VARIANT_SETS[next(iter(design.VARIANT_SETS))])
    s = pilot["seeds"]
    assert s["df"] == 6 and s["cells"] == 3  # 3 datasets × (3 seeds − 1): the committed pilot's only replicates
    y = {k: np.array([p[1] for p in v]) for k, v in seed_cells.items()}  # log NMSE of the w = 0 runs
    pooled = sum(np.sum((v - v.mean()) ** 2) for v in y.values()) / 6
    assert s["var_y"] == pytest.approx(pooled, rel=1e-12)
    # the resampled deviations are scaled so that their mean square is the pooled variance (cells of 3 runs)
    assert np.mean(s["dx"] ** 2) == pytest.approx(s["var_x"], rel=1e-12)
    assert np.mean(s["dr"] ** 2) == pytest.approx(s["cv2"], rel=1e-12)
    # upper bounds for noise, lower for x's variation
    point, bound = design.components(pilot, "const", None), design.components(pilot, "const", 0.8)
    assert bound["seed_y"] > point["seed_y"] and bound["seed_x"] < point["seed_x"]
    assert bound["seed_y"] == pytest.approx(stats.variance_bound(point["seed_y"], 6, 0.8), rel=1e-12)


def test_the_resampling_holds_its_size_and_agrees_with_the_formula():
    design = _design()
    t6, seed_cells = _pilot(design)
    variants = design.VARIANT_SETS["4: bins, digits × decoder, encoder"]
    pilot = design.t6_pilot(t6, seed_cells, variants)
    unit = design.unit_sd(t6)
    size = design.simulated_power(pilot, "within", 33, 5, 0.0, "cv", 400, seed=5)
    assert size <= 0.09  # 0.05 ± 2.5 se at 400 draws; a test that rejects more often under the null is invalid
    mde = design.mde_per_sd(design.components(pilot, "cv", None), "within", 33, 4, 5, unit,
                            design.expected_df(pilot, "cv", 33))
    power = design.simulated_power(pilot, "within", 33, 5, mde / unit, "cv", 400, seed=6)
    assert 0.6 <= power <= 0.98
    # and the additive analysis, with one seed, at its own MDE
    mde_add = design.mde_per_sd(design.components(pilot, "const", None), "additive", 65, 4, 1, unit)
    assert 0.6 <= design.simulated_power(pilot, "additive", 65, 1, mde_add / unit, "const", 400, seed=7) <= 0.98


def test_cost_counts_deep_wide_runs_at_their_own_price():
    design = _design()
    cost = {"small": 10.0, "deep": 40.0, "eval": 2.0, "penalty": 1.5}
    six = design.VARIANT_SETS["6: bins, digits × decoder, encoder, deep-wide"]
    assert design.t6_cost(17, six, 3, cost) == pytest.approx(17 * 3 * (4 * 12.0 + 2 * 42.0) / 3600)


def test_main_writes_its_tables_and_picks_the_cheapest_design_that_meets_the_target(tmp_path, monkeypatch, capsys):
    design = _design()
    for name in ("trained_isotropy_runs.csv", "trained_isotropy_effects.csv", "intervention.csv",
                 "intervention_layers.csv"):
        shutil.copy(PILOT / name, tmp_path / name)
        shutil.copy(PILOT / f"{name}.json", tmp_path / f"{name}.json")
    sets = design.VARIANT_SETS
    monkeypatch.setattr(design, "VARIANT_SETS", {k: sets[k] for k in list(sets)[1:]})  # 4 and 2 variants
    monkeypatch.setattr(design, "DATASETS", (17, 65))
    monkeypatch.setattr(design, "SEEDS", (1, 3, 5))
    monkeypatch.setattr(design, "ARMS", {"3: w = 0, ±1": (-1.0, 0.0, 1.0)})
    chosen = design.main(["--pilot", str(tmp_path), "--sims", "40"])
    rows = results.read_table(tmp_path / "t6_design.csv")
    assert len(rows) == 2 * 2 * (2 * 3 + 2)  # variant sets × datasets × (additive, mixed at 3 seeds; within at 2)
    met = [r for r in rows if r["meets"]]
    assert chosen["t6"] is not None and chosen["t6"]["hours"] == min(r["hours"] for r in met if r["n_variants"] >= 4)
    assert all(r["mde_sd_bound"] <= np.log(1.2) and r["analysis"] != "mixed" for r in met)
    comps = results.read_table(tmp_path / "t6_design_components.csv")
    assert {r["df"] for r in comps if r["component"].startswith("seed")} == {6}
    iv = results.read_table(tmp_path / "intervention_design.csv")
    assert {r["data"] for r in iv} == {"gp:seasonality_24", "real:sunspots", "teacher"}
    for r in iv:
        assert stats.dunnett_power(np.log(1.2), r["sd_bound"], r["seeds_per_arm"], 2) >= 0.8
        assert stats.dunnett_power(np.log(1.2), r["sd_bound"], r["seeds_per_arm"] - 1, 2) < 0.8
    assert "T6 + intervention" in capsys.readouterr().out


def test_a_pilot_without_replicated_runs_is_refused(tmp_path):
    design = _design()
    shutil.copy(PILOT / "trained_isotropy_runs.csv", tmp_path)
    shutil.copy(PILOT / "trained_isotropy_runs.csv.json", tmp_path)
    with pytest.raises(ValueError, match="no replicated cell"):
        design.main(["--pilot", str(tmp_path), "--sims", "0"])


def test_a_new_pilot_with_seeds_and_fewer_variants_is_read_as_it_is(tmp_path, monkeypatch, capsys):
    # a --quick-like pilot: 6 datasets × 4 variants (no deep-wide) × 2 seeds, no intervention tables; the seed
    # variance comes from its own replicated cells (1 df each), and the 6-variant set is left out
    design = _design()
    rng = np.random.default_rng(0)
    runs = [r for r in results.read_table(PILOT / "trained_isotropy_runs.csv")
            if r["arch"] != "decoder-deep-wide" and r["data"] in ("gp:rbf_0.1", "gp:seasonality_24", "gp:white_1",
                                                                   "real:sunspots", "real:nile", "teacher")]
    rows = [{**r, "seed": s, "nmse": r["nmse"] * float(np.exp(0.3 * rng.normal())),
             "isoscore_last": r["isoscore_last"] * (1 + 0.25 * rng.normal())} for s in (0, 1) for r in runs]
    results.save_table(rows, tmp_path / "trained_isotropy_runs.csv", {"name": "pilot"})
    monkeypatch.setattr(design, "DATASETS", (17, 33))
    monkeypatch.setattr(design, "SEEDS", (2, 5))
    design.main(["--pilot", str(tmp_path), "--sims", "20", "--unit", "0.0543"])
    out = capsys.readouterr().out
    assert "6: bins, digits × decoder, encoder, deep-wide: the pilot trains all of it on fewer than 3" in out
    comps = results.read_table(tmp_path / "t6_design_components.csv")
    seed_df = {r["variants"][0]: r["df"] for r in comps if r["component"].startswith("seed")}
    assert seed_df == {"4": 24, "2": 12}  # one df per replicated cell of the set
    assert {r["variants"] for r in results.read_table(tmp_path / "t6_design.csv")} == {
        "4: bins, digits × decoder, encoder", "2: bins, digits × decoder"}
    assert results.read_sidecar(tmp_path / "t6_design.csv")["config"]["unit_sd"] == 0.0543

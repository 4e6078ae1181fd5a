"""Every experiment script of experiments/ runs end to end at its tiny size; its tables are checked for
columns, finite values and the orderings the theory predicts; every figure can be redrawn from the tables
alone; the same seed gives the same table."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import runner as experiment
from isojax.runs import results
from tests.conftest import ROOT, subprocess_env

# Run in the float32 pass only (README: "Tests"): end to end, with no dtype-specific path of its own.
pytestmark = pytest.mark.float32_only


def _table(out, name):
    rows = results.read_table(out / "results" / name)
    assert rows, name
    return rows


def _floats(rows, col):
    vals = np.array([float(r[col]) for r in rows])
    assert np.all(np.isfinite(vals)), col
    return vals


def _measures_vs_knob(out):
    rows = _table(out, "measures_vs_knob_tiny.csv")
    cone = sorted((float(r["knob"]), float(r["cosine"])) for r in rows if r["family"] == "cone")
    assert cone[0][1] < 0.1 < cone[-1][1]  # a common mean vector raises the raw cosine
    assert min(_floats(rows, "isoscore")) >= 0.0


def _partition_function(out):
    rows = _table(out, "partition_vs_knob_tiny.csv")
    cone = sorted((float(r["knob"]), float(r["log_i"])) for r in rows if r["kind"] == "cone")
    assert cone[-1][1] < cone[0][1]  # I(Φ) falls with cone strength


def _shift_invariance(out):
    rows = _table(out, "shift_invariance.csv")
    for r in rows:
        assert float(r["stable_float32"]) <= 16 * float(r["eps32_scale"])
    assert any(math.isinf(float(r["naive_float32"])) for r in rows)


def _gradient_structure(out):
    rows = _table(out, "gradient_structure.csv")
    assert max(_floats(rows, "t3a_rel_over_eps")) < 1e4
    drift = _table(out, "mean_embedding_drift.csv")[-1]
    assert float(drift["SGD"]) < 1e-3 * float(drift["Adam"])


def _guarantee(out):
    rows = _table(out, "guarantee.csv")
    assert max(_floats(rows, "ratio")) <= 1.0  # T5a holds at every checkpoint


def _fisher_spectrum(out):
    rows = _table(out, "fisher_spectrum_quick.csv")  # tiny and quick share their sizes
    eig = np.array([[float(r[f"eig_{j}"]) for j in range(16)] for r in rows])
    assert np.all(np.diff(eig, axis=1) <= 1e-6)


def _trained_isotropy(out):
    runs = _table(out, "trained_isotropy_runs.csv")
    assert np.all(_floats(runs, "nmse") >= 0)
    assert {r["data"] for r in runs} == {"gp:rbf_0.1", "real:nile", "teacher"}
    assert {r["tokenizer"] for r in runs} == {"bins", "digits"}
    for r in runs:  # every run measured on the same rows, with its interval and the isotropic null of that shape
        assert r["isoscore_last_low"] <= r["isoscore_last"] <= r["isoscore_last_high"]
        assert 0 < r["isoscore_last_null"] <= 1 and r["isoscore_last_null"] == runs[0]["isoscore_last_null"]
        assert r["isoscore_last_rel"] == pytest.approx(r["isoscore_last"] / r["isoscore_last_null"], rel=1e-9)
    effects = _table(out, "trained_isotropy_effects.csv")
    within = [r for r in effects if r["analysis"] == "within cell" and r["outcome"] == "log nmse"]
    assert {r["measure"] for r in within} == {"isoscore_last", "clustered_cosine_last", "isoscore_mean",
                                              "isoscore_last_rel"}
    # the same rows for every run, so one null: the null-corrected slope per sd is the raw one
    by = {r["measure"]: r for r in within}
    assert by["isoscore_last_rel"]["slope_per_sd"] == pytest.approx(by["isoscore_last"]["slope_per_sd"], rel=1e-6)
    for r in within:  # the design's analysis: a CR2 interval around the slope, clustered by dataset
        assert r["ci_low"] <= r["slope"] <= r["ci_high"] and r["clusters"] == 3 and r["mde"] > 0
    skill = {r["variant"]: r for r in _table(out, "trained_isotropy_skill.csv")}
    assert skill["all runs"]["runs"] == len(runs) and 0 <= skill["all runs"]["beat_seasonal_naive"] <= len(runs)
    spearman = _table(out, "trained_isotropy_spearman.csv")
    assert {r["scope"] for r in spearman} == {"pooled over runs", "within dataset, mean"}
    for r in spearman:
        assert -1.0 <= float(r["ci_low"]) <= float(r["spearman_rho"]) + 1e-9 <= float(r["ci_high"]) + 2e-9 <= 1.0 + 2e-9


def _intervention(out):
    rows = _table(out, "intervention.csv")
    _floats(rows, "nmse"), _floats(rows, "isoscore_mean")
    tested = [r for r in _table(out, "intervention_effects.csv") if r["strength"] != 0.0]
    assert len(tested) == 4  # one dataset, two measures, two pushes against w = 0
    assert all(0 <= float(r["p_dunnett"]) <= 1 and float(r["diff_low"]) <= float(r["diff_vs_0"]) for r in tested)
    (dose,) = [r for r in _table(out, "intervention_dose.csv") if r["measure"] == "log_nmse"]
    assert dose["arms"] == 3 and dose["b1_low"] <= dose["b1"] <= dose["b1_high"]
    # a second run reuses the cached trained models and gives the same table
    first = (out / "results" / "intervention.csv").read_text()
    models = sorted((out / "results" / "models").glob("*.safetensors"))
    assert models
    experiment.run("intervention", out, "tiny", seed=0)
    assert (out / "results" / "intervention.csv").read_text() == first
    assert sorted((out / "results" / "models").glob("*.safetensors")) == models


def _minilm_isotropy(out):
    rows = _table(out, "minilm_isotropy.csv")
    assert {r["text"] for r in rows} == {"numeric strings", "English sentences"}
    _floats(rows, "isoscore")


def _posthoc_transforms(out):
    rows = _table(out, "posthoc_transforms_tiny.csv")
    assert {r["transform"] for r in rows} == set(experiment.load("posthoc_transforms").ORDER)
    for name in ("isoscore", "cosine", "cosine_centred", "clustered_cosine", "lid", "top1_variance"):
        _floats(rows, name)
    by = {(r["layer"], r["transform"]): r for r in rows}
    for layer in {r["layer"] for r in rows if r["layer"] >= 0}:
        # a mean estimated on other strings still removes part of the common vector
        assert by[layer, "centre"]["cosine"] < by[layer, "none"]["cosine"]
        # ZCA and PCA whitening differ by a rotation, which no measure sees (up to float32 rounding: at the tiny
        # size they are fitted on fewer states than dimensions, and the held-out states' norms span decades)
        for name, rel in (("isoscore", 1e-3), ("cosine", 1e-3), ("cosine_centred", 1e-3), ("lid", 0.05)):
            assert by[layer, "zca"][name] == pytest.approx(by[layer, "pca"][name], rel=rel, abs=1e-4), name
        assert by[-1, "gaussian"]["isoscore"] > by[layer, "none"]["isoscore"]  # the null is more isotropic


TABLE_CHECKS = {"shift_invariance": _shift_invariance, "fisher_spectrum": _fisher_spectrum,
                "gradient_structure": _gradient_structure, "partition_function": _partition_function,
                "measures_vs_knob": _measures_vs_knob, "guarantee": _guarantee, "trained_isotropy": _trained_isotropy,
                "intervention": _intervention, "minilm_isotropy": _minilm_isotropy,
                "posthoc_transforms": _posthoc_transforms}


def test_every_experiment_has_table_checks():
    assert sorted(TABLE_CHECKS) == sorted(experiment.names())


@pytest.mark.parametrize("name", sorted(TABLE_CHECKS))
def test_experiment_runs_its_tables_have_the_expected_orderings_and_its_figures_redraw(tmp_path, name):
    # one test per experiment (parallel workers share them out), each with the checks on its own tables
    paths = experiment.run(name, tmp_path, "tiny", seed=0)
    assert paths and all(p.exists() and p.stat().st_size > 1000 for p in paths), name
    assert {p.suffix for p in paths} == {".png", ".pdf"}
    TABLE_CHECKS[name](tmp_path)
    # every figure can be redrawn from the tables alone, and comes out the same
    before = {p.name: p.read_bytes() for p in (tmp_path / "figures").glob("*.png")}
    for path in (tmp_path / "figures").iterdir():
        path.unlink()
    experiment.run(name, tmp_path, "tiny", compute=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "figures").glob("*.png")} == before


@pytest.mark.parametrize("family, inputs", [("gpt2", ["12 34 56 78 90 12 34", "3 1 4 1 5 9 2 6 5"] * 4),
                                            ("chronos", [np.sin(np.arange(40) / 3.0) + i for i in range(8)])])
def test_posthoc_transforms_work_on_any_loaded_checkpoint(family, inputs):
    from isojax import pretrained

    script = experiment.load("posthoc_transforms")
    fitting, measured = script.hidden_halves(pretrained.load(ROOT / "tests" / "golden" / family), inputs, 60, 40)
    assert fitting.shape[1:] == (60, 32) and measured.shape[1:] == (40, 32)
    rows, _ = script.transform_rows(fitting, measured, layers=(2,), seed=0)
    assert [r["transform"] for r in rows] == [t for t in script.ORDER if t != "gaussian"] + ["gaussian"]
    assert all(np.isfinite(r["isoscore"]) for r in rows)


def test_same_seed_same_table(tmp_path):
    for d in ("a", "b"):
        experiment.run("measures_vs_knob", tmp_path / d, "tiny", seed=3)
    a = (tmp_path / "a" / "results" / "measures_vs_knob_tiny.csv").read_text()
    assert a == (tmp_path / "b" / "results" / "measures_vs_knob_tiny.csv").read_text()


def test_unknown_experiment_and_size():
    with pytest.raises(ValueError, match="experiment must be one of"):
        experiment.load("nope")
    with pytest.raises(ValueError, match="size must be one of"):
        experiment.run("shift_invariance", Path("unused"), "huge")


def test_every_script_has_sizes_compute_plot_and_a_docstring():
    for name in experiment.names():
        module = experiment.load(name)
        assert module.__doc__ and set(module.SIZES) == set(experiment.SIZE_NAMES), name
        for fn in (module.compute, module.plot):
            assert fn.__doc__, f"{name}.{fn.__name__}"


def test_script_runs_from_the_command_line(tmp_path):
    script = ROOT / "experiments" / "shift_invariance.py"
    env = subprocess_env()
    done = subprocess.run([sys.executable, str(script), "--tiny", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "figures" / "shift_invariance.png").exists()
    (tmp_path / "figures" / "shift_invariance.png").unlink()
    done = subprocess.run([sys.executable, str(script), "--plot-only", "--tiny", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and (tmp_path / "figures" / "shift_invariance.png").exists()


def test_reproduce_outside_a_checkout_says_so(tmp_path, monkeypatch):
    import isojax
    from isojax.cli import reproduce

    monkeypatch.setattr(isojax, "__file__", str(tmp_path / "site-packages" / "isojax" / "__init__.py"))
    with pytest.raises(ValueError, match="checkout of the isojax repository"):
        reproduce.find_root(tmp_path)
    monkeypatch.undo()
    assert reproduce.study_runner() is experiment  # from a checkout: this folder's runner


def test_parallel_reproduce_writes_the_same_tables_as_serial(tmp_path):
    # two experiments in two child processes: the same table bytes, figures and timings as one after another
    only = ["shift_invariance", "fisher_spectrum"]
    serial = experiment.reproduce(tmp_path / "serial", "tiny", only, log=lambda line: None, jobs=1)
    lines = []
    parallel = experiment.reproduce(tmp_path / "parallel", "tiny", only, log=lines.append, jobs=2)
    assert [p.relative_to(tmp_path / "parallel") for p in parallel] == \
        [p.relative_to(tmp_path / "serial") for p in serial]
    assert sorted(line.split(":")[0] for line in lines) == sorted(only)
    tables = sorted(p.name for p in (tmp_path / "serial" / "results").glob("*.csv"))
    assert tables
    for name in tables:
        assert (tmp_path / "parallel" / "results" / name).read_bytes() == \
            (tmp_path / "serial" / "results" / name).read_bytes(), name
    timings = json.loads((tmp_path / "parallel" / "results" / "reproduce_timings.json").read_text())["tiny"]
    assert sorted(timings) == sorted(only)


def test_parallel_reproduce_reports_a_failing_experiment(tmp_path):
    blocker = tmp_path / "out"
    blocker.mkdir()
    (blocker / "results").write_text("a file where the results folder should be")
    with pytest.raises(RuntimeError, match="experiment .* failed"):
        experiment.reproduce(blocker, "tiny", ["shift_invariance", "fisher_spectrum"], log=lambda line: None,
                             jobs=2)


def test_parallel_reproduce_runs_the_slowest_known_experiment_first(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "reproduce_timings.json").write_text(json.dumps(
        {"tiny": {"shift_invariance": {"seconds": 1.0}, "guarantee": {"seconds": 9.0}}}))
    order = experiment._slowest_first(tmp_path, "tiny", ["shift_invariance", "fisher_spectrum", "guarantee"])
    assert order == ["guarantee", "shift_invariance", "fisher_spectrum"]
    # an experiment without a timing of its own: the training experiments still go first, by their estimate
    assert experiment._slowest_first(tmp_path, "tiny", ["shift_invariance", "trained_isotropy"]) == \
        ["trained_isotropy", "shift_invariance"]
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        experiment.reproduce(tmp_path, "tiny", ["shift_invariance"], jobs=0)

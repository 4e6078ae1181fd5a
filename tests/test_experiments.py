"""Every experiment script of experiments/ runs end to end at its tiny size; its tables are checked for
columns, finite values and the orderings the theory predicts; every figure can be redrawn from the tables
alone; the same seed gives the same table."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isojax import experiment, results
from tests.conftest import ROOT, subprocess_env


def _table(out, name):
    rows = results.read_table(out / "results" / name)
    assert rows, name
    return rows


def _floats(rows, col):
    vals = np.array([float(r[col]) for r in rows])
    assert np.all(np.isfinite(vals)), col
    return vals


def test_every_experiment_runs_and_its_tables_have_the_expected_orderings(tmp_path):
    # one test, so that parallel workers never split the experiments from the checks on their tables
    out = tmp_path
    for name in experiment.names():
        paths = experiment.run(name, out, "tiny", seed=0)
        assert paths and all(p.exists() and p.stat().st_size > 1000 for p in paths), name
        assert {p.suffix for p in paths} == {".png", ".pdf"}

    rows = _table(out, "measures_vs_knob_tiny.csv")
    cone = sorted((float(r["knob"]), float(r["cosine"])) for r in rows if r["family"] == "cone")
    assert cone[0][1] < 0.1 < cone[-1][1]  # a common mean vector raises the raw cosine
    assert min(_floats(rows, "isoscore")) >= 0.0

    rows = _table(out, "partition_vs_knob_tiny.csv")
    cone = sorted((float(r["knob"]), float(r["log_i"])) for r in rows if r["kind"] == "cone")
    assert cone[-1][1] < cone[0][1]  # I(Φ) falls with cone strength

    rows = _table(out, "shift_invariance.csv")
    for r in rows:
        assert float(r["stable_float32"]) <= 16 * float(r["eps32_scale"])
    assert any(math.isinf(float(r["naive_float32"])) for r in rows)

    rows = _table(out, "gradient_structure.csv")
    assert max(_floats(rows, "t3a_rel_over_eps")) < 1e4
    drift = _table(out, "mean_embedding_drift.csv")[-1]
    assert float(drift["SGD"]) < 1e-3 * float(drift["Adam"])

    rows = _table(out, "guarantee.csv")
    assert max(_floats(rows, "ratio")) <= 1.0  # T5a holds at every checkpoint

    rows = _table(out, "fisher_spectrum_quick.csv")  # tiny and quick share their sizes
    eig = np.array([[float(r[f"eig_{j}"]) for j in range(16)] for r in rows])
    assert np.all(np.diff(eig, axis=1) <= 1e-6)

    runs = _table(out, "trained_isotropy_runs.csv")
    assert np.all(_floats(runs, "nmse") >= 0)
    assert {r["data"] for r in runs} == {"gp:rbf_0.1", "real:nile", "teacher"}
    assert {r["tokenizer"] for r in runs} == {"bins", "digits"}
    spearman = _table(out, "trained_isotropy_spearman.csv")
    assert {r["scope"] for r in spearman} == {"pooled over runs", "within dataset, mean"}
    for r in spearman:
        assert -1.0 <= float(r["ci_low"]) <= float(r["spearman_rho"]) + 1e-9 <= float(r["ci_high"]) + 2e-9 <= 1.0 + 2e-9

    # every figure can be redrawn from the tables alone, and comes out the same
    before = {p.name: p.read_bytes() for p in (out / "figures").glob("*.png")}
    for path in (out / "figures").iterdir():
        path.unlink()
    for name in experiment.names():
        experiment.run(name, out, "tiny", compute=False)
    assert {p.name: p.read_bytes() for p in (out / "figures").glob("*.png")} == before

    rows = _table(out, "intervention.csv")
    _floats(rows, "nmse"), _floats(rows, "isoscore_mean")

    # a second run reuses the cached trained models and gives the same table
    first = (out / "results" / "intervention.csv").read_text()
    models = sorted((out / "results" / "models").glob("*.safetensors"))
    assert models
    experiment.run("intervention", out, "tiny", seed=0)
    assert (out / "results" / "intervention.csv").read_text() == first
    assert sorted((out / "results" / "models").glob("*.safetensors")) == models

    rows = _table(out, "minilm_isotropy.csv")
    assert {r["text"] for r in rows} == {"numeric strings", "English sentences"}
    _floats(rows, "isoscore")


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
    monkeypatch.setattr(experiment, "__file__", str(tmp_path / "site-packages" / "isojax" / "experiment.py"))
    with pytest.raises(ValueError, match="checkout of the isojax repository"):
        experiment.find_root(tmp_path)

"""Every experiment runs end to end at a tiny size; its tables are checked for columns, finite values and
the orderings the theory predicts; the same seed gives the same table."""

import math

import numpy as np
import pytest

from isojax import experiments, sweep


def _table(out, name):
    rows = sweep.read_table(out / "results" / name)
    assert rows, name
    return rows


def _floats(rows, col):
    vals = np.array([float(r[col]) for r in rows])
    assert np.all(np.isfinite(vals)), col
    return vals


def test_every_experiment_runs_and_its_tables_have_the_expected_orderings(tmp_path):
    # one test, so that parallel workers never split the experiments from the checks on their tables
    out = tmp_path
    for name in experiments.NAMES:
        paths = experiments.get(name).run(out, quick=True, seed=0, tiny=True)
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

    rows = _table(out, "fisher_spectrum_quick.csv")
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

    # the by-layer and scatter figures can be redrawn from the tables alone
    from isojax.experiments import trained_isotropy

    for path in (out / "figures").glob("t6_*"):
        path.unlink()
    redrawn = trained_isotropy.replot(out)
    assert len(redrawn) == 8 and all(p.exists() for p in redrawn)

    rows = _table(out, "intervention.csv")
    _floats(rows, "nmse"), _floats(rows, "isoscore_mean")

    # a second run reuses the cached trained models and gives the same table
    first = (out / "results" / "intervention.csv").read_text()
    models = sorted((out / "results" / "models").glob("*.safetensors"))
    assert models
    experiments.get("intervention").run(out, quick=True, seed=0, tiny=True)
    assert (out / "results" / "intervention.csv").read_text() == first
    assert sorted((out / "results" / "models").glob("*.safetensors")) == models

    rows = _table(out, "minilm_isotropy.csv")
    assert {r["text"] for r in rows} == {"numeric strings", "English sentences"}
    _floats(rows, "isoscore")


def test_same_seed_same_table(tmp_path):
    for d in ("a", "b"):
        experiments.get("measures_vs_knob").run(tmp_path / d, seed=3, tiny=True)
    a = (tmp_path / "a" / "results" / "measures_vs_knob_tiny.csv").read_text()
    assert a == (tmp_path / "b" / "results" / "measures_vs_knob_tiny.csv").read_text()


def test_unknown_experiment():
    with pytest.raises(ValueError, match="experiment must be one of"):
        experiments.get("nope")


def test_within_dataset_spearman_removes_the_dataset_confound():
    from isojax.experiments import trained_isotropy as t6

    # within each dataset the more isotropic run forecasts better (ρ = -1), but the easy dataset is the more
    # isotropic one overall, so the pooled ρ is positive: only the within-dataset ρ sees the -1
    rows = [{"data": d, "iso": base + i, "nmse": scale * (3 - i)} for d, base, scale in (("a", 0, 1.0), ("b", 10, 100.0))
            for i in range(3)]
    rho, lo, hi, n = t6.within_dataset_spearman(rows, "iso")
    assert n == 2 and rho == lo == hi == -1.0
    assert t6.spearman_bootstrap([r["iso"] for r in rows], [r["nmse"] for r in rows])[0] > 0
    assert np.isnan(t6.within_dataset_spearman(rows[:3], "iso")[0])  # one dataset: no interval over datasets

"""Experiment sizes changed from the command line (experiments/runner.py: `--set`): checked against the keys and
types of the script's SIZES, run as a size of their own in OUT/custom/<name>_<label>/ (never over a standard
table), recorded in every sidecar; `python experiments/<name>.py --set` and `isojax reproduce --set`."""

import json

import pytest

from experiments import runner
from isojax import cli
from isojax.runs import results
from tests.conftest import ROOT

pytestmark = pytest.mark.float32_only


def test_parse_sets_types_each_value_as_the_standard_one():
    assert runner.parse_sets("fisher_spectrum", "tiny", ["vocab=64", "knobs=0,1.5"]) == \
        {"vocab": 64, "knobs": [0.0, 1.5]}
    assert runner.parse_sets("fisher_spectrum", "tiny", ["knobs=[0, 2]"]) == {"knobs": [0.0, 2.0]}  # JSON
    assert runner.parse_sets("fisher_spectrum", "tiny", {"vocab": 32}) == {"vocab": 32}  # from Python
    # a value equal to the standard one is no change: the standard size, its standard tables
    assert runner.parse_sets("fisher_spectrum", "tiny", ["vocab=256", "d=16"]) == {}
    assert runner.parse_sets("intervention", "tiny", ["strengths=-2,0", "datasets=real:nile,teacher"]) == \
        {"strengths": [-2.0, 0.0], "datasets": ["real:nile", "teacher"]}
    assert runner.parse_sets("trained_isotropy", "tiny", ['runs=[["real:nile", "bins", "decoder"]]']) == \
        {"runs": [("real:nile", "bins", "decoder")]}
    # a group of settings: the keys given replace the standard ones, the others stay
    standard = runner.load("intervention").SIZES["tiny"]["evaluation"]
    assert runner.parse_sets("intervention", "tiny", ['evaluation={"windows": 8}']) == \
        {"evaluation": {**standard, "windows": 8}}
    with pytest.raises(ValueError, match=r"evaluation has no \['window'\]; its keys:"):
        runner.parse_sets("intervention", "tiny", ['evaluation={"window": 8}'])
    with pytest.raises(ValueError, match=r"evaluation.windows must be an integer"):
        runner.parse_sets("intervention", "tiny", ['evaluation={"windows": 8.5}'])


@pytest.mark.parametrize("sets, match", [
    (["stepz=4"], r"fisher_spectrum has no size parameter 'stepz'; its parameters: \['d', 'knobs', 'vocab'\]"),
    (["vocab=4.5"], r"vocab must be an integer \(like 256\), got '4.5'"),
    (["vocab=0"], "vocab must be at least 1, got 0"),
    (["knobs=0,-1"], r"knobs must be non-negative, got \[0.0, -1.0\]"),
    (["knobs=0,,1"], "knobs must be a non-empty list"),
    (["knobs=0,nan"], "knobs must be a finite number"),
    (["knobs=[0, 1"], "knobs is not a JSON list"),
    (["vocab"], " must be KEY=VALUE, got 'vocab'"),
    (["vocab=8", "vocab=9"], "vocab is given twice"),
    ({"vocab": True}, r"vocab must be an integer"),
])
def test_parse_sets_refuses_what_the_script_does_not_take(sets, match):
    with pytest.raises(ValueError, match=rf"experiments/fisher_spectrum.py --set.*{match}"):
        runner.parse_sets("fisher_spectrum", "tiny", sets)


def test_every_size_parameter_of_the_study_can_be_set_to_its_own_values():
    for name in runner.names():
        module = runner.load(name)
        for size in runner.SIZE_NAMES:
            for key, value in module.SIZES[size].items():
                text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value).lower() \
                    if isinstance(value, bool) else str(value)
                assert runner.parse_sets(name, size, [f"{key}={text}"]) == {}, (name, size, key)


def test_a_changed_size_runs_in_a_folder_of_its_own_and_its_sidecars_say_so(tmp_path):
    # what a standard run left (stand-ins): a changed size must leave it alone
    standard = [tmp_path / "results" / name for name in ("fisher_spectrum_quick.csv", "fisher_spectrum.csv")]
    standard += [tmp_path / "figures" / name for name in ("fisher_spectrum.png", "fisher_spectrum.pdf")]
    for path in standard:
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"the standard {path.name}")
    paths = runner.run("fisher_spectrum", tmp_path, "tiny", sets=["vocab=32", "knobs=0,2"])
    folder = tmp_path / "custom" / "fisher_spectrum_tiny+knobs=0.0,2.0+vocab=32"
    assert paths == [folder / "figures" / "fisher_spectrum.png", folder / "figures" / "fisher_spectrum.pdf"]
    assert all(path.read_text() == f"the standard {path.name}" for path in standard)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(p.name for p in standard[:2])
    [table] = (folder / "results").glob("*.csv")
    rows = results.read_table(table)
    assert {r["vocab"] for r in rows} == {32} and sorted({r["knob"] for r in rows}) == [0.0, 2.0]
    meta = results.read_sidecar(table)
    assert meta["notes"] == {"size": "tiny", "set": {"vocab": 32, "knobs": [0.0, 2.0]},
                             "label": "tiny+knobs=0.0,2.0+vocab=32"}
    assert "tiny+knobs=0.0,2.0+vocab=32" not in runner.load("fisher_spectrum").SIZES  # removed after the run
    # the figures redraw from the changed size's tables alone
    (folder / "figures" / "fisher_spectrum.png").unlink()
    assert runner.run("fisher_spectrum", tmp_path, "tiny", compute=False, sets=["knobs=0,2", "vocab=32"]) == paths
    # a tagged script names its table after the changed size too
    assert runner.tag("quick") == "_quick"
    with runner._changed_size(runner.load("fisher_spectrum"), "tiny", {"vocab": 8}, "tiny+vocab=8"):
        assert runner.tag("tiny+vocab=8") == "_tiny+vocab=8"
    with pytest.raises(ValueError, match="size must be one of"):
        runner.tag("tiny+vocab=8")


def test_size_labels_stay_file_names():
    assert runner.size_label("quick", {"steps": 40}) == "quick+steps=40"
    long = runner.size_label("quick", {"datasets": ["gp:seasonality_24", "real:sunspots", "teacher"] * 3})
    assert long.startswith("quick+set-") and len(long) == len("quick+set-") + 8
    assert runner.size_label("quick", {"datasets": ["a b"]}).startswith("quick+set-")


def test_script_command_line_set_and_its_one_line_refusal(tmp_path, capsys):
    script = str(ROOT / "experiments" / "shift_invariance.py")
    assert runner.main(script, ["--tiny", "--set", "shifts=5", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "custom" / "shift_invariance_tiny+shifts=5"
    assert len(results.read_table(folder / "results" / "shift_invariance.csv")) == 5
    assert not (tmp_path / "results").exists()
    assert runner.main(script, ["--tiny", "--set", "shifts=five", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == ("experiments/shift_invariance.py: error: experiments/shift_invariance.py --set: shifts must be "
                   "an integer (like 29), got 'five'\n")


def test_isojax_reproduce_set(tmp_path, capsys):
    assert cli.main(["reproduce", "--only", "shift_invariance", "--set", "shift_invariance.norms=3",
                     "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    folder = tmp_path / "custom" / "shift_invariance_quick+norms=3"
    assert len(results.read_table(folder / "results" / "shift_invariance_kl.csv")) == 3
    assert not (tmp_path / "results" / "shift_invariance.csv").exists()
    timings = json.loads((tmp_path / "results" / "reproduce_timings.json").read_text())
    assert list(timings) == ["quick+norms=3"]  # not mixed with the standard size's timings
    for flags, message in [(["--set", "guarantee.steps=4"], "--set names ['guarantee'], which this run leaves out"),
                           (["--set", "steps=4"], "--set must be NAME.KEY=VALUE"),
                           (["--set", "shift_invariance.norms=-1"], "norms must be at least 1")]:
        assert cli.main(["reproduce", "--only", "shift_invariance", *flags, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("isojax reproduce: error: ") and message in err, err
    assert not (tmp_path / "x").exists()


# runpy runs the runner's module code as `__main__`, as the child does; the module itself is already imported
@pytest.mark.filterwarnings("ignore:'experiments.runner' found in sys.modules:RuntimeWarning")
def test_parallel_reproduce_passes_each_experiment_its_changes(tmp_path, monkeypatch):
    import runpy
    import subprocess
    import sys

    started, real_popen = [], subprocess.Popen

    class Stop(Exception):
        pass

    def popen(cmd, **kw):  # what each child would be started with; the first two are enough
        started.append(cmd[3:])
        if len(started) == 2:
            raise Stop
        return real_popen([sys.executable, "-c", "import time; time.sleep(60)"], **kw)

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(Stop):
        runner.reproduce(tmp_path, "tiny", ["shift_invariance", "fisher_spectrum"], log=print, jobs=2,
                         sets={"fisher_spectrum": ["vocab=32"]})
    assert sorted(started) == [["fisher_spectrum", "tiny", str(tmp_path.resolve()), "0", '{"vocab": 32}'],
                               ["shift_invariance", "tiny", str(tmp_path.resolve()), "0", "{}"]]
    # the child: `python -m experiments.runner NAME SIZE OUT SEED SETS` runs at the changed size
    monkeypatch.setattr(sys, "argv", ["runner.py", "shift_invariance", "tiny", str(tmp_path), "0", '{"shifts": 4}'])
    runpy.run_module("experiments.runner", run_name="__main__")
    folder = tmp_path / "custom" / "shift_invariance_tiny+shifts=4"
    assert len(results.read_table(folder / "results" / "shift_invariance.csv")) == 4

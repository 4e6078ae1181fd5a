import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import isojax
from isojax.runs import results, sweep
from tests import sweep_job
from tests.conftest import device_env

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only

ROOT = Path(__file__).resolve().parents[1]


def _run(out, mode="fast", devices=1, wait=True):
    env = device_env(devices)
    cmd = [sys.executable, str(ROOT / "tests" / "sweep_job.py"), str(out), mode]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_some_rows(out, proc, deadline=240):
    """Wait until some, not all, cells are on disk (the table of a run in progress)."""
    end = time.time() + deadline
    while time.time() < end and proc.poll() is None:
        if out.exists() and 0 < len(results.read_table(out)) < 16:
            return
        time.sleep(0.05)
    raise AssertionError("the run never had part of its cells on disk")


def _sweep(out, fn=sweep_job.cell, **kw):
    kw = {"seed": 3, "name": "test", "progress": False, "per_device": 4, **kw}
    return sweep.run_sweep(fn, sweep_job.GRID, out, **kw)


def test_same_table_on_1_and_8_devices(tmp_path):
    assert "1 devices" in _run(tmp_path / "one.csv", devices=1)
    assert "8 devices" in _run(tmp_path / "eight.csv", devices=8)
    # bit for bit: floats are written with a round-tripping repr
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "eight.csv").read_text()
    rows = results.read_table(tmp_path / "one.csv")
    assert [r["cell"] for r in rows] == list(range(16))


def test_sigkill_then_resume_finishes_every_cell_once(tmp_path):
    reference = tmp_path / "ref.csv"
    _run(reference)
    out = tmp_path / "killed.csv"
    proc = _run(out, mode="slow", wait=False)
    _wait_for_some_rows(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = results.read_table(out)
    assert 0 < len(partial) < 16
    _run(out, mode="slow")
    rows = results.read_table(out)
    assert sorted(r["cell"] for r in rows) == list(range(16))
    assert out.read_text() == reference.read_text()
    assert not out.with_name("killed.csv.lock").exists()


def test_second_writer_is_refused_at_once_and_sigint_leaves_a_resumable_table(tmp_path):
    reference = tmp_path / "ref.csv"
    _run(reference)
    out = tmp_path / "t.csv"
    proc = _run(out, mode="slow", wait=False)
    _wait_for_some_rows(out, proc)
    second = subprocess.run([sys.executable, str(ROOT / "tests" / "sweep_job.py"), str(out), "slow"],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert second.returncode != 0
    assert "TableLockedError" in second.stderr and f"{str(out)!r} is being written by another process" in second.stderr
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err  # KeyboardInterrupt raised by run_sweep, after the chunk was stored
    assert "interrupted" in err
    partial = results.read_table(out)
    assert 0 < len(partial) < 16 and out.read_text().endswith("\n")
    assert not out.with_name("t.csv.lock").exists()
    _run(out, mode="slow")
    assert out.read_text() == reference.read_text()


def test_same_seed_same_table_and_refuses_other_config(tmp_path):
    a = _sweep(tmp_path / "a.csv")
    b = _sweep(tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert len(a) == len(b) == 16
    meta = json.loads((tmp_path / "a.csv.json").read_text())
    assert meta["config"]["seed"] == 3 and meta["complete"] is True and "versions" in meta and "git_commit" in meta
    assert meta["config"]["cell_fn"]["qualname"] == "cell" and meta["config"]["isojax"] == isojax.__version__
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def other_cell(key, family, n, d, knob):  # another function under the same sweep name
        return sweep_job.cell(key, family, n, d, knob)

    with pytest.raises(ValueError, match="another configuration"):
        _sweep(tmp_path / "a.csv", seed=4)
    with pytest.raises(ValueError, match="another configuration"):
        _sweep(tmp_path / "a.csv", fn=other_cell)
    with pytest.raises(ValueError, match="another configuration"):
        _sweep(tmp_path / "a.csv", fn=sweep_job.slow_cell)
    # nothing written by a refused run: same files, same bytes, no lock file left
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def _module_cell(scale: str, helper: str = "SCALE * x"):
    """A cell function from a module of its own, with a constant and a recursive helper."""
    namespace = {"__name__": "fake_module"}
    exec(f"SCALE = {scale}\n"
         f"def helper(x, n=1):\n    return {helper} if n == 0 else helper(x, n - 1)\n"
         "def cell(key, family, n, d, knob):\n    return {'v': helper(knob)}\n", namespace)
    return namespace["cell"]


def test_cell_identity_follows_code_closure_module_helpers_and_version(tmp_path, monkeypatch):
    def make(scale):
        def cell(key, family, n, d, knob):
            return {"v": scale * knob + jax.random.normal(key)}
        return cell

    assert sweep.cell_identity(make(1.0)) == sweep.cell_identity(make(1.0))
    assert sweep.cell_identity(make(1.0)) != sweep.cell_identity(make(2.0))  # a closure value
    assert sweep.cell_identity(lambda k: k + 1) != sweep.cell_identity(lambda k: k + 2)  # a constant
    # the helpers and constants of the cell's own module that it uses, recursively
    assert sweep.cell_identity(_module_cell("1.0")) == sweep.cell_identity(_module_cell("1.0"))
    assert sweep.cell_identity(_module_cell("1.0")) != sweep.cell_identity(_module_cell("2.0"))
    assert sweep.cell_identity(_module_cell("1.0", "x * SCALE")) != sweep.cell_identity(_module_cell("1.0"))
    assert sweep.cell_identity(jax.jit(_module_cell("1.0"))) != sweep.cell_identity(jax.jit(_module_cell("2.0")))
    _sweep(tmp_path / "a.csv", fn=make(1.0))
    with pytest.raises(ValueError, match="another configuration"):
        _sweep(tmp_path / "a.csv", fn=make(2.0))
    monkeypatch.setattr(isojax, "__version__", "0.0.0-other")
    with pytest.raises(ValueError, match="another configuration"):
        _sweep(tmp_path / "a.csv", fn=make(1.0))


def _mark_in_progress(out):
    """What a run killed mid-way leaves: the sidecar says the table is being written, and the digests of the
    rows stored so far are in `<table>.digests` (here: every cell's, as the finished table recorded them)."""
    meta = json.loads(results.sidecar_path(out).read_text())
    digests = meta.pop("row_sha256")
    meta["complete"] = False
    results.sidecar_path(out).write_text(json.dumps(meta))
    out.with_name(out.name + ".digests").write_text("".join(f"{i} {d}\n" for i, d in enumerate(digests)))


def test_resumed_rows_equal_fresh_rows_in_value_and_type(tmp_path):
    out = tmp_path / "a.csv"
    fresh = _sweep(out)
    reference = out.read_text()
    lines = reference.splitlines(keepends=True)
    out.write_text("".join(lines[:6]) + lines[6][:9])  # five rows kept, then half a line (a torn append)
    _mark_in_progress(out)
    resumed = _sweep(out)
    assert out.read_text() == reference
    assert resumed == fresh
    assert [[type(v) for v in r.values()] for r in resumed] == [[type(v) for v in r.values()] for r in fresh]
    assert [type(v) for v in fresh[0].values()] == [int, str, int, int, float, float, float, float]


@pytest.mark.parametrize("edit, match", [
    (lambda ls: ls + ["16,cone,64,8,0.0,0.1,0.2,0.3\n"], r"line 18: cell '16' is not a cell of the 16-cell grid"),
    (lambda ls: ls[:3] + ["1" + ls[3][1:]] + ls[4:], r"line 4: cell 1 appears twice"),
    (lambda ls: ls[:2] + [ls[2].replace(",0.25,", ",0.5,")] + ls[3:],
     r"line 3: cell 1 has parameters \['cone', '64', '8', '0.5'\]"),
    (lambda ls: ls[:2] + [ls[2].rsplit(",", 1)[0] + ",None\n"] + ls[3:],
     r"line 3: cell 1: column 'isoscore' is not a number"),
    (lambda ls: ls[:2] + [ls[2][:12] + "\n"] + ls[3:], r"line 3 has 5 fields, the header 8"),
    (lambda ls: [ls[0].replace("family", "kind")] + ls[1:], r"line 1: the header starts"),
])
def test_resume_refuses_rows_that_do_not_belong(tmp_path, edit, match):
    out = tmp_path / "a.csv"
    _sweep(out)
    out.write_text("".join(edit(out.read_text().splitlines(keepends=True))))
    _mark_in_progress(out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match=rf"a\.csv'?: {match}"):
        _sweep(out)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_complete_table_with_a_torn_line_is_refused(tmp_path):
    out = tmp_path / "a.csv"
    _sweep(out)
    out.write_text(out.read_text()[:-5])
    with pytest.raises(ValueError, match="last line is incomplete"):
        _sweep(out)


def test_a_table_without_sidecar_is_refused(tmp_path):
    out = tmp_path / "a.csv"
    out.write_text("cell,family\n0,cone\n")
    with pytest.raises(ValueError, match="another configuration"):
        _sweep(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_lock_held_by_another_writer_refuses_before_writing(tmp_path):
    out = tmp_path / "a.csv"
    with results.exclusive_lock(out):
        with pytest.raises(results.TableLockedError, match=r"a\.csv'? is being written by another process"):
            _sweep(out)
    assert os.listdir(tmp_path) == []


def _safe_cell(key, family, n, d, knob):
    # no eigh/qr: safe to batch on CPU
    k1, k2 = jax.random.split(key)
    x = jax.random.normal(k1, (n, d)) + knob * (family == "cone")
    g = x @ x.T
    return {"mean": jnp.mean(x), "gram": jnp.sum(g * g) / n**2, "lse": jax.nn.logsumexp(x[:, 0]),
            "u": jax.random.uniform(k2), "vec": jnp.tanh(x[0, :3])}


def test_serial_and_vectorised_cells_give_the_same_table_bit_for_bit(tmp_path):
    serial = _sweep(tmp_path / "s.csv", fn=_safe_cell, cell_batching="serial")
    vectorised = _sweep(tmp_path / "v.csv", fn=_safe_cell, cell_batching="vectorised")
    assert serial == vectorised
    assert (tmp_path / "s.csv").read_text() == (tmp_path / "v.csv").read_text()
    assert json.loads((tmp_path / "v.csv.json").read_text())["batching"] == "vectorised"
    assert list(serial[0])[-3:] == ["vec_0", "vec_1", "vec_2"]


@pytest.mark.parametrize("kw, match", [
    ({"cell_batching": "parallel"}, "cell_batching must be one of"),
    ({"per_device": 0}, "per_device must be an integer >= 1"),
])
def test_bad_arguments(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _sweep(tmp_path / "x.csv", **kw)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("grid, match", [
    ({}, "grid must be a non-empty dict"),
    ({"knob": []}, r"grid\['knob'\] must be a non-empty list"),
    ({"family": ["a\nb"]}, "line break"),
    ({"knob": [None]}, "use str, bool, int or float"),
])
def test_bad_grid(tmp_path, grid, match):
    with pytest.raises(ValueError, match=match):
        sweep.run_sweep(sweep_job.cell, grid, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_outputs_that_change_columns_are_refused_and_the_table_stays_intact(tmp_path):
    def cell(key, family, n, d, knob):  # family is static: each group may return other outputs
        return {"a" if family == "cone" else "b": knob + jax.random.normal(key)}

    out = tmp_path / "a.csv"
    with pytest.raises(ValueError, match=r"the cell function returned columns \['b'\], the table .* has \['a'\]"):
        _sweep(out, fn=cell)
    assert [r["family"] for r in results.read_table(out)] == ["cone"] * 8  # the finished group, resumable
    assert not out.with_name("a.csv.lock").exists()


# a researcher's file: a cell with a helper and a constant of its own, run as a script or imported by a notebook
_SCRIPT = '''
import sys

from isojax import distributions, isotropy
from isojax.runs import sweep

SCALE = 2.0
GRID = {"family": ["cone", "spiked"], "n": [32], "d": [4], "knob": [0.0, 0.5, 1.0]}


def helper(x):
    return SCALE * isotropy.isoscore(x)


def my_cell(key, family, n, d, knob):
    return {"score": helper(distributions.sample(family, key, n, d, knob))}


if __name__ == "__main__":
    sweep.run_sweep(my_cell, GRID, sys.argv[1], seed=0, progress=False, per_device=2)
'''


def _cut_to_first_rows(out, keep: int):
    """What an interrupted run leaves: the first `keep` rows, the sidecar marked in progress."""
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:1 + keep]))
    _mark_in_progress(out)


def test_a_table_made_by_a_script_resumes_from_a_notebook_importing_it_and_back(tmp_path, monkeypatch):
    import importlib
    import runpy

    (tmp_path / "my_cells.py").write_text(_SCRIPT)
    out = tmp_path / "t.csv"
    monkeypatch.setattr(sys, "argv", ["my_cells.py", str(out)])
    script = runpy.run_path(str(tmp_path / "my_cells.py"), run_name="__main__")  # `python my_cells.py t.csv`
    assert script["my_cell"].__module__ == "__main__"
    made = out.read_bytes()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_cells", raising=False)  # another test's my_cells, imported before
    notebook = importlib.import_module("my_cells")  # a notebook's `import my_cells`
    assert notebook.my_cell.__module__ == "my_cells"
    assert sweep.cell_identity(notebook.my_cell) == sweep.cell_identity(script["my_cell"])
    _cut_to_first_rows(out, 2)
    rows = sweep.run_sweep(notebook.my_cell, notebook.GRID, out, seed=0, progress=False, per_device=2)
    assert out.read_bytes() == made and len(rows) == 6  # resumed: the missing cells, the same bytes
    _cut_to_first_rows(out, 4)  # and back: the script resumes the notebook's table
    runpy.run_path(str(tmp_path / "my_cells.py"), run_name="__main__")
    assert out.read_bytes() == made
    assert json.loads(results.sidecar_path(out).read_text())["cell_defined_in"] == "__main__:my_cell"


def test_a_refused_table_names_the_fields_of_the_configuration_that_differ(tmp_path, monkeypatch):
    out = tmp_path / "a.csv"
    _sweep(out)
    with pytest.raises(ValueError, match=r"another configuration \(seed: 3 -> 4\); choose another path"):
        _sweep(out, seed=4)
    with pytest.raises(ValueError, match=r"\(grid\.knob: \[0\.0, 0\.25, .*\] -> \[0\.0, 1\.0\]\)"):
        sweep.run_sweep(sweep_job.cell, {**sweep_job.GRID, "knob": [0.0, 1.0]}, out, seed=3, name="test",
                        progress=False)
    with pytest.raises(ValueError, match=r"cell_fn\.code: \"\w+\" -> \"\w+\" \(the cell function's code, defaults, "
                                         r"closure or the helpers and constants it uses changed\)"):
        _sweep(out, fn=sweep_job.slow_cell)
    with pytest.raises(ValueError, match=r"cell_fn\.qualname: \"cell\" -> \"_safe_cell\" \(another cell function\)"):
        _sweep(out, fn=_safe_cell)
    monkeypatch.setattr(isojax, "__version__", "0.0.0-other")
    with pytest.raises(ValueError, match=r"isojax: \"[^\"]+\" -> \"0\.0\.0-other\" \(another isojax version\)"):
        _sweep(out)


def test_cell_identity_names_the_other_modules_it_uses():
    # two cells alike but for the module behind one name: `import numpy as np` vs `import math as np`
    def cell_from(module_name):
        namespace = {"__name__": "user_cells"}
        exec(f"import {module_name} as np\ndef cell(key, x):\n    return {{'v': np.sqrt(x)}}\n", namespace)
        return namespace["cell"]

    assert sweep.cell_identity(cell_from("numpy")) == sweep.cell_identity(cell_from("numpy"))
    assert sweep.cell_identity(cell_from("numpy")) != sweep.cell_identity(cell_from("math"))

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isojax import sweep
from tests import sweep_job

ROOT = Path(__file__).resolve().parents[1]


def _run(out, mode="fast", devices=1, wait=True):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "tests" / "sweep_job.py"), str(out), mode]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_same_table_on_1_and_8_devices(tmp_path):
    assert "1 devices" in _run(tmp_path / "one.csv", devices=1)
    assert "8 devices" in _run(tmp_path / "eight.csv", devices=8)
    # bit for bit: floats are written with a round-tripping repr
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "eight.csv").read_text()
    rows = sweep.read_table(tmp_path / "one.csv")
    assert [int(r["cell"]) for r in rows] == list(range(16))


def test_sigkill_then_resume_finishes_every_cell_once(tmp_path):
    reference = tmp_path / "ref.csv"
    _run(reference)
    out = tmp_path / "killed.csv"
    proc = _run(out, mode="slow", wait=False)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill as soon as some, not all, cells are on disk
        if out.exists() and 0 < len(sweep.read_table(out)) < 16:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = sweep.read_table(out)
    assert 0 < len(partial) < 16
    _run(out, mode="slow")
    rows = sweep.read_table(out)
    assert sorted(int(r["cell"]) for r in rows) == list(range(16))
    assert out.read_text() == reference.read_text()


def test_same_seed_same_table_and_refuses_other_config(tmp_path):
    a = sweep.run_sweep(sweep_job.cell, sweep_job.GRID, tmp_path / "a.csv", seed=3, name="test", progress=False)
    b = sweep.run_sweep(sweep_job.cell, sweep_job.GRID, tmp_path / "b.csv", seed=3, name="test", progress=False)
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert len(a) == len(b) == 16
    meta = (tmp_path / "a.csv.json").read_text()
    assert '"seed": 3' in meta and '"versions"' in meta and '"git_commit"' in meta
    before = (tmp_path / "a.csv").read_text()
    with pytest.raises(ValueError, match="another configuration"):
        sweep.run_sweep(sweep_job.cell, sweep_job.GRID, tmp_path / "a.csv", seed=4, name="test", progress=False)
    assert (tmp_path / "a.csv").read_text() == before


@pytest.mark.parametrize("grid, match", [
    ({}, "grid must be a non-empty dict"),
    ({"knob": []}, r"grid\['knob'\] must be a non-empty list"),
])
def test_bad_grid(tmp_path, grid, match):
    with pytest.raises(ValueError, match=match):
        sweep.run_sweep(sweep_job.cell, grid, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_table_text_with_commas_and_quotes_round_trips(tmp_path):
    rows = [{"scope": "within dataset, mean", "note": 'a "quoted" word', "value": 0.1}]
    sweep.save_table(rows, tmp_path / "t.csv", {"name": "t"})
    back = sweep.read_table(tmp_path / "t.csv")
    assert back == [{"cell": "0", "scope": "within dataset, mean", "note": 'a "quoted" word', "value": "0.1"}]

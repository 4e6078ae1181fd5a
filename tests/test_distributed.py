"""Sweeps over jax.distributed: 2 local processes x 2 simulated CPU devices each give the one-process table
bit for bit; a process killed mid-run leaves a table that a rerun completes to the same bits; a refusal by
the writing process stops every process."""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isojax.runs import results
from tests.conftest import device_env, run_cluster

# Run in the float32 pass only (README: "Tests"): end to end, with no dtype-specific path of its own.
pytestmark = pytest.mark.float32_only

ROOT = Path(__file__).resolve().parents[1]
JOB = str(ROOT / "tests" / "sweep_job.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    return device_env(devices)


def _start_cluster(out, mode="fast", processes=2):
    port = _free_port()
    return [subprocess.Popen([sys.executable, JOB, str(out), mode, str(i), str(processes), str(port)], env=_env(2),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]


def _finish(procs, timeout=300):
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [p.returncode for p in procs], outs


def _reference(tmp_path) -> str:
    ref = tmp_path / "ref.csv"
    subprocess.run([sys.executable, JOB, str(ref), "fast"], env=_env(1), check=True, capture_output=True, timeout=300)
    return ref.read_text()


def test_two_processes_give_the_one_process_table_bit_for_bit(tmp_path):
    reference = _reference(tmp_path)
    def start():
        for path in (tmp_path / "two.csv", tmp_path / "two.csv.json"):
            path.unlink(missing_ok=True)
        return _start_cluster(tmp_path / "two.csv")
    codes, outs = run_cluster(start, timeout=300)
    assert codes == [0, 0], outs
    for out, _ in outs:  # every process saw 4 devices and returns the whole table
        assert "4 devices 2 processes 16 rows" in out
    assert (tmp_path / "two.csv").read_text() == reference


def test_a_process_killed_mid_run_leaves_a_table_a_rerun_completes(tmp_path):
    reference = _reference(tmp_path)
    out = tmp_path / "killed.csv"
    procs = _start_cluster(out, mode="slow")
    end = time.time() + 240
    while time.time() < end and all(p.poll() is None for p in procs):
        if out.exists() and 0 < len(results.read_table(out)) < 16:
            break
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)  # a worker dies; the writer then fails or is killed by the scheduler
    try:
        procs[0].wait(timeout=20)
    except subprocess.TimeoutExpired:
        procs[0].send_signal(signal.SIGKILL)
    _finish(procs)
    partial = results.read_table(out)
    assert 0 < len(partial) < 16
    codes, outs = run_cluster(lambda: _start_cluster(out, mode="slow"), timeout=300)  # a restart resumes too
    assert codes == [0, 0], outs
    assert out.read_text() == reference


def test_a_refusal_by_the_writer_stops_every_process(tmp_path):
    out = tmp_path / "other.csv"
    results.save_table([{"x": 1.0}], out, {"name": "another sweep"})
    before = out.read_bytes(), results.sidecar_path(out).read_bytes()
    codes, outs = _finish(_start_cluster(out))
    assert codes[0] != 0 and codes[1] != 0
    assert "another configuration" in outs[0][1]
    assert "process 0 refused the sweep" in outs[1][1]
    assert (out.read_bytes(), results.sidecar_path(out).read_bytes()) == before


def test_run_cluster_starts_again_only_after_a_gloo_connection_failure():
    def fake(script):
        calls = []

        def start():
            calls.append(1)
            code = script(len(calls))
            return [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True) for _ in range(2)]
        return start, calls

    gloo = "import sys; sys.exit('RuntimeError: UNKNOWN: Gloo context initialization failed: Connect timeout')"
    start, calls = fake(lambda n: gloo if n == 1 else "print('ok')")
    codes, outs = run_cluster(start, timeout=60)
    assert (codes, len(calls), outs[0][0]) == ([0, 0], 2, "ok\n")
    start, calls = fake(lambda n: gloo)  # twice: the second failure is returned
    codes, outs = run_cluster(start, timeout=60)
    assert (codes, len(calls)) == ([1, 1], 2) and "Gloo context" in outs[0][1]
    start, calls = fake(lambda n: "import sys; sys.exit('ValueError: a wrong result')")  # any other: no restart
    codes, _ = run_cluster(start, timeout=60)
    assert (codes, len(calls)) == ([1, 1], 1)


def test_run_cluster_starts_again_after_gloo_aborts_a_process():
    calls = []

    def start():
        calls.append(1)
        code = ("import os, sys; sys.stderr.write(\"terminate called after throwing an instance of "
                "'gloo::IoException'\\n\"); sys.stderr.flush(); os.abort()") if len(calls) == 1 else "print('ok')"
        return [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    codes, _ = run_cluster(start, timeout=60)
    assert (codes, len(calls)) == ([0, 0], 2)

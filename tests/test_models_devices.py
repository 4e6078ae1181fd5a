"""An ensemble on 2 or 4 CPU devices, and on 2 processes × 2 devices (jax.distributed over gloo), gives the same
table bit for bit: every device runs the same per-device program. On a single device XLA compiles the program
without its partitioner and rounds differently (measured: 1 ulp in a few losses), so the 1-device table agrees
to rounding and the model cache keys the two apart (`training.layout_tag`). Subprocesses, since the device count
is fixed when JAX starts."""

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import device_env, run_cluster

# Run in the float32 pass only (README: "Tests"): device layouts, with no dtype-specific path of their own.
pytestmark = pytest.mark.float32_only

JOB = str(Path(__file__).resolve().parent / "train_job.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one(out, devices, kind="vmap", lanes=2):
    done = subprocess.run([sys.executable, JOB, str(out), kind, str(lanes)], env=device_env(devices),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{devices} devices 1 processes 6 runs" in done.stdout
    return Path(out).read_text()


def _losses(table):
    return np.array([[float(x) for x in row.split(",")[2].split()] for row in table.splitlines()[1:]])


@pytest.mark.parametrize("kind", ["vmap", "scan"])
def test_two_and_four_devices_give_the_same_table_and_one_device_agrees_to_rounding(tmp_path, kind):
    four = _one(tmp_path / "four.csv", 4, kind)
    assert _one(tmp_path / "two.csv", 2, kind) == four
    # one device rounds differently because XLA compiles it without its partitioner, whatever the engine:
    # checked on the default engine only (CI time)
    if kind == "vmap":
        np.testing.assert_allclose(_losses(_one(tmp_path / "one.csv", 1, kind)), _losses(four), rtol=1e-5)


def test_two_processes_give_the_one_process_table(tmp_path):
    reference = _one(tmp_path / "ref.csv", 4)

    def start():
        for path in (tmp_path / "two.csv", tmp_path / "two.csv.json"):
            path.unlink(missing_ok=True)
        port = _free_port()
        return [subprocess.Popen([sys.executable, JOB, str(tmp_path / "two.csv"), "vmap", "2", str(i), "2", str(port)],
                                 env=device_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i in range(2)]
    codes, outs = run_cluster(start)
    assert codes == [0, 0], outs
    for out, _ in outs:  # every process saw 4 devices and has every run's result
        assert "4 devices 2 processes 6 runs" in out
    assert (tmp_path / "two.csv").read_text() == reference

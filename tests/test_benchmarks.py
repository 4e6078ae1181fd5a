"""Smoke test of benchmarks/accelerator.py at toy sizes: it runs, and its JSON names the device and holds
every timing (no timing is checked against a target: tests are never timed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Run in the float32 pass only (README: "Tests"): end to end, with no dtype-specific path of its own.
pytestmark = pytest.mark.float32_only

ROOT = Path(__file__).resolve().parents[1]


def test_accelerator_tiny_writes_every_field(tmp_path):
    out = tmp_path / "acc.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "accelerator.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["tiny"] is True
    assert {"device_kind", "backend", "versions"} <= set(result["device"]) and result["device"]["versions"]["jax"]
    assert result["attention_vjp"]["jax_vjp_ms"] > 0 and result["attention_vjp"]["closed_form_ms"] > 0
    assert result["clustered_cosine"]["ms"] > 0 and 1 <= result["clustered_cosine"]["best_k"] <= 16
    sweep = result["metric_sweep"]
    assert sweep["cells_per_s"] > 0 and 0 < sweep["fraction_of_matmul"] and sweep["cells"] in ("vmap", "lax.map")
    assert result["training"]["ensembles"] and all(e["tokens_per_s"] > 0 for e in result["training"]["ensembles"])
    assert result["check"]["exit_status"] == 0 and result["check"]["passed"] is True
    assert result["check"]["args"][:2] == ["check", "--json"]

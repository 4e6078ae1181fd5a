"""Training on a device mesh: the batch split over 1 or 4 simulated CPU devices (subprocesses, since the
device count is fixed when jax starts) gives the same loss curve to float tolerance; a batch that does not
divide over the devices is refused before any compute."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Run in the float32 pass only (README: "Tests"): a device layout, with no dtype-specific path of its own.
pytestmark = pytest.mark.float32_only

ROOT = Path(__file__).resolve().parents[1]

JOB = """
import json
import jax, jax.numpy as jnp
from isojax import train, transformer as tf
sequences = jax.random.randint(jax.random.PRNGKey(1), (40, 12), 0, 11)
tcfg = train.TrainConfig(steps=6, batch=8, lr=1e-2, warmup=2)
out = {"devices": len(jax.devices())}
for arch in ("causal", "encoder"):
    config = tf.Config(vocab=12, d_model=16, heads=2, layers=1, mlp=32, max_len=12, causal=arch == "causal")
    params, losses, _ = train.train(jax.random.PRNGKey(0), config, sequences, tcfg, progress=False)
    out[arch] = {"losses": [float(x) for x in losses],
                 "param_devices": len(jax.tree.leaves(params)[0].sharding.device_set),
                 "norm": float(sum(jnp.sum(p.astype(jnp.float64) ** 2) for p in jax.tree.leaves(params)))}
print(json.dumps(out))
"""


def _train(devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", JOB], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_loss_curves_agree_on_1_and_4_devices():
    one, four = _train(1), _train(4)
    assert (one["devices"], four["devices"]) == (1, 4)
    tol = 1e-5 if os.environ.get("JAX_ENABLE_X64") == "1" else 2e-4
    for arch in ("causal", "encoder"):  # next-token and masked-token objectives
        assert (one[arch]["param_devices"], four[arch]["param_devices"]) == (1, 4)  # the mesh spans every device
        np.testing.assert_allclose(four[arch]["losses"], one[arch]["losses"], rtol=tol)
        np.testing.assert_allclose(four[arch]["norm"], one[arch]["norm"], rtol=tol)
        assert one[arch]["losses"][-1] < one[arch]["losses"][0]  # it trains


def test_batch_that_does_not_divide_over_the_devices_is_refused():
    code = ("import jax; from isojax import train, transformer as tf\n"
            "try:\n"
            "    train.train(jax.random.PRNGKey(0), tf.Config(vocab=8, d_model=8, heads=2, layers=1, mlp=8, max_len=8),"
            " jax.numpy.zeros((4, 8), int), train.TrainConfig(steps=1, batch=6), progress=False)\n"
            "except ValueError as err:\n"
            "    print('refused:', err)\n")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "refused: tcfg.batch 6 must be a multiple of the 4 devices" in done.stdout, done.stderr[-3000:]

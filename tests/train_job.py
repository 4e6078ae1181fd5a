"""A small ensemble trained in a subprocess by test_models_devices.py (the device count is set through
XLA_FLAGS before jax loads): each run's loss curve and a digest of its final parameters, written as a table by
process 0.

Usage: train_job.py OUT KIND LANES [PROCESS_ID NUM_PROCESSES PORT]: with the last three, the process joins a
local jax.distributed cluster first (CPU collectives through gloo)."""

import hashlib
import sys

import jax
import numpy as np

from isojax import transformer as tf
from isojax.models import training
from isojax.runs import results
from tests.sweep_job import join_cluster


def main(out: str, kind: str, lanes: int) -> None:
    config = tf.Config(vocab=12, d_model=16, heads=2, layers=1, mlp=32, max_len=12)
    runs = [training.Run(jax.random.PRNGKey(i), np.asarray(jax.random.randint(jax.random.PRNGKey(100 + i),
                                                                                (20 + 5 * i, 12), 0, 11)))
            for i in range(6)]
    trained = training.train_many(runs, config, training.TrainConfig(steps=8, batch=4, warmup=2),
                                  engine=training.Engine(kind, lanes, chunk_steps=3), progress=False)
    rows = []
    for i, t in enumerate(trained):
        digest = hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in jax.tree.leaves(t.params))).hexdigest()
        rows.append({"run": i, "losses": " ".join(repr(float(x)) for x in t.losses), "params_sha256": digest})
    if jax.process_index() == 0:
        results.save_table(rows, out, {"name": "train_job", "kind": kind, "lanes": lanes})
    print(len(jax.devices()), "devices", jax.process_count(), "processes", len(rows), "runs")


if __name__ == "__main__":
    if len(sys.argv) > 4:
        join_cluster(*map(int, sys.argv[4:7]))
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))

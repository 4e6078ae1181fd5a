"""A small sweep run as a subprocess by test_sweep.py and test_distributed.py (the device count is set
through XLA_FLAGS before jax loads).

Usage: sweep_job.py OUT fast|slow [PROCESS_ID NUM_PROCESSES PORT]: with the last three, the process joins a
local jax.distributed cluster first (CPU collectives through gloo). Exit 130 on KeyboardInterrupt (SIGINT),
as the CLI does."""

import sys
import time

import jax

from isojax import distributions, isotropy
from isojax.runs import sweep

GRID = {"family": ["cone", "spiked"], "n": [64], "d": [8], "knob": [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0]}


def cell(key, family, n, d, knob):
    x = distributions.sample(family, key, n, d, knob)
    return {"isoscore": isotropy.isoscore(x), "cosine": isotropy.mean_cosine(x), "first": x[0, 0]}


def slow_cell(key, family, n, d, knob):
    # a host callback that sleeps, so the parent can kill the run between chunks
    jax.debug.callback(lambda: time.sleep(0.3))
    return cell(key, family, n, d, knob)


def join_cluster(process_id: int, processes: int, port: int) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=processes,
                               process_id=process_id)


if __name__ == "__main__":
    out, mode = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        join_cluster(*map(int, sys.argv[3:6]))
    fn = slow_cell if mode == "slow" else cell
    try:
        rows = sweep.run_sweep(fn, GRID, out, seed=3, per_device=2, name="test", progress=False)
    except KeyboardInterrupt as err:
        print("interrupted:", err, file=sys.stderr)
        sys.exit(130)
    print(len(jax.devices()), "devices", jax.process_count(), "processes", len(rows), "rows")

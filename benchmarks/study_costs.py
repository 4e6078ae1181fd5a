"""What one run of the study costs, per variant: training (an ensemble of `--runs` runs at the study's steps on the
default engine) and evaluation (forecasts on a dataset's backtest windows against the baselines, hidden states
and every layer's measures), in seconds of wall time and of CPU time, after a warm-up that compiles. The power
analysis (`experiments/t6_design.py --train-small/--train-deep/--eval`) takes these as its costs.

Run: python benchmarks/study_costs.py [--steps 400] [--runs 8] [--data gp:seasonality_24]
CPU seconds are the process's (all threads): on a machine shared with other jobs they change less than the wall.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)
import jax
from _common import machine

from isojax.models import ensemble, training


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--data", default="gp:seasonality_24")
    parser.add_argument("--boot", type=int, default=200, help="bootstrap resamples per layer measure (--full's)")
    parser.add_argument("--variants", nargs="+", default=["bins/decoder", "bins/encoder", "digits/decoder",
                                                          "digits/encoder"])
    args = parser.parse_args()
    print(f"machine: {machine()}; engine {training.default_engine()}\n")
    print("| variant | train s/run (wall) | train s/run (CPU) | evaluate s/run (wall) | evaluate s/run (CPU) |")
    print("|---|---|---|---|---|")
    for variant in args.variants:
        tok, arch = variant.split("/")
        runs = [ensemble.NumericRun(f"{variant} {i}", args.data, tok, arch, seed=i) for i in range(args.runs)]
        how = ensemble.Evaluation(boot=args.boot)  # the full design's evaluation
        with tempfile.TemporaryDirectory() as cache:
            # warm-up: one run compiles training and evaluation
            ensemble.train_and_evaluate(runs[:1], jax.random.PRNGKey(0), args.steps, cache, evaluation=how)
            # train and evaluate; then the same runs again from the cache: evaluation alone
            _, wall, cpu = _timed(lambda: ensemble.train_and_evaluate(runs, jax.random.PRNGKey(1), args.steps, cache,
                                                                      evaluation=how))
            _, e_wall, e_cpu = _timed(lambda: ensemble.train_and_evaluate(runs, jax.random.PRNGKey(1), args.steps,
                                                                          cache, evaluation=how))
        n = args.runs
        cells = ((wall - e_wall) / n, (cpu - e_cpu) / n, e_wall / n, e_cpu / n)
        print(f"| {variant} | " + " | ".join(f"{c:.2f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()

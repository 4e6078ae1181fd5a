"""Isotropy with its uncertainty: what it costs per layer, and how well the bootstrap interval is calibrated.

Timing: `layer_summary` and `measure` of one cloud [n, d] with and without `uncertainty=True`, the first call
(compilation and the simulated null) and the best of the next ones (what each further run of one shape costs).
Calibration: for clouds drawn from fixed distributions, the share of 95% intervals that cover the measure's
expected value at this n, and the mean interval width over 2 x 1.96 x the measure's sd, both from a direct
simulation of independent clouds.

Run: python benchmarks/uncertainty.py [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import numpy as np
from _common import machine

from isojax import isotropy


def _timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def timings(shapes, repeats: int) -> None:
    print("| call | n × d | first call (wall s) | next calls, best (wall s / CPU s) |\n|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n, d in shapes:
        clouds = [(rng.normal(size=(n, d)) * np.linspace(1, 3, d)).astype(np.float32) for _ in range(repeats + 1)]
        calls = {"layer_summary": lambda x, i: isotropy.layer_summary(x, jax.random.PRNGKey(i)),
                 "layer_summary, uncertainty": lambda x, i: isotropy.layer_summary(x, jax.random.PRNGKey(i),
                                                                                   uncertainty=True),
                 "measure (all)": lambda x, i: isotropy.measure(x, seed=i),
                 "measure (all), uncertainty": lambda x, i: isotropy.measure(x, seed=i, uncertainty=True)}
        for name, call in calls.items():
            first = _timed(lambda call=call: call(clouds[0], 0))[0]
            rest = [_timed(lambda call=call, i=i: call(clouds[i], i)) for i in range(1, repeats + 1)]
            wall, cpu = min(rest)
            print(f"| {name} | {n} × {d} | {first:.1f} | {wall:.2f} / {cpu:.2f} |", flush=True)


def _spiked(rng, n, d):
    return rng.normal(size=(n, d)) * np.r_[3.0, 2.0, np.ones(d - 2)] + 0.4


def _isotropic(rng, n, d):
    return rng.normal(size=(n, d))


def _clusters(rng, n, d):
    centres = np.random.default_rng(0).normal(size=(3, d)) * 8
    return centres[rng.integers(0, 3, n)] + rng.normal(size=(n, d)) * np.r_[2.0, np.ones(d - 1)]


def calibration(reps: int, truth_reps: int) -> None:
    print("\n| distribution (n × d) | measure | coverage of E[measure] | width / (2·1.96·sd) |\n|---|---|---|---|")
    cases = [(_spiked, 150, 6, ["isoscore", "d80_fraction", "top1_variance", "cosine", "cosine_centred", "lid",
                                "partition_isotropy"]),
             (_isotropic, 400, 32, ["isoscore", "cosine_centred", "lid"]),
             (_clusters, 150, 6, ["clustered_cosine"])]
    u = isotropy.Uncertainty(null_draws=2)
    for draw, n, d, names in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            truth = [isotropy.measure(draw(np.random.default_rng(10_000 + r), n, d), seed=r, measures=names)
                     for r in range(truth_reps)]
            runs = [isotropy.measure(draw(np.random.default_rng(r), n, d), seed=r, measures=names, uncertainty=u)
                    for r in range(reps)]
        for m in names:
            values = np.array([t[m] for t in truth])
            mean, sd = values.mean(), values.std()
            cover = np.mean([r[f"{m}_low"] <= mean <= r[f"{m}_high"] for r in runs])
            width = np.mean([r[f"{m}_high"] - r[f"{m}_low"] for r in runs])
            ratio = width / (2 * 1.96 * sd) if sd > 0 else float("nan")
            print(f"| {draw.__name__[1:]} ({n} × {d}) | {m} | {cover:.2f} | {ratio:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and clouds")
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    timings([(1000, 64), (1000, 96)], repeats=2 if args.quick else 4)
    calibration(reps=40 if args.quick else 200, truth_reps=100 if args.quick else 400)


if __name__ == "__main__":
    main()

"""Time isojax.forecast at the study's sizes: the baselines once per set of windows, then `evaluate` per model.

Run: python benchmarks/forecast_eval.py [--series 4] [--origins 25] [--context 256] [--horizon 16] [--samples 20]
Prints the best of `--repeats` wall times (after one warm-up call) and the machine's load average, since on a
shared machine the numbers move with it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np

from isojax import forecast


def best_ms(fn, repeats: int) -> float:
    fn()  # warm-up: scoringrules' import, numpy's first BLAS call
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=4)
    parser.add_argument("--origins", type=int, default=25)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    t = np.arange(564)  # the study's series length (isojax.data.corpus.build's default)
    series = [3 * np.sin(2 * np.pi * t / 24) + 0.1 * np.cumsum(rng.normal(size=t.size)) for _ in range(args.series)]
    windows = forecast.backtest_windows(series, args.context, args.horizon, origins=args.origins, stride=3)
    draws = rng.normal(size=(len(windows), args.samples, args.horizon)) + windows.target[:, None, :]
    model = lambda key, contexts, horizon: draws
    reference = forecast.baseline_scores(windows)
    key = jax.random.PRNGKey(0)
    base = best_ms(lambda: forecast.baseline_scores(windows), max(1, args.repeats // 5))
    scores = best_ms(lambda: forecast.window_scores(draws, windows), args.repeats)
    per_model = best_ms(lambda: forecast.evaluate(model, windows, key, reference=reference, draws=args.draws),
                        args.repeats)
    print(f"{len(windows)} windows (C={args.context}, H={args.horizon}, S={args.samples}), {args.draws} draws; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"baseline_scores (once per set of windows): {base:.0f} ms")
    print(f"window_scores per model: {scores:.1f} ms; evaluate per model (scores, bootstrap, rows): {per_model:.1f} ms")


if __name__ == "__main__":
    main()

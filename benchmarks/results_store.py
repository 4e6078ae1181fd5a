"""Time per stored chunk of a sweep's results table, from 1e3 to 1e5 (or --max) cells: the store alone.

The append-only store (`isojax._sweep_store.SweepTable.store`: one write of complete lines and an fsync)
against the previous store, which rewrote the whole sorted table through a temporary file after each chunk.
No cell function runs: rows with a few float outputs are made on the host, so only the store is timed.

Run: python benchmarks/results_store.py [--chunk 64] [--max 100000] [--repeats 10]
(--max 1000000 adds a million-cell table, the append store only.)

Measured 2026-11-26 on a shared, loaded machine (Intel Xeon, 2 cores, 6 agents at once; fsync-bound, noisy):
    cells  append ms/chunk  rewrite ms/chunk   ratio  final sort s
     1000             3.89             11.69     3.0          0.06
    10000             7.80            114.63    14.7          0.22
   100000            13.59           1369.67   100.8          2.19
  1000000             7.89               nan     nan         21.14
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine  # noqa: E402
from isojax.runs import _store as _sweep_store  # noqa: E402
from isojax.runs import results, sweep  # noqa: E402


def _grid(n: int) -> dict:
    return {"family": ["cone", "spiked"], "knob": [i / 10 for i in range(n // 2)]}


def _row(i: int, cell: dict, rng: random.Random) -> dict:
    return {"cell": i, **cell, "cosine": rng.random(), "isoscore": rng.random(), "first": rng.gauss(0, 1)}


def _filled(path: Path, n: int, filled: int, rng: random.Random):
    """A sweep table of n cells with `filled` rows on disk, ready to store more."""
    all_cells = sweep.cells(_grid(n))
    table = _sweep_store.SweepTable(path, {"name": "bench", "n": n}, all_cells, ["family", "knob"])
    table.load()
    table.begin()
    table.store([_row(i, all_cells[i], rng) for i in range(filled)])
    return table, all_cells


def _rewrite(path: Path, rows: list[dict]) -> None:
    """The previous store: the whole table, sorted, through a temporary file, after every chunk."""
    rows = sorted(rows, key=lambda r: r["cell"])
    results.atomic_write(path, results.csv_lines([list(rows[0])]) + results.rows_text(rows, list(rows[0])))


def measure(n: int, chunk: int, repeats: int, tmp: Path) -> dict:
    rng = random.Random(0)
    filled = n - repeats * chunk
    table, all_cells = _filled(tmp / f"append_{n}.csv", n, filled, rng)
    append, rewrite = [], []
    rows = [_row(i, all_cells[i], rng) for i in range(filled)]
    for r in range(repeats):
        ids = range(filled + r * chunk, filled + (r + 1) * chunk)
        new = [_row(i, all_cells[i], rng) for i in ids]
        start = time.perf_counter()
        table.store(new)
        append.append(time.perf_counter() - start)
        rows += new
        if n <= 100_000:  # beyond, the previous store takes seconds per chunk
            start = time.perf_counter()
            _rewrite(tmp / f"rewrite_{n}.csv", rows)
            rewrite.append(time.perf_counter() - start)
    start = time.perf_counter()
    final = table.finish()
    compaction = time.perf_counter() - start
    assert len(final) == n and results.read_table(table.path) == final
    return {"cells": n, "append_ms": 1e3 * statistics.median(append),
            "rewrite_ms": 1e3 * statistics.median(rewrite) if rewrite else float("nan"), "compaction_s": compaction}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=64, help="rows per chunk (default 64)")
    parser.add_argument("--max", type=int, default=100_000, help="largest table (default 1e5)")
    parser.add_argument("--repeats", type=int, default=10, help="chunks timed per size (median reported)")
    args = parser.parse_args(argv)
    sizes = [n for n in (1_000, 10_000, 100_000, 1_000_000) if n <= args.max]
    print(f"results store, {args.chunk} rows per chunk, median of {args.repeats} chunks; {machine()}")
    print(f"{'cells':>9} {'append ms/chunk':>16} {'rewrite ms/chunk':>17} {'ratio':>7} {'final sort s':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            m = measure(n, args.chunk, args.repeats, Path(tmp))
            print(f"{m['cells']:>9} {m['append_ms']:>16.2f} {m['rewrite_ms']:>17.2f} "
                  f"{m['rewrite_ms'] / m['append_ms']:>7.1f} {m['compaction_s']:>13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

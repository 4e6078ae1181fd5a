"""Run every `isojax check` row over seeds 0-99 in one process (compiled programs are reused across seeds) and
write the worst residual and the smallest margin of every row to docs/checks.md.

    PYTHONPATH=. python benchmarks/check_seeds.py                  # float32, seeds 0-99, 1000 instances
    JAX_ENABLE_X64=1 PYTHONPATH=. python benchmarks/check_seeds.py  # float64
    PYTHONPATH=. python benchmarks/check_seeds.py --seeds 10 --no-write   # a quick look, nothing written
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)
import jax

from isojax import theory
from isojax._validate import float_dtype
from isojax.runs.results import machine

DOC = Path(__file__).resolve().parents[1] / "docs" / "checks.md"


def sweep(seeds: int, instances: int, only=None) -> tuple[dict, float, float, int]:
    """-> ({(statement, compares): dict(worst, tolerance, units, failures)}, compile s, run s, seeds run)."""
    table: dict = {}
    compile_s = run_s = 0.0
    for seed in range(seeds):
        report = theory.run_checks(jax.random.PRNGKey(seed), instances, only)
        compile_s += report.compile_seconds
        run_s += report.run_seconds
        for r in report:
            entry = table.setdefault((r.statement, r.compares), dict(worst=0.0, worst_seed=seed, tolerance=r.tolerance,
                                                                      units=r.units, failures=[], instances=0))
            if not (r.max_residual <= entry["worst"]):
                entry.update(worst=r.max_residual, worst_seed=seed)
            entry["instances"] += r.instances
            if not r.passed:
                entry["failures"].append(seed)
        print(f"seed {seed}: {sum(not r.passed for r in report)} failing rows; "
              f"{report.compile_seconds:.1f} s compiling, {report.run_seconds:.1f} s running", file=sys.stderr)
    return table, compile_s, run_s, seeds


def markdown(table: dict, seeds: int, instances: int, compile_s: float, run_s: float, wall: float) -> str:
    m = machine()
    lines = [f"Seeds 0-{seeds - 1}, {instances} instances per check and seed, {float_dtype()}, check programs "
             f"compiled with `harness.FAST_COMPILE` (except T2c, T4a); {wall:.0f} s wall ({compile_s:.0f} s "
             f"compiling, {run_s:.0f} s running the compiled checks, summed over checks that overlap on threads) "
             f"on {m['cpu']}, {m['cores']} cores. Margin = tolerance / worst residual (inf: the residual was "
             f"exactly 0).",
             "", "| stmt | compares | units | worst residual | seed | tolerance | margin | failing seeds |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for (stmt, compares), e in table.items():
        margin = math.inf if e["worst"] == 0 else e["tolerance"] / e["worst"]
        fails = ", ".join(map(str, e["failures"])) or "none"
        lines.append(f"| {stmt} | {compares} | {e['units']} | {e['worst']:.3g} | {e['worst_seed']} | "
                     f"{e['tolerance']:.3g} | {margin:.3g} | {fails} |")
    return "\n".join(lines) + "\n"


def write_section(name: str, body: str, path: Path = DOC) -> None:
    """Replace the text between <!-- begin NAME --> and <!-- end NAME --> in docs/checks.md (or append it)."""
    text = path.read_text() if path.exists() else "# isojax check: what each row verifies\n"
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{body}{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--only", nargs="+")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table, compile_s, run_s, seeds = sweep(args.seeds, args.instances, args.only)
    text = markdown(table, seeds, args.instances, compile_s, run_s, time.perf_counter() - start)
    print(text)
    if not args.no_write:
        write_section(f"seeds {float_dtype()}" + (f" {' '.join(args.only)}" if args.only else ""), text)
    return 1 if any(e["failures"] for e in table.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

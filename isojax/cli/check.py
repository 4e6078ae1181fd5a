"""`isojax check`: every statement of docs/theory.md over random instances (`isojax.theory.run_checks`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time

__all__ = ["add", "run"]

def _json_row(row) -> dict:
    """A check row for JSON: non-finite numbers (a margin of inf when the residual is exactly 0) as strings."""
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in dataclasses.asdict(row).items()}


def run(args: argparse.Namespace) -> int:
    """Run the subcommand on parsed flags; returns its exit status (a ValueError is a user error)."""
    import jax

    from isojax import theory
    from isojax._validate import float_dtype

    start = time.perf_counter()
    rows = theory.run_checks(jax.random.PRNGKey(args.seed), args.instances, args.only)
    elapsed = time.perf_counter() - start
    failed = [r for r in rows if not r.passed]
    if args.json:
        json.dump({"dtype": str(float_dtype()), "seed": args.seed, "passed": not failed,
                   "seconds": {"total": elapsed, "compile": rows.compile_seconds, "run": rows.run_seconds},
                   "rows": [_json_row(r) for r in rows]}, sys.stdout, indent=2, ensure_ascii=False, allow_nan=False)
        print()
        return 1 if failed else 0
    width = max(len(r.compares) for r in rows)
    print(f"{'stmt':5} {'compares':{width}} {'max residual':>12} {'tolerance':>10} {'margin':>8} "
          f"{'instances':>9}  pass")
    for r in rows:
        print(f"{r.statement:5} {r.compares:{width}} {r.max_residual:12.3g} {r.tolerance:10.3g} {r.margin:8.3g} "
              f"{r.instances:9d}  {'yes' if r.passed else 'NO'}")
    notes = [r for r in rows if r.note]
    if notes:
        print("\nnotes:")
        for r in notes:
            print(f"  {r.statement}: {r.note}")
    print(f"\n{len(rows) - len(failed)}/{len(rows)} rows pass in {float_dtype()}; "
          f"{elapsed:.1f} s in all; summed over the checks (which overlap on threads): "
          f"{rows.compile_seconds:.1f} s compiling, {rows.run_seconds:.1f} s running the compiled checks")
    return 1 if failed else 0


def add(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """The subcommand's parser, with its flags, help and defaults."""
    check = sub.add_parser("check", formatter_class=fmt,
                           help="verify every statement (T1a-T5a) over random instances; exit 1 if a row fails")
    check.add_argument("--instances", type=int, default=1000, help="random instances per statement")
    check.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    check.add_argument("--only", nargs="+", metavar="NAME",
                       help="run only these checks: T1a T1b T1c T2ab T2c T3 T4a T4b T5a")
    check.add_argument("--json", action="store_true", help="print the table as JSON")
    check.set_defaults(run=run)

"""The `isojax` command: `isojax check` (every theorem of THEORY.md over random instances), and more."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time


def _check(args) -> int:
    import jax

    from isojax import theory
    from isojax._validate import float_dtype

    start = time.perf_counter()
    rows = theory.run_checks(jax.random.PRNGKey(args.seed), args.instances, args.only)
    elapsed = time.perf_counter() - start
    failed = [r for r in rows if not r.passed]
    if args.json:
        json.dump({"dtype": str(float_dtype()), "seed": args.seed, "passed": not failed,
                   "seconds": {"total": elapsed, **theory.TIMINGS},
                   "rows": [dataclasses.asdict(r) for r in rows]}, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        width = max(len(r.compares) for r in rows)
        print(f"{'stmt':5} {'compares':{width}} {'max residual':>12} {'tolerance':>10} {'instances':>9}  pass")
        for r in rows:
            print(f"{r.statement:5} {r.compares:{width}} {r.max_residual:12.3g} {r.tolerance:10.3g} "
                  f"{r.instances:9d}  {'yes' if r.passed else 'NO'}")
        notes = [r for r in rows if r.note]
        if notes:
            print("\nnotes:")
            for r in notes:
                print(f"  {r.statement}: {r.note}")
        print(f"\n{len(rows) - len(failed)}/{len(rows)} rows pass in {float_dtype()}; "
              f"{elapsed:.1f} s in all, {theory.TIMINGS['compile']:.1f} s compiling, "
              f"{theory.TIMINGS['run']:.1f} s running the compiled checks")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isojax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="verify every statement of THEORY.md (T1a-T5a) over random instances")
    check.add_argument("--instances", type=int, default=1000, help="random instances per statement (default 1000)")
    check.add_argument("--seed", type=int, default=0, help="base PRNG seed (default 0)")
    check.add_argument("--only", nargs="+", metavar="NAME", help="run only these checks (T1a T1b T1c T2ab T2c T3 T4a T5a)")
    check.add_argument("--json", action="store_true", help="print the table as JSON")
    check.set_defaults(run=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "instances", 1) < 1:
        parser.error("--instances must be at least 1")
    try:
        return args.run(args)
    except ValueError as err:
        parser.error(str(err))
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`isojax check`: every statement of docs/theory.md over random instances (`isojax.theory.run_checks`), on
isojax's own functions or, with `--impl`, on yours (docs/tutorials/own_attention.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time

__all__ = ["add", "run"]


def run(args: argparse.Namespace) -> int:
    """Run the subcommand on parsed flags; returns its exit status (a ValueError is a user error)."""
    import jax

    from isojax import theory
    from isojax._validate import float_dtype

    start = time.perf_counter()
    report = theory.run_checks(jax.random.PRNGKey(args.seed), args.instances, args.only, impl=args.impl)
    elapsed = time.perf_counter() - start
    dtype = str(float_dtype())
    if args.json:
        json.dump(theory.report_json(report, dtype, args.seed, elapsed), sys.stdout, indent=2, ensure_ascii=False,
                  allow_nan=False)
        print()
    else:
        print(theory.format_report(report, dtype, elapsed))
    return 0 if report.passed else 1


def add(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """The subcommand's parser, with its flags, help and defaults."""
    check = sub.add_parser("check", formatter_class=fmt,
                           help="verify every statement (T1a-T5a) over random instances; exit 1 if a row fails")
    check.add_argument("--instances", type=int, default=1000, help="random instances per statement")
    check.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    check.add_argument("--only", nargs="+", metavar="NAME",
                       help="run only these checks (T1a T1b T1c T2ab T2c T3 T4a T4b T5a) or the rows of these "
                            "statements (any label the table prints: T2a T2b T3a T3b T3c ...)")
    check.add_argument("--impl", metavar="MODULE:OBJECT",
                       help="check your own functions: an object (module:object, a module, or file.py:object) with "
                            "some of the functions the statements use (attention forward/backward/attend/..., head "
                            "log_probs/probs/fisher/grad_h/...; docs/tutorials/own_attention.md); the statements it "
                            "gives none of are reported not applicable")
    check.add_argument("--json", action="store_true", help="print the table as JSON")
    check.set_defaults(run=run)

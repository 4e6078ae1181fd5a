"""The `isojax` command. Each subcommand parses its flags and calls one library function:

  check      every statement of docs/theory.md over random instances  (isojax.theory.run_checks)
  sweep      isotropy measures over a grid of synthetic families        (isojax.workflows.measures_sweep)
  train      a numeric LM to a safetensors checkpoint                    (isojax.workflows.train_model)
  embed      every layer's hidden states of a model on numeric data      (isojax.workflows.embed_data)
  reproduce  every experiment and figure of the study, from a checkout   (isojax.experiment.reproduce)

A user error (a bad flag, a missing file, invalid input) prints one line and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import isojax

__all__ = ["build_parser", "main"]


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
        return 1 if failed else 0
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


def _sweep(args) -> int:
    from isojax import workflows

    if args.config:
        spec = json.loads(Path(args.config).read_text())
    else:
        spec = {"grid": {"family": args.families, "n": [args.n], "d": [args.d], "knob": args.knobs,
                         "replicate": list(range(args.replicates))}, "seed": args.seed, "out": args.out}
    out = spec.get("out", args.out)
    rows = workflows.measures_sweep(spec["grid"], out, seed=spec.get("seed", 0))
    print(f"{len(rows)} cells in {out}")
    return 0


def _train(args) -> int:
    from isojax import workflows

    workflows.train_model(args.data, args.tokenizer, args.arch, args.layers, args.d_model, args.heads, args.seq_len,
                          args.steps, args.seed, Path(args.out))
    return 0


def _embed(args) -> int:
    from isojax import workflows

    hidden = workflows.embed_data(args.model, args.data, args.tokenizer, args.max_sequences, args.seed, Path(args.out))
    print(f"hidden states {hidden.shape} -> {args.out}")
    return 0


def _reproduce(args) -> int:
    from isojax import experiment

    written = experiment.reproduce(Path(args.out), "full" if args.full else "quick", args.only, args.seed)
    print(f"{len(written)} figure files written under {Path(args.out) / 'figures'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `isojax` command (every flag with its help and default)."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="isojax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"isojax {isojax.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", formatter_class=fmt,
                           help="verify every statement (T1a-T5a) over random instances; exit 1 if a row fails")
    check.add_argument("--instances", type=int, default=1000, help="random instances per statement")
    check.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    check.add_argument("--only", nargs="+", metavar="NAME", help="run only these checks (e.g. T1a T3)")
    check.add_argument("--json", action="store_true", help="print the table as JSON")
    check.set_defaults(run=_check)

    sw = sub.add_parser("sweep", formatter_class=fmt,
                        help="isotropy measures over a grid of synthetic families (resumable CSV + JSON sidecar)")
    sw.add_argument("--config", help="JSON file {grid: {family, n, d, knob, replicate}, seed, out}; overrides the flags")
    sw.add_argument("--families", nargs="+", default=["cone", "spiked", "mixture"], help="synthetic families")
    sw.add_argument("--knobs", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0], help="anisotropy knobs")
    sw.add_argument("--n", type=int, default=500, help="points per cloud")
    sw.add_argument("--d", type=int, default=64, help="dimension")
    sw.add_argument("--replicates", type=int, default=2, help="independent clouds per cell")
    sw.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    sw.add_argument("--out", default="results/sweep.csv", help="the results table")
    sw.set_defaults(run=_sweep)

    tr = sub.add_parser("train", formatter_class=fmt, help="train a numeric LM and save a safetensors checkpoint")
    tr.add_argument("--data", default="gp:rbf_0.1", help="teacher | gp:<kernel> | real:<name>")
    tr.add_argument("--tokenizer", choices=["bins", "digits"], default="bins", help="numeric tokenizer")
    tr.add_argument("--arch", choices=["decoder", "encoder"], default="decoder", help="architecture")
    tr.add_argument("--layers", type=int, default=2, help="transformer blocks")
    tr.add_argument("--d-model", type=int, default=64, help="model width")
    tr.add_argument("--heads", type=int, default=4, help="attention heads")
    tr.add_argument("--seq-len", type=int, default=64, help="training window, tokens")
    tr.add_argument("--steps", type=int, default=300, help="AdamW steps")
    tr.add_argument("--seed", type=int, default=0, help="PRNG seed")
    tr.add_argument("--out", default="results/model.safetensors", help="checkpoint path")
    tr.set_defaults(run=_train)

    em = sub.add_parser("embed", formatter_class=fmt,
                        help="per-layer hidden states of a model on numeric data, saved as .npz")
    em.add_argument("--model", required=True, help="a checkpoint from `isojax train`, or 'minilm'")
    em.add_argument("--data", default="real:sunspots", help="teacher | gp:<kernel> | real:<name>")
    em.add_argument("--tokenizer", choices=["bins", "digits"], default="bins", help="numeric tokenizer")
    em.add_argument("--max-sequences", type=int, default=64, help="windows to embed")
    em.add_argument("--seed", type=int, default=0, help="PRNG seed")
    em.add_argument("--out", default="results/hidden.npz", help="output .npz (array `hidden` [L+1, tokens, d])")
    em.set_defaults(run=_embed)

    rp = sub.add_parser("reproduce", formatter_class=fmt,
                        help="run the study's experiments (experiments/ of a checkout) and draw every figure")
    mode = rp.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, minutes on 2 CPU cores (the default)")
    mode.add_argument("--full", action="store_true", help="paper-scale sizes")
    rp.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments")
    rp.add_argument("--out", default=".", help="writes OUT/figures and OUT/results")
    rp.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    rp.set_defaults(run=_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `isojax` command; returns its exit status."""
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

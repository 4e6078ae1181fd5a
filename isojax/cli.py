"""The `isojax` command. Each subcommand parses its flags and calls one library function:

  check      every statement of docs/theory.md over random instances  (isojax.theory.run_checks)
  sweep      isotropy measures over a grid of synthetic families        (isojax.workflows.measures_sweep)
  train      a numeric LM to a safetensors checkpoint                    (isojax.workflows.train_model)
  embed      every layer's hidden states of a model on numeric data      (isojax.workflows.embed_data)
             or on sentences, one per line (--text)                      (isojax.workflows.embed_text)
  measure    every isotropy measure of saved hidden states, per layer    (isojax.workflows.measure_file)
  reproduce  every experiment and figure of the study, from a checkout   (isojax.experiment.reproduce)

A user error (a bad flag, a missing or malformed file, invalid input) prints one line and exits 2, never a
traceback, and is caught before any compute: nothing is written. Ctrl-C exits 130 with one line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import isojax

__all__ = ["LIMITS", "build_parser", "main"]

# Every numeric flag's range (inclusive), checked in one place (`_check_ranges`) before anything runs, for the
# flags and for the values of a sweep --config alike. The upper bounds keep a typo from asking for memory no
# machine has (a measures cell holds n × n distances and d × d covariances).
LIMITS: dict[str, tuple[int, int]] = {
    "instances": (1, 1_000_000),
    "seed": (0, 2**30),
    "n": (2, 20_000),
    "d": (2, 8192),
    "replicates": (1, 10_000),
    "replicate": (0, 10_000),
    "layers": (1, 64),
    "d_model": (1, 4096),
    "heads": (1, 256),
    "seq_len": (2, 8192),  # a next-token loss needs at least two tokens per window
    "steps": (1, 10_000_000),
    "max_sequences": (1, 1_000_000),
    "max_len": (2, 4096),
    "max_points": (3, 1_000_000),
    "jobs": (1, 64),
}

_SWEEP_KEYS = {"grid", "seed", "out"}
_GRID_KEYS = {"family", "n", "d", "knob", "replicate"}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _in_range(flag: str, value) -> None:
    low, high = LIMITS[flag]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"--{flag.replace('_', '-')} must be an integer in [{low}, {high}], got {value!r}")


def _check_ranges(args) -> None:
    """Every numeric flag of the parsed command line within LIMITS, and every float finite."""
    for flag in LIMITS:
        if getattr(args, flag, None) is not None:
            _in_range(flag, getattr(args, flag))
    for knob in getattr(args, "knobs", None) or []:
        if not math.isfinite(knob):
            raise ValueError(f"--knobs must be finite numbers, got {knob!r}")


def _check(args) -> int:
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


def _read_config(path: str) -> dict:
    """A sweep --config file as a dict, or a ValueError that says what is wrong with it."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ValueError(f"--config {path!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--config {path!r} could not be read: {err}") from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--config {path!r} is not valid JSON: {err}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"--config {path!r} must hold a JSON object {{grid, seed, out}}, got {type(spec).__name__}")
    unknown = set(spec) - _SWEEP_KEYS
    if unknown:
        raise ValueError(f"--config {path!r} has unknown keys {sorted(unknown)}; allowed: {sorted(_SWEEP_KEYS)}")
    if "grid" not in spec:
        raise ValueError(f"--config {path!r} has no 'grid'")
    return spec


def _check_grid(grid, where: str) -> None:
    """Every grid entry a non-empty list of values of the right type, each within LIMITS."""
    if not isinstance(grid, dict):
        raise ValueError(f"{where} 'grid' must be an object of lists, got {type(grid).__name__}")
    unknown = set(grid) - _GRID_KEYS
    if unknown:
        raise ValueError(f"{where} grid has unknown keys {sorted(unknown)}; allowed: {sorted(_GRID_KEYS)}")
    missing = {"family", "n", "d", "knob"} - set(grid)
    if missing:
        raise ValueError(f"{where} grid lacks {sorted(missing)}")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where} grid[{name!r}] must be a non-empty list, got {values!r}")
        for v in values:
            if name == "family" and not isinstance(v, str):
                raise ValueError(f"{where} grid['family'] must hold family names, got {v!r}")
            if name == "knob" and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ValueError(f"{where} grid['knob'] must hold finite numbers, got {v!r}")
            if name in ("n", "d", "replicate"):
                _in_range(name, v)


def _sweep_spec(args) -> tuple[dict, str, int]:
    """(grid, out, seed) from --config or the flags, checked alike."""
    if args.config:
        spec = _read_config(args.config)
        where = f"--config {args.config!r}"
        seed, out = spec.get("seed", args.seed), spec.get("out", args.out)
        if not isinstance(out, str) or not out:
            raise ValueError(f"{where} 'out' must be a file path, got {out!r}")
        _in_range("seed", seed)
    else:
        spec = {"grid": {"family": args.families, "n": [args.n], "d": [args.d], "knob": args.knobs,
                         "replicate": list(range(args.replicates))}}
        where, seed, out = "the flags'", args.seed, args.out
    _check_grid(spec["grid"], where)
    return spec["grid"], out, seed


def _sweep(args) -> int:
    from isojax import workflows

    grid, out, seed = _sweep_spec(args)
    rows = workflows.measures_sweep(grid, Path(out), seed=seed)
    print(f"{len(rows)} cells in {out}")
    return 0


def _train(args) -> int:
    from isojax import workflows

    workflows.train_model(args.data, args.tokenizer, args.arch, args.layers, args.d_model, args.heads, args.seq_len,
                          args.steps, args.seed, Path(args.out))
    return 0


def _embed(args) -> int:
    from isojax import workflows

    if args.text is not None:
        if args.data is not None:
            raise ValueError("give --data (numeric series) or --text (sentences), not both")
        hidden = workflows.embed_text(args.model, Path(args.text), args.pooling, args.max_len, Path(args.out))
    else:
        if args.pooling is not None:
            raise ValueError("--pooling applies to --text only")
        hidden = workflows.embed_data(args.model, args.data or "real:sunspots", args.tokenizer, args.max_sequences,
                                      args.seed, Path(args.out))
    print(f"hidden states {tuple(hidden.shape)} -> {args.out}")
    return 0


def _measure(args) -> int:
    from isojax import workflows

    rows, written = workflows.measure_file(Path(args.file), Path(args.out), measures=args.measures,
                                           max_points=args.max_points, seed=args.seed)
    print(f"{len(rows)} layers measured -> {', '.join(str(p) for p in written)}")
    return 0


def _reproduce(args) -> int:
    from isojax import experiment

    written = experiment.reproduce(Path(args.out), "full" if args.full else "quick", args.only, args.seed,
                                   jobs=args.jobs)
    print(f"{len(written)} figure files written under {Path(args.out) / 'figures'}")
    return 0


def _add_check(sub, fmt) -> None:
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
    check.set_defaults(run=_check)


def _add_sweep(sub, fmt) -> None:
    sw = sub.add_parser("sweep", formatter_class=fmt,
                        help="isotropy measures over a grid of synthetic families (resumable CSV + JSON sidecar)")
    sw.add_argument("--config",
                    help="JSON file {grid: {family, n, d, knob, replicate}, seed, out}; overrides the flags")
    sw.add_argument("--families", nargs="+", default=["cone", "spiked", "mixture"], help="synthetic families")
    sw.add_argument("--knobs", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0], help="anisotropy knobs")
    sw.add_argument("--n", type=int, default=500, help="points per cloud (2 to 20000)")
    sw.add_argument("--d", type=int, default=64, help="dimension (2 to 8192)")
    sw.add_argument("--replicates", type=int, default=2, help="independent clouds per cell")
    sw.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    sw.add_argument("--out", default="results/sweep.csv", help="the results table (.csv)")
    sw.set_defaults(run=_sweep)


DATA_HELP = "teacher | gp:<kernel> | real:<name> | csv:PATH[:COLUMN] | npy:PATH (your own series)"


def _add_train(sub, fmt) -> None:
    tr = sub.add_parser("train", formatter_class=fmt, help="train a numeric LM and save a safetensors checkpoint")
    tr.add_argument("--data", default="gp:rbf_0.1", help=DATA_HELP)
    tr.add_argument("--tokenizer", choices=["bins", "digits"], default="bins", help="numeric tokenizer")
    tr.add_argument("--arch", choices=["decoder", "encoder"], default="decoder", help="architecture")
    tr.add_argument("--layers", type=int, default=2, help="transformer blocks")
    tr.add_argument("--d-model", type=int, default=64, help="model width (a multiple of --heads)")
    tr.add_argument("--heads", type=int, default=4, help="attention heads")
    tr.add_argument("--seq-len", type=int, default=64, help="training window, tokens (at least 2)")
    tr.add_argument("--steps", type=int, default=300, help="AdamW steps")
    tr.add_argument("--seed", type=int, default=0, help="PRNG seed")
    tr.add_argument("--out", default="results/model.safetensors", help="checkpoint path (.safetensors)")
    tr.set_defaults(run=_train)


def _add_embed(sub, fmt) -> None:
    em = sub.add_parser("embed", formatter_class=fmt,
                        help="per-layer hidden states of a model on numeric data or sentences, saved as .npz")
    em.add_argument("--model", required=True, help="a checkpoint from `isojax train`, or 'minilm'")
    em.add_argument("--data", default=None, help=DATA_HELP + " (default real:sunspots)")
    em.add_argument("--tokenizer", choices=["bins", "digits"], default=None,
                    help="numeric tokenizer; default and only allowed value: the checkpoint's own")
    em.add_argument("--max-sequences", type=int, default=64, help="windows to embed")
    em.add_argument("--text", default=None, help="a text file, one sentence per line (instead of --data)")
    em.add_argument("--pooling", choices=["mean", "first", "last"], default=None,
                    help="with --text: one row per sentence (mean/first/last token) instead of one per token")
    em.add_argument("--max-len", type=int, default=128, help="with --text: tokens per sentence at most")
    em.add_argument("--seed", type=int, default=0, help="PRNG seed")
    em.add_argument("--out", default="results/hidden.npz",
                    help="output .npz: `hidden` [L+1, rows, d], and with --text `text_index`, `token_position` [rows]")
    em.set_defaults(run=_embed)


def _add_measure(sub, fmt) -> None:
    me = sub.add_parser("measure", formatter_class=fmt,
                        help="every isotropy measure of saved hidden states, per layer -> CSV + JSON + figure")
    me.add_argument("file", help=".npy/.npz/.safetensors holding [n, d] or [layers, n, d], or one array per layer")
    me.add_argument("--measures", nargs="+", metavar="NAME", default=None, help="only these measures (default: all)")
    me.add_argument("--max-points", type=int, default=2000, help="points per layer for the clustered cosine")
    me.add_argument("--seed", type=int, default=0, help="PRNG seed (layer l uses fold_in(key(seed), l))")
    me.add_argument("--out", default="results/measures.csv",
                    help="the table (.csv; its .csv.json sidecar and a .png/.pdf figure beside it)")
    me.set_defaults(run=_measure)


def _add_reproduce(sub, fmt) -> None:
    rp = sub.add_parser("reproduce", formatter_class=fmt,
                        help="run the study's experiments (experiments/ of a checkout) and draw every figure")
    mode = rp.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, minutes on 2 CPU cores (the default)")
    mode.add_argument("--full", action="store_true", help="paper-scale sizes")
    rp.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments")
    rp.add_argument("--out", default=".", help="writes OUT/figures and OUT/results")
    rp.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    rp.add_argument("--jobs", type=int, default=1,
                    help="experiments run at once, each in its own process; the tables do not depend on it. "
                         "Worth it with cores to spare: on 2 cores, 2 jobs saved 9%% of the time for 12%% more "
                         "memory")
    rp.set_defaults(run=_reproduce)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `isojax` command (every flag with its help and default)."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = _Parser(prog="isojax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"isojax {isojax.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_check, _add_sweep, _add_train, _add_embed, _add_measure, _add_reproduce):
        add(sub, fmt)
    return parser


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    """Run the `isojax` command; returns its exit status (0 done, 1 a check failed, 2 a user error, 130
    interrupted). Usage errors exit through SystemExit(2), as argparse does."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"isojax {args.command}"
    try:
        _check_ranges(args)
        return args.run(args)
    except ValueError as err:  # the library's word for invalid input: one line, never a traceback
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        detail = f": {_one_line(err)}" if str(err) else ""
        print(f"{prog}: interrupted{detail}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

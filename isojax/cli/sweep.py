"""`isojax sweep`: isotropy measures over a grid of synthetic families (`isojax.runs.measures.measures_sweep`)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from isojax.cli._common import add_force, add_limit, in_range

__all__ = ["add", "run"]

_SWEEP_KEYS = {"grid", "seed", "out"}
_GRID_KEYS = {"family", "n", "d", "knob", "replicate"}


def _read_config(path: str) -> dict:
    """A sweep --config file as a dict, or a ValueError that says what is wrong with it."""
    from isojax import inputs

    text = inputs.read_text(path, f"--config {path!r}")
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
                in_range(name, v)


def _sweep_spec(args) -> tuple[dict, str, int]:
    """(grid, out, seed) from --config or the flags, checked alike."""
    if args.config:
        spec = _read_config(args.config)
        where = f"--config {args.config!r}"
        seed, out = spec.get("seed", args.seed), spec.get("out", args.out)
        if not isinstance(out, str) or not out:
            raise ValueError(f"{where} 'out' must be a file path, got {out!r}")
        in_range("seed", seed)
    else:
        spec = {"grid": {"family": args.families, "n": [args.n], "d": [args.d], "knob": args.knobs,
                         "replicate": list(range(args.replicates))}}
        where, seed, out = "the flags'", args.seed, args.out
    _check_grid(spec["grid"], where)
    return spec["grid"], out, seed


def run(args: argparse.Namespace) -> int:
    """Run the subcommand on parsed flags; returns its exit status (a ValueError is a user error)."""
    from isojax.runs.measures import measures_sweep

    grid, out, seed = _sweep_spec(args)
    rows = measures_sweep(grid, Path(out), seed=seed, force=args.force)
    print(f"{len(rows)} cells in {out}")
    return 0


def add(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """The subcommand's parser, with its flags, help and defaults."""
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
    sw.add_argument("--out", default="results/sweep.csv",
                    help="the results table OUT.csv; derived from it: the sidecar OUT.csv.json, OUT.csv.digests (the "
                         "rows' digests while it is being written) and the lock OUT.csv.lock")
    add_force(sw, "OUT.csv.json, OUT.csv.digests")
    add_limit(sw, ("text_mb",))
    sw.set_defaults(run=run)

"""`isojax sweep`: isotropy measures over a grid of synthetic families (`isojax.runs.measures.measures_sweep`),
or your own cell function over a grid of its parameters (--cell: `isojax.runs.user_code.sweep_cell`); --import
runs your module first, so the families it registers can be named."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from isojax.cli._common import add_force, add_limit, in_range
from isojax.distributions import BUILTIN_FAMILIES

__all__ = ["add", "run"]

_SWEEP_KEYS = {"grid", "seed", "out", "cell", "import"}
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


def _check_grid(grid, where: str, cell: str | None = None) -> None:
    """Every grid entry a non-empty list of values of the right type, each within LIMITS (your own cell's
    grid: non-empty lists, its keys checked against the cell's parameters when it is loaded)."""
    if not isinstance(grid, dict):
        raise ValueError(f"{where} 'grid' must be an object of lists, got {type(grid).__name__}")
    if cell is not None:
        for name, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where} grid[{name!r}] must be a non-empty list, got {values!r}")
        return
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


def _sweep_spec(args) -> tuple[dict, str, int, str | None, list[str]]:
    """(grid, out, seed, cell, imports) from --config or the flags, checked alike."""
    cell, imports = args.cell, list(args.imports or [])
    if args.config:
        spec = _read_config(args.config)
        where = f"--config {args.config!r}"
        seed, out = spec.get("seed", args.seed), spec.get("out", args.out)
        cell, imports = spec.get("cell", cell), spec.get("import", imports)
        if not isinstance(out, str) or not out:
            raise ValueError(f"{where} 'out' must be a file path, got {out!r}")
        if cell is not None and (not isinstance(cell, str) or not cell):
            raise ValueError(f"{where} 'cell' must be MODULE:NAME or FILE.py:NAME, got {cell!r}")
        if not isinstance(imports, list) or not all(isinstance(i, str) and i for i in imports):
            raise ValueError(f"{where} 'import' must be a list of modules or .py files, got {imports!r}")
        in_range("seed", seed)
    else:
        spec = {"grid": {"family": args.families, "n": [args.n], "d": [args.d], "knob": args.knobs,
                         "replicate": list(range(args.replicates))}}
        where, seed, out = "the flags'", args.seed, args.out
    _check_grid(spec["grid"], where, cell)
    return spec["grid"], out, seed, cell, imports


def run(args: argparse.Namespace) -> int:
    """Run the subcommand on parsed flags; returns its exit status (a ValueError is a user error)."""
    from isojax.runs import user_code
    from isojax.runs.measures import measures_sweep

    grid, out, seed, cell, imports = _sweep_spec(args)
    if cell is not None:
        rows = user_code.sweep_cell(cell, grid, Path(out), seed=seed, imports=imports, force=args.force)
    else:
        for spec in imports:  # what they register (distributions.register_family) can be named in the grid
            user_code.import_code(spec)
        rows = measures_sweep(grid, Path(out), seed=seed, force=args.force)
    print(f"{len(rows)} cells in {out}")
    return 0


def add(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """The subcommand's parser, with its flags, help and defaults."""
    sw = sub.add_parser("sweep", formatter_class=fmt,
                        help="isotropy measures over a grid of synthetic families (resumable CSV + JSON sidecar)")
    sw.add_argument("--config",
                    help="JSON file {grid: {family, n, d, knob, replicate}, seed, out, cell, import}; overrides "
                         "the flags (with a cell, the grid's keys are the cell's parameters)")
    sw.add_argument("--families", nargs="+", default=["cone", "spiked", "mixture"],
                    help="synthetic families: " + " ".join(BUILTIN_FAMILIES) + ", or one your --import registers")
    sw.add_argument("--import", dest="imports", action="append", metavar="MODULE_OR_FILE",
                    help="import your module (a dotted name, or a .py file) first, e.g. one that calls "
                         "isojax.distributions.register_family; repeatable")
    sw.add_argument("--cell", metavar="MODULE:NAME",
                    help="sweep your own cell function fn(key, **parameters) -> dict (MODULE:NAME or FILE.py:NAME) "
                         "instead of the isotropy measures; the grid (--config, or the flags) gives its parameters")
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

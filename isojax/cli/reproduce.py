"""`isojax reproduce`: every experiment and figure of the study, from a checkout (its `experiments/runner.py`)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

import isojax

__all__ = ["add", "run"]

def find_root(start: Path | None = None) -> Path:
    """The checkout that holds the study (`experiments/runner.py`): the parent of the isojax package (an editable
    install), else `start` (default: the working directory) or one of its parents. ValueError outside one."""
    candidates = [Path(isojax.__file__).resolve().parents[1]]
    here = Path(start or Path.cwd()).resolve()
    candidates += [here, *here.parents]
    for root in candidates:
        if (root / "experiments" / "runner.py").is_file() and (root / "experiments" / "__init__.py").is_file():
            return root
    raise ValueError("the study's experiments live in a checkout of the isojax repository (its experiments/ "
                     "folder); run this from a clone (git clone ... && pip install -e .), not from an installed "
                     "wheel alone")


def study_runner(start: Path | None = None) -> ModuleType:
    """`experiments.runner` of the checkout `find_root` finds, imported as the package `experiments`."""
    root = find_root(start)
    loaded = sys.modules.get("experiments")
    if loaded is not None and Path(loaded.__file__).resolve().parent != root / "experiments":
        raise ValueError(f"another package named 'experiments' ({loaded.__file__}) is already imported; run isojax "
                         f"reproduce in a fresh process")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("experiments.runner")


def _sets(items: list[str] | None) -> dict[str, list[str]]:
    """--set NAME.KEY=VALUE ... -> {NAME: ["KEY=VALUE", ...]} (the values are checked by the runner)."""
    sets: dict[str, list[str]] = {}
    for item in items or []:
        name, dot, change = item.partition(".")
        if not dot or not name or "=" not in change:
            raise ValueError(f"--set must be NAME.KEY=VALUE (e.g. guarantee.steps=40), got {item!r}")
        sets.setdefault(name, []).append(change)
    return sets


def run(args: argparse.Namespace) -> int:
    """Run the subcommand on parsed flags; returns its exit status (a ValueError is a user error)."""
    sets = _sets(args.sets)
    runner = study_runner()
    written = runner.reproduce(Path(args.out), "full" if args.full else "quick", args.only, args.seed,
                                   jobs=args.jobs, sets=sets)
    print(f"{len(written)} figure files written under {Path(args.out) / 'figures'}")
    return 0


def add(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """The subcommand's parser, with its flags, help and defaults."""
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
    rp.add_argument("--set", dest="sets", nargs="+", action="extend", metavar="NAME.KEY=VALUE",
                    help="change a size parameter of experiment NAME (a key of its SIZES, e.g. guarantee.steps=40; "
                         "lists as 0,0.5,1); it then writes into OUT/custom/NAME_<size>+KEY=VALUE/, never over a "
                         "standard table, and its sidecars record the change")
    rp.set_defaults(run=run)

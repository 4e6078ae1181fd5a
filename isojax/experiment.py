"""Running the study's experiments: one script per figure or claim in the repository's `experiments/` folder.

Every experiment script defines
- `SIZES`: a table {"tiny": {...}, "quick": {...}, "full": {...}} of the sizes it runs at (tiny is for tests),
- `compute(out, size, seed) -> list[Path]`: runs the experiment and writes its tables to `out/results`,
- `plot(out, size) -> list[Path]`: reads those tables only and draws the figures into `out/figures`,
so every figure can be redrawn without recomputing. `python experiments/<name>.py --quick --out DIR` runs one
(`main` below); `isojax reproduce` runs them all (`reproduce`). The scripts are the study, not the library:
they live in a checkout of the repository, and are found from there (`find_root`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

__all__ = ["SIZE_NAMES", "find_root", "names", "load", "run", "main", "reproduce", "tag"]

SIZE_NAMES = ("tiny", "quick", "full")
_PACKAGE = "isojax_experiments"  # the module name the scripts are loaded under (not `experiments`: too common)


def find_root(start: Path | None = None) -> Path:
    """The checkout that holds `experiments/`: the parent of the isojax package (an editable install), else
    `start` (default: the working directory) or one of its parents. ValueError outside a checkout."""
    candidates = [Path(__file__).resolve().parents[1]]
    here = Path(start or Path.cwd()).resolve()
    candidates += [here, *here.parents]
    for root in candidates:
        if (root / "experiments" / "__init__.py").is_file():
            return root
    raise ValueError("the study's experiments live in a checkout of the isojax repository (its experiments/ "
                     "folder); run this from a clone (git clone ... && pip install -e .), not from an installed "
                     "wheel alone")


def _package(root: Path | None = None) -> ModuleType:
    root = find_root(root)
    folder = root / "experiments"
    loaded = sys.modules.get(_PACKAGE)
    if loaded is not None and Path(loaded.__file__).parent == folder:
        return loaded
    spec = importlib.util.spec_from_file_location(_PACKAGE, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PACKAGE] = module
    spec.loader.exec_module(module)
    return module


def names(root: Path | None = None) -> list[str]:
    """The experiments in the order `isojax reproduce` runs them."""
    return list(_package(root).NAMES)


def load(name: str, root: Path | None = None) -> ModuleType:
    """The experiment script `experiments/<name>.py` as a module (ValueError for an unknown name)."""
    known = names(root)
    if name not in known:
        raise ValueError(f"experiment must be one of {known}, got {name!r}")
    return importlib.import_module(f"{_PACKAGE}.{name}")


def _size(size: str) -> str:
    if size not in SIZE_NAMES:
        raise ValueError(f"size must be one of {list(SIZE_NAMES)}, got {size!r}")
    return size


def run(name: str, out: Path, size: str = "quick", seed: int = 0, compute: bool = True) -> list[Path]:
    """Run one experiment: compute its tables (unless compute=False), then draw its figures from them."""
    module = load(name)
    size, out = _size(size), Path(out)
    if compute:
        module.compute(out, size, seed)
    return module.plot(out, size)


def reproduce(out: Path, size: str = "quick", only: list[str] | None = None, seed: int = 0,
              log: Callable[[str], object] = print) -> list[Path]:
    """Run every experiment (or `only` those), recording each one's wall time and machine in
    out/results/reproduce_timings.json and passing one line per experiment to `log`; returns the figure files
    written."""
    size, out = _size(size), Path(out)
    selected = list(only) if only else names()
    for name in selected:
        load(name)  # every name is checked before anything runs
    written = []
    for name in selected:
        start = time.perf_counter()
        paths = run(name, out, size, seed)
        seconds = time.perf_counter() - start
        written += paths
        _record_timing(out / "results" / "reproduce_timings.json", size, name, seconds, seed)
        log(f"{name}: {seconds:.1f} s -> {', '.join(str(p) for p in paths)}")
    return written


def _record_timing(path: Path, mode: str, name: str, seconds: float, seed: int) -> None:
    """Merge one experiment's wall time into path ({mode: {name: entry}})."""
    from isojax import results

    table = json.loads(path.read_text()) if path.exists() else {}
    table.setdefault(mode, {})[name] = {"seconds": round(seconds, 1), "seed": seed,
                                        "date": time.strftime("%Y-%m-%d %H:%M"), **results.machine()}
    path.parent.mkdir(parents=True, exist_ok=True)
    results.atomic_write(path, json.dumps(table, indent=2))


def main(script: str, argv: list[str] | None = None) -> int:
    """Entry point of `python experiments/<name>.py [--tiny|--quick|--full] [--out DIR] [--seed S] [--plot-only]`."""
    name = Path(script).stem
    module = load(name, Path(script).resolve().parents[1])
    parser = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=module.__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sizes = parser.add_mutually_exclusive_group()
    for size in SIZE_NAMES:
        sizes.add_argument(f"--{size}", dest="size", action="store_const", const=size,
                           help=f"{size} sizes: {module.SIZES[size]}")
    parser.add_argument("--out", default=".", help="writes OUT/results (tables) and OUT/figures")
    parser.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    parser.add_argument("--plot-only", action="store_true", help="redraw the figures from existing tables")
    args = parser.parse_args(argv)
    paths = run(name, Path(args.out), args.size or "quick", args.seed, compute=not args.plot_only)
    print("\n".join(str(p) for p in paths))
    return 0


def tag(size: str) -> str:
    """The suffix of a table's file name at this size ("_tiny", "_quick", "" for full)."""
    return {"tiny": "_tiny", "quick": "_quick", "full": ""}[_size(size)]

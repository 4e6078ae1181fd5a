"""Running the study's experiments: one script per figure or claim in this folder (the study, not the library).

Every experiment script defines
- `SIZES`: a table {"tiny": {...}, "quick": {...}, "full": {...}} of the sizes it runs at (tiny is for tests),
- `compute(out, size, seed) -> list[Path]`: runs the experiment and writes its tables to `out/results`,
- `plot(out, size) -> list[Path]`: reads those tables only and draws the figures into `out/figures`,
so every figure can be redrawn without recomputing. `python experiments/<name>.py --quick --out DIR` runs one
(`main` below); `isojax reproduce` runs them all (`reproduce`), importing this folder as the package
`experiments` from the checkout that holds it.

A size can be changed from the command line without editing SIZES: `python experiments/<name>.py --quick --set
steps=40` (or `isojax reproduce --set NAME.steps=40`), each value checked against the key and type of the
script's SIZES (`parse_sets`). Such a run is a size of its own, named after its changes ("quick+steps=40",
`size_label`): it writes into OUT/custom/<name>_<label>/ (results and figures; `custom_folder`), so it never
overwrites a standard table, and every sidecar it writes records the size and the changes (under "notes").
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

__all__ = ["SIZE_NAMES", "ROOT", "CUSTOM", "names", "load", "run", "main", "reproduce", "tag", "parse_sets",
           "size_label", "custom_folder"]

SIZE_NAMES = ("tiny", "quick", "full")
_PACKAGE = __name__.rpartition(".")[0] or "experiments"  # the package this folder is imported as
ROOT = Path(__file__).resolve().parents[1]  # the checkout


def names() -> list[str]:
    """The experiments in the order `isojax reproduce` runs them."""
    return list(importlib.import_module(_PACKAGE).NAMES)


def load(name: str) -> ModuleType:
    """The experiment script `experiments/<name>.py` as a module (ValueError for an unknown name)."""
    known = names()
    if name not in known:
        raise ValueError(f"experiment must be one of {known}, got {name!r}")
    return importlib.import_module(f"{_PACKAGE}.{name}")


def _size(size: str) -> str:
    if size not in SIZE_NAMES and size not in _CHANGED:
        raise ValueError(f"size must be one of {list(SIZE_NAMES)}, got {size!r}")
    return size


# ----------------------------------------------------------------------------------------- sizes changed by --set

CUSTOM = "custom"  # OUT/custom/<name>_<label>/: where an experiment run at a changed size writes
_CHANGED: dict[str, tuple[str, dict]] = {}  # label -> (standard size, changes), while such a run is in progress


def _standard_values(module: ModuleType, key: str) -> list:
    """Every standard value of a SIZES key (list entries flattened), for the type and sign a change must keep."""
    values = []
    for size in SIZE_NAMES:
        value = module.SIZES[size].get(key)
        values += list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]
    return values


def _coerce(key: str, value, standard, shown: str):
    """`value` (text from a command line, or a Python value) as the type of `standard`, or ValueError."""
    def bad(kind):
        return ValueError(f"{shown}: {key} must be {kind} (like {standard!r}), got {value!r}")

    if isinstance(standard, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        raise bad("true or false")
    if isinstance(standard, int):
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad("an integer") from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad("an integer")
    if isinstance(standard, float):
        try:
            number = float(value.strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
        if isinstance(value, bool) or not math.isfinite(number):
            raise bad("a finite number")
        return number
    if isinstance(standard, str):
        if not isinstance(value, str) or not value or "\n" in value:
            raise bad("text on one line")
        return value
    if isinstance(standard, (list, tuple)):
        if not standard:
            raise ValueError(f"{shown}: {key} is an empty list at this size and cannot be set")
        items = value
        if isinstance(value, str):
            if value.strip().startswith("["):
                try:
                    items = json.loads(value)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{shown}: {key} is not a JSON list: {err}") from None
            else:
                items = [part.strip() for part in value.split(",")]
        if not isinstance(items, (list, tuple)) or not items or any(i == "" for i in items):
            raise bad("a non-empty list (comma-separated, or JSON)")
        return type(standard)(_coerce(key, i, standard[0], shown) for i in items)
    if isinstance(standard, dict):  # a group of settings: the keys given replace the standard ones
        items = value
        if isinstance(value, str):
            try:
                items = json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError(f"{shown}: {key} is not a JSON object: {err}") from None
        if not isinstance(items, dict) or not items:
            raise bad("a non-empty JSON object")
        unknown = sorted(set(items) - set(standard))
        if unknown:
            raise ValueError(f"{shown}: {key} has no {unknown}; its keys: {sorted(standard)}")
        return {**standard, **{k: _coerce(f"{key}.{k}", v, standard[k], shown) for k, v in items.items()}}
    raise ValueError(f"{shown}: {key} holds a {type(standard).__name__} and cannot be set from the command line")


def _keep_sign(key: str, value, standard: list, shown: str) -> None:
    """A count that is at least 1 at every standard size stays at least 1; a number never negative stays >= 0."""
    numbers = [v for v in standard if isinstance(v, (int, float)) and not isinstance(v, bool)]
    given = [v for v in (value if isinstance(value, (list, tuple)) else [value])
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numbers or not given:
        return
    if all(isinstance(v, int) and v >= 1 for v in numbers) and min(given) < 1:
        raise ValueError(f"{shown}: {key} must be at least 1, got {value!r}")
    if all(v >= 0 for v in numbers) and min(given) < 0:
        raise ValueError(f"{shown}: {key} must be non-negative, got {value!r}")


def parse_sets(name: str, size: str, sets: list[str] | dict | None) -> dict:
    """The changes to experiment `name`'s standard `size` that `sets` asks for, checked against its SIZES:
    sets: ["KEY=VALUE", ...] (a command line's) or {KEY: value}. KEY must be a key of SIZES[size]; VALUE takes
    the type of the standard value (an integer, a number, true/false, text, a list of them written "0,0.5,1"
    or as JSON "[0, 0.5, 1]", or for a group of settings a JSON object of some of its keys); a count that is
    at least 1 at every standard size must stay at least 1, and a number never negative must stay
    non-negative. Values equal to the standard one are dropped (no change, no custom size). -> {KEY: value};
    ValueError naming the experiment, the key and what it takes."""
    module = load(name)
    size = _size(size)
    standard = module.SIZES[size]
    shown = f"experiments/{name}.py --set"
    if isinstance(sets, dict):
        items = list(sets.items())
    else:
        items = []
        for item in sets or []:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{shown} must be KEY=VALUE, got {item!r}")
            items.append((key.strip(), value))
    changes: dict = {}
    for key, value in items:
        if key not in standard:
            raise ValueError(f"{shown}: {name} has no size parameter {key!r}; its parameters: {sorted(standard)}")
        if key in changes:
            raise ValueError(f"{shown}: {key} is given twice")
        changes[key] = _coerce(key, value, standard[key], shown)
        _keep_sign(key, changes[key], _standard_values(module, key), shown)
    return {k: v for k, v in changes.items() if v != standard[k]}


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def size_label(size: str, changes: dict) -> str:
    """The name of a changed size: "quick+steps=40+knobs=0.0,1.0" (keys sorted), or "quick+set-<digest>" when
    that would be long or hold characters a file name should not."""
    from isojax.runs.keys import digest

    label = "+".join([size, *(f"{k}={_text(v)}" for k, v in sorted(changes.items()))])
    if len(label) > 80 or not re.fullmatch(r"[A-Za-z0-9_.,=+-]+", label):
        return f"{size}+set-{digest(changes)[:8]}"
    return label


def custom_folder(out: Path, name: str, label: str) -> Path:
    """Where experiment `name` at the changed size `label` writes its results/ and figures/: never a standard
    table's folder."""
    return Path(out) / CUSTOM / f"{name}_{label}"


@contextlib.contextmanager
def _changed_size(module: ModuleType, size: str, changes: dict, label: str) -> Iterator[None]:
    """The script's SIZES holds the changed size under its label while the block runs, so `SIZES[size]` in its
    compute and plot reads it."""
    if label in module.SIZES:
        raise ValueError(f"size {label!r} is already defined by {module.__name__}")
    module.SIZES[label] = {**module.SIZES[size], **changes}
    _CHANGED[label] = (size, changes)
    try:
        yield
    finally:
        del module.SIZES[label]
        del _CHANGED[label]


def run(name: str, out: Path, size: str = "quick", seed: int = 0, compute: bool = True,
        sets: list[str] | dict | None = None) -> list[Path]:
    """Run one experiment: compute its tables (unless compute=False), then draw its figures from them. `sets`
    changes the size (`parse_sets`): the experiment then runs at a size of its own, in `custom_folder`, its
    sidecars recording the size and the changes. -> the figure files"""
    from isojax.runs import results

    module = load(name)
    size, out = _size(size), Path(out)
    changes = parse_sets(name, size, sets) if sets else {}
    if not changes:
        if compute:
            module.compute(out, size, seed)
        return module.plot(out, size)
    label = size_label(size, changes)
    folder = custom_folder(out, name, label)
    with _changed_size(module, size, changes, label), results.noting(size=size, set=changes, label=label):
        if compute:
            module.compute(folder, label, seed)
        return module.plot(folder, label)


def reproduce(out: Path, size: str = "quick", only: list[str] | None = None, seed: int = 0,
              log: Callable[[str], object] = print, jobs: int = 1,
              sets: dict[str, list[str] | dict] | None = None) -> list[Path]:
    """Run every experiment (or `only` those), recording each one's wall time and machine in
    out/results/reproduce_timings.json and passing one line per experiment to `log`; returns the figure files
    written.

    jobs > 1 runs that many experiments at once, each in its own Python process (`python -m experiments.runner`),
    slowest first (by the timings of an earlier run in `out`, else the two training experiments first): the
    experiments share no state but the model cache, whose entries are written atomically under distinct
    names, so the tables are the same bytes as with jobs=1 (each process compiles the same programs). It pays
    most with cores to spare: XLA already spreads one experiment over about 1.3 cores, and on 2 cores
    `--quick` took 589 s with 2 jobs against 649 s with 1, back to back, at 3.55 GB against 3.17 GB of memory
    in all (BENCHMARKS.md). A failing experiment stops the others and raises RuntimeError with the end of its
    output; Ctrl-C stops them all. Each child's output is printed when it ends. The children inherit the
    environment (JAX_ENABLE_X64, XLA_FLAGS), not settings made in this process with `jax.config.update`, and the
    seconds recorded for them include starting Python and JAX.

    sets: {name: changes} changes the size of the experiments it names (`parse_sets`; each must be selected),
    every change checked before anything runs; their timings are recorded under their size's label."""
    size, out = _size(size), Path(out)
    selected = list(only) if only else names()
    for name in selected:
        load(name)  # every name is checked before anything runs
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    sets = dict(sets or {})
    left_out = sorted(set(sets) - set(selected))
    if left_out:
        raise ValueError(f"--set names {left_out}, which this run leaves out (it runs {selected})")
    changes = {name: parse_sets(name, size, value) for name, value in sets.items()}
    modes = {name: size_label(size, changes[name]) if changes.get(name) else size for name in selected}
    if jobs > 1 and len(selected) > 1:
        return _reproduce_parallel(out, size, selected, seed, log, jobs, changes, modes)
    written = []
    for name in selected:
        start = time.perf_counter()
        paths = run(name, out, size, seed, sets=changes.get(name))
        written += paths
        _finished(out, modes[name], name, time.perf_counter() - start, seed, paths, log)
    return written


def _finished(out: Path, mode: str, name: str, seconds: float, seed: int, paths: list[Path],
              log: Callable[[str], object]) -> None:
    """Record one finished experiment's wall time (under its size, or a changed size's label) and pass its line
    to `log` (serial and parallel alike)."""
    _record_timing(out / "results" / "reproduce_timings.json", mode, name, seconds, seed)
    log(f"{name}: {seconds:.1f} s -> {', '.join(str(p) for p in paths)}")


_PATHS_MARK = "isojax-experiment-paths: "  # the line a child process ends its output with


# seconds at --quick on 2 cores (BENCHMARKS.md): the estimate for an experiment `out` has no timing of
_EXPECTED_SECONDS = {"trained_isotropy": 346.0, "intervention": 141.0}


def _slowest_first(out: Path, size: str, selected: list[str]) -> list[str]:
    """`selected`, slowest first by an earlier run's timings in `out`, else by `_EXPECTED_SECONDS`; the rest
    after them, in their order."""
    path = out / "results" / "reproduce_timings.json"
    try:
        known = json.loads(path.read_text()).get(size, {}) if path.exists() else {}
        seconds = {name: float(known[name]["seconds"]) for name in selected if name in known}
    except (ValueError, KeyError, TypeError, AttributeError):
        seconds = {}
    seconds = {**_EXPECTED_SECONDS, **seconds}
    return sorted(selected, key=lambda name: -seconds.get(name, 0.0))


def _reproduce_parallel(out: Path, size: str, selected: list[str], seed: int, log: Callable[[str], object],
                        jobs: int, changes: dict[str, dict], modes: dict[str, str]) -> list[Path]:
    import subprocess
    import tempfile

    queue = _slowest_first(out, size, selected)
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    paths: dict[str, list[Path]] = {}
    root = ROOT

    def start(name):
        output = tempfile.TemporaryFile("w+")  # one per child: its output is printed whole when it ends
        cmd = [sys.executable, "-m", f"{_PACKAGE}.runner", name, size, str(out.resolve()), str(seed),
               json.dumps(changes.get(name) or {})]
        running[name] = (subprocess.Popen(cmd, cwd=root, stdout=output, stderr=subprocess.STDOUT, text=True),
                         time.perf_counter(), output)

    try:
        while queue or running:
            while queue and len(running) < jobs:
                start(queue.pop(0))
            time.sleep(0.2)
            for name, (proc, began, output) in list(running.items()):
                if proc.poll() is None:
                    continue
                seconds = time.perf_counter() - began
                del running[name]
                output.seek(0)
                text = output.read()
                output.close()
                if proc.returncode != 0:
                    raise RuntimeError(f"experiment {name} failed (exit {proc.returncode}); the end of its "
                                       f"output:\n{text[-3000:]}")
                lines = text.splitlines()
                marks = [line for line in lines if line.startswith(_PATHS_MARK)]
                # what the experiment printed or warned (e.g. a model cache entry retrained), not interleaved
                sys.stdout.write("".join(line + "\n" for line in lines if not line.startswith(_PATHS_MARK)))
                paths[name] = [out / Path(p).relative_to(out.resolve())
                               for p in json.loads(marks[-1][len(_PATHS_MARK):])]
                _finished(out, modes[name], name, seconds, seed, paths[name], log)
    finally:
        for proc, _, _output in running.values():  # on an error or Ctrl-C: stop the others, then wait for them
            proc.terminate()
        for proc, _, output in running.values():
            proc.wait()
            output.close()
    return [p for name in selected for p in paths[name]]


def _record_timing(path: Path, mode: str, name: str, seconds: float, seed: int) -> None:
    """Merge one experiment's wall time into path ({mode: {name: entry}})."""
    from isojax.runs import results

    table = json.loads(path.read_text()) if path.exists() else {}
    table.setdefault(mode, {})[name] = {"seconds": round(seconds, 1), "seed": seed,
                                        "date": time.strftime("%Y-%m-%d %H:%M"), **results.machine()}
    path.parent.mkdir(parents=True, exist_ok=True)
    results.atomic_write(path, json.dumps(table, indent=2))


def main(script: str, argv: list[str] | None = None) -> int:
    """Entry point of `python experiments/<name>.py [--tiny|--quick|--full] [--set KEY=VALUE ...] [--out DIR]
    [--seed S] [--plot-only]`. Sets XLA's CPU flags first (`isojax.runs.runtime.configure_xla`), as every entry
    point does. A bad --set is one line on stderr and exit status 2."""
    from isojax.runs import runtime
    runtime.configure_xla()
    name = Path(script).stem
    module = load(name)
    parser = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=module.__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sizes = parser.add_mutually_exclusive_group()
    for size in SIZE_NAMES:
        sizes.add_argument(f"--{size}", dest="size", action="store_const", const=size,
                           help=f"{size} sizes: {module.SIZES[size]}")
    parser.add_argument("--out", default=".", help="writes OUT/results (tables) and OUT/figures")
    parser.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    parser.add_argument("--plot-only", action="store_true", help="redraw the figures from existing tables")
    parser.add_argument("--set", dest="sets", nargs="+", action="extend", metavar="KEY=VALUE", default=[],
                        help=f"change a size parameter ({', '.join(sorted(module.SIZES['quick']))}); lists as "
                             f"0,0.5,1. Writes into OUT/{CUSTOM}/{name}_<size>+KEY=VALUE/, never over a standard "
                             "table")
    args = parser.parse_args(argv)
    try:
        paths = run(name, Path(args.out), args.size or "quick", args.seed, compute=not args.plot_only,
                    sets=args.sets)
    except ValueError as err:
        if not args.sets or "--set" not in str(err):
            raise
        print(f"{parser.prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print("\n".join(str(p) for p in paths))
    return 0


def tag(size: str) -> str:
    """The suffix of a table's file name at this size ("_tiny", "_quick", "" for full; a changed size's
    "_<label>", e.g. "_quick+steps=40")."""
    if _size(size) in _CHANGED:
        return f"_{size}"
    return {"tiny": "_tiny", "quick": "_quick", "full": ""}[size]


if __name__ == "__main__":  # one experiment in a child process of `reproduce(jobs > 1)`: NAME SIZE OUT SEED SETS
    from isojax.runs import runtime
    runtime.configure_xla()
    _name, _size_name, _out, _seed = sys.argv[1:5]
    _sets = json.loads(sys.argv[5]) if len(sys.argv) > 5 else None
    _written = run(_name, Path(_out), _size_name, int(_seed), sets=_sets)
    print(_PATHS_MARK + json.dumps([str(p) for p in _written]), flush=True)

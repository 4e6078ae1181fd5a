"""Running the study's experiments: one script per figure or claim in this folder (the study, not the library).

Every experiment script defines
- `SIZES`: a table {"tiny": {...}, "quick": {...}, "full": {...}} of the sizes it runs at (tiny is for tests),
- `compute(out, size, seed) -> list[Path]`: runs the experiment and writes its tables to `out/results`,
- `plot(out, size) -> list[Path]`: reads those tables only and draws the figures into `out/figures`,
so every figure can be redrawn without recomputing. `python experiments/<name>.py --quick --out DIR` runs one
(`main` below); `isojax reproduce` runs them all (`reproduce`), importing this folder as the package
`experiments` from the checkout that holds it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

__all__ = ["SIZE_NAMES", "ROOT", "names", "load", "run", "main", "reproduce", "tag"]

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
              log: Callable[[str], object] = print, jobs: int = 1) -> list[Path]:
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
    seconds recorded for them include starting Python and JAX."""
    size, out = _size(size), Path(out)
    selected = list(only) if only else names()
    for name in selected:
        load(name)  # every name is checked before anything runs
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if jobs > 1 and len(selected) > 1:
        return _reproduce_parallel(out, size, selected, seed, log, jobs)
    written = []
    for name in selected:
        start = time.perf_counter()
        paths = run(name, out, size, seed)
        written += paths
        _finished(out, size, name, time.perf_counter() - start, seed, paths, log)
    return written


def _finished(out: Path, size: str, name: str, seconds: float, seed: int, paths: list[Path],
              log: Callable[[str], object]) -> None:
    """Record one finished experiment's wall time and pass its line to `log` (serial and parallel alike)."""
    _record_timing(out / "results" / "reproduce_timings.json", size, name, seconds, seed)
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
                        jobs: int) -> list[Path]:
    import subprocess
    import tempfile

    queue = _slowest_first(out, size, selected)
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    paths: dict[str, list[Path]] = {}
    root = ROOT

    def start(name):
        output = tempfile.TemporaryFile("w+")  # one per child: its output is printed whole when it ends
        cmd = [sys.executable, "-m", f"{_PACKAGE}.runner", name, size, str(out.resolve()), str(seed)]
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
                _finished(out, size, name, seconds, seed, paths[name], log)
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
    """Entry point of `python experiments/<name>.py [--tiny|--quick|--full] [--out DIR] [--seed S] [--plot-only]`.
    Sets XLA's CPU flags first (`isojax.runs.runtime.configure_xla`), as every entry point does."""
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
    args = parser.parse_args(argv)
    paths = run(name, Path(args.out), args.size or "quick", args.seed, compute=not args.plot_only)
    print("\n".join(str(p) for p in paths))
    return 0


def tag(size: str) -> str:
    """The suffix of a table's file name at this size ("_tiny", "_quick", "" for full)."""
    return {"tiny": "_tiny", "quick": "_quick", "full": ""}[_size(size)]


if __name__ == "__main__":  # one experiment in a child process of `reproduce(jobs > 1)`: NAME SIZE OUT SEED
    from isojax.runs import runtime
    runtime.configure_xla()
    _name, _size_name, _out, _seed = sys.argv[1:5]
    _written = run(_name, Path(_out), _size_name, int(_seed))
    print(_PATHS_MARK + json.dumps([str(p) for p in _written]), flush=True)

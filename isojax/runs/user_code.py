"""Your own code in isojax's commands: a module or file imported first (`isojax sweep --import`), so the
families it registers (`distributions.register_family`) can be named, and a cell function named as
MODULE:NAME or FILE.py:NAME (`isojax sweep --cell`), swept over a grid of its own parameters.

A file is imported under the dotted name its package folders give it (`experiments/my_cells.py` inside a
package `experiments` is `experiments.my_cells`), from the folder above them, as `import` in a notebook
started there would: the same code runs wherever it is named from. A dotted name is looked up from the
working directory first, as `python -m` does.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

__all__ = ["import_code", "load_object", "check_cell", "sweep_cell"]


def _module_name(path: Path) -> tuple[Path, str]:
    """(the folder to import from, the dotted name) of a .py file: up through the folders that are packages."""
    parts, folder = [path.stem], path.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return folder, ".".join(parts)


def _where_it_failed(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def import_code(spec: str, flag: str = "--import") -> ModuleType:
    """Import a module by dotted name ("my_families", "lab.cells") or a .py file ("path/to/my_families.py"),
    running whatever registration it does at import. ValueError (naming `flag`) for a missing module or file,
    or one that fails to import, with the error and where it happened on one line."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"{flag} must name a module or a .py file, got {spec!r}")
    return _import(spec, f"{flag} {spec!r}")


def _import(spec: str, said: str) -> ModuleType:
    """import_code, its errors starting with `said` (the flag and what the user wrote)."""
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec).resolve()
        if not path.is_file() or path.suffix != ".py":
            raise ValueError(f"{said}: no such .py file")
        folder, name = _module_name(path)
        loaded = sys.modules.get(name)
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() != path:
            raise ValueError(f"{said}: a module named {name!r} is already imported from "
                             f"{getattr(loaded, '__file__', None)!r}; rename the file")
    else:
        folder, name = Path.cwd(), spec
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and (name == err.name or name.startswith(err.name + ".")):
            raise ValueError(f"{said}: no module named {err.name!r} (from {str(folder)!r} or the "
                             "installed packages)") from None
        raise ValueError(f"{said} failed to import: {err}{_where_it_failed(err)}") from None
    except Exception as err:  # the user's code: one line that says what and where, never a traceback
        raise ValueError(f"{said} failed to import: {type(err).__name__}: {err}"
                         f"{_where_it_failed(err)}") from None


def load_object(spec: str, flag: str = "--cell") -> object:
    """The object NAME of a module or file, from "MODULE:NAME" or "FILE.py:NAME" (NAME may be dotted: an
    attribute of an attribute). ValueError (naming `flag`) if the spec is malformed or NAME is missing."""
    if not isinstance(spec, str) or spec.count(":") < 1:
        raise ValueError(f"{flag} must be MODULE:NAME or FILE.py:NAME, got {spec!r}")
    where, _, name = spec.rpartition(":")
    if not where or not name or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"{flag} must be MODULE:NAME or FILE.py:NAME, got {spec!r}")
    obj = _import(where, f"{flag} {spec!r}")
    for part in name.split("."):
        if not hasattr(obj, part):
            defined = sorted(k for k, v in vars(obj).items() if callable(v) and not k.startswith("_")) \
                if isinstance(obj, ModuleType) else []
            raise ValueError(f"{flag} {spec!r}: {where!r} has no {part!r}"
                             + (f"; it defines {defined}" if defined else ""))
        obj = getattr(obj, part)
    return obj


def check_cell(fn: Callable, grid: dict[str, list], flag: str = "--cell") -> None:
    """A cell function `fn(key, **parameters) -> dict` fits `grid`: every grid key is one of its parameters
    after the key, and every parameter without a default is in the grid. ValueError naming what does not fit."""
    if not callable(fn):
        raise ValueError(f"{flag} must name a function fn(key, **parameters) -> dict, got {fn!r}")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return  # a builtin or C function without a signature: the sweep's own errors will tell
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        raise ValueError(f"{flag}: {fn.__name__} must take the PRNG key as its first argument")
    rest = {p.name: p for p in params[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    open_ended = any(p.kind == p.VAR_KEYWORD for p in params)
    unknown = [k for k in grid if k not in rest] if not open_ended else []
    if unknown:
        raise ValueError(f"the grid has {unknown}, which {fn.__name__} does not take; its parameters: "
                         f"{list(rest)}")
    missing = [k for k, p in rest.items() if p.default is p.empty and k not in grid]
    if missing:
        raise ValueError(f"the grid lacks {missing}, which {fn.__name__} needs (no default)")


def sweep_cell(cell: str, grid: dict[str, list], out: Path, seed: int = 0,
               imports: list[str] | None = None, force: bool = False) -> list[dict]:
    """`isojax sweep --cell MODULE:NAME`: import `imports`, load the cell function, check that it fits the
    grid, and sweep it into `out` (.csv; resumable, see `isojax.runs.sweep.run_sweep`; the table is named
    after the function; force: replace derived files isojax did not write). -> the rows"""
    from isojax.runs import sweep
    from isojax.runs.outputs import check_output

    for spec in imports or []:
        import_code(spec)
    fn = load_object(cell)
    check_cell(fn, grid)
    out = check_output(out, ".csv")
    return sweep.run_sweep(fn, grid, out, seed=seed, name=getattr(fn, "__name__", "cell"), force=force)

"""The identity of a sweep's cell function, the same in every process: what it is called and a digest of
what it does (its code, defaults, closure, and the helpers and constants of its own module that it uses).

Part of a sweep's configuration, so that a table made by other code is never resumed. It does not depend on
where the function lives: a cell run as a script (module `__main__`), imported from a notebook or moved to
another file is the same cell, so its table resumes. Limits: functions, classes and modules of other modules
(e.g. `isojax.distributions.sample`) stand by their module and name, and the isojax version in the
configuration covers the library's own code; the bytecode changes with the Python version, and so does the
digest (a table is then recomputed, never mixed).
"""

from __future__ import annotations

import functools
import hashlib
import json
import types
from collections.abc import Callable

import numpy as np

from isojax.runs.keys import digest

__all__ = ["cell_identity", "config_difference"]

_PLAIN = (type(None), str, int, float, complex, bool, bytes)


def _names(code: types.CodeType) -> set[str]:
    """Global and attribute names used by code and the code nested in it (lambdas, inner functions)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _used_globals(fn: types.FunctionType) -> list[str]:
    """The names of fn's module-level values that it uses and that can change its results: functions, classes
    and modules, and plain values (numbers, text, tuples, dicts, arrays)."""
    def relevant(value) -> bool:
        value = getattr(value, "__wrapped__", value)  # jax.jit, functools.wraps and the like
        return isinstance(value, (types.FunctionType, types.ModuleType, type, *_PLAIN, tuple, list, dict,
                                  frozenset, np.ndarray))
    return sorted(n for n in _names(fn.__code__) if n in fn.__globals__ and relevant(fn.__globals__[n]))


def _global(value, fn: types.FunctionType, seen: set[int]):
    """A module-level value that fn uses: a function of fn's own module described in full (as fn is), one of
    another module, a class or a module by its module and name (the same whether fn's module runs as
    `__main__` or is imported), anything else by `_fingerprint`."""
    inner = getattr(value, "__wrapped__", value)
    if isinstance(value, types.ModuleType):
        return ["module", value.__name__]
    if isinstance(inner, (types.FunctionType, type)) and inner.__module__ != fn.__module__:
        return ["ref", inner.__module__, inner.__qualname__]
    if isinstance(value, type):
        return ["class", value.__qualname__]  # a class of fn's own module: by name wherever it runs
    return _fingerprint(value, seen)


def _fingerprint(obj, seen: set[int]):
    """A JSON-able description of code and the values it uses. A function already described (recursion, a
    helper used twice) stands by its name."""
    if isinstance(obj, types.CodeType):
        return ["code", obj.co_code.hex(), [_fingerprint(c, seen) for c in obj.co_consts], list(obj.co_names)]
    if isinstance(obj, functools.partial):
        return ["partial", _fingerprint(obj.func, seen), _fingerprint(obj.args, seen),
                _fingerprint(obj.keywords, seen)]
    if isinstance(obj, types.FunctionType):
        if id(obj) in seen:
            return ["function", obj.__qualname__]
        seen.add(id(obj))
        closure = []
        for c in obj.__closure__ or ():
            try:
                closure.append(_fingerprint(c.cell_contents, seen))
            except ValueError:  # an empty cell
                closure.append(None)
        # no module name: the same function run as a script (`__main__`) or imported is the same cell
        return ["function", obj.__qualname__, _fingerprint(obj.__code__, seen),
                _fingerprint(obj.__defaults__, seen), _fingerprint(obj.__kwdefaults__, seen), closure,
                {n: _global(obj.__globals__[n], obj, seen) for n in _used_globals(obj)}]
    if isinstance(obj, dict):
        return sorted([repr(k), _fingerprint(v, seen)] for k, v in obj.items())
    if isinstance(obj, (frozenset, set)):  # set order depends on the per-process string hash salt
        return sorted(repr(_fingerprint(o, seen)) for o in obj)
    if isinstance(obj, (tuple, list)):
        return [_fingerprint(o, seen) for o in obj]
    if isinstance(obj, _PLAIN):
        return repr(obj)
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__") and hasattr(obj, "dtype"):
        arr = np.asarray(obj)
        return ["array", str(arr.dtype), list(arr.shape), hashlib.sha256(arr.tobytes()).hexdigest()[:16]]
    wrapped = getattr(obj, "__wrapped__", None)  # a jitted or decorated function: describe what it wraps
    if isinstance(wrapped, types.FunctionType):
        return ["wrapped", type(obj).__qualname__, _fingerprint(wrapped, seen)]
    if isinstance(obj, types.ModuleType):
        return ["module", obj.__name__]
    return ["object", type(obj).__qualname__]  # not its module: `__main__` in a script, a name when imported


def cell_identity(fn: Callable) -> dict:
    """What makes a cell function itself: its qualified name and a digest of its code (bytecode and constants,
    recursively), defaults, closure values, the functions and constants of its own module that it uses
    (recursively) and the names of the other modules' functions, classes and modules it uses. Not its module's
    name, which is `__main__` when the file runs as a script: the table resumes from a notebook that imports
    the same file. -> {"qualname": str, "code": 16 hex digits}"""
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {fn!r}")
    return {"qualname": getattr(fn, "__qualname__", type(fn).__qualname__), "code": digest(_fingerprint(fn, set()))}


# what a difference in each field of a sweep's configuration means, for the refusal that names it
_MEANING = {
    "cell_fn.code": "the cell function's code, defaults, closure or the helpers and constants it uses changed",
    "cell_fn.qualname": "another cell function",
    "isojax": "another isojax version",
    "dtype": "another float precision (JAX_ENABLE_X64)",
}


def _differences(old, new, where: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for k in sorted(set(old) | set(new), key=str):
            path = f"{where}.{k}" if where else str(k)
            if k not in new:
                found.append(f"{path} (only in the table's)")
            elif k not in old:
                found.append(f"{path} (not in the table's)")
            else:
                found += _differences(old[k], new[k], path)
        return found
    if old == new:
        return []
    meaning = _MEANING.get(where)
    return [f"{where}: {_short(old)} -> {_short(new)}" + (f" ({meaning})" if meaning else "")]


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def config_difference(stored: dict | None, config: dict) -> str:
    """Which fields of a sweep's configuration differ between a table's sidecar (`stored`, as read back from
    JSON) and this run's (`config`), as one line: "seed: 0 -> 1; cell_fn.code: ... -> ... (the cell
    function's code ... changed)". Values are compared as the sidecar stores them (JSON)."""
    if not isinstance(stored, dict):
        return "the table's sidecar records no configuration"
    config = json.loads(json.dumps(config, default=str))
    found = _differences(stored, config, "")
    return "; ".join(found) if found else "the configurations are equal but their digests differ"

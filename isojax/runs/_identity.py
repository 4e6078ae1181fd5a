"""The identity of a sweep's cell function, the same in every process: what it is called and a digest of
what it does (its code, defaults, closure, and the helpers and constants of its own module that it uses).

Part of a sweep's configuration, so that a table made by other code is never resumed. Limits: functions of
other modules (e.g. `isojax.distributions.sample`) stand by their name, and the isojax version in the
configuration covers the library's own code; the bytecode changes with the Python version, and so does the
digest (a table is then recomputed, never mixed).
"""

from __future__ import annotations

import functools
import hashlib
import types
from collections.abc import Callable

import numpy as np

from isojax.runs.keys import digest

__all__ = ["cell_identity"]

_PLAIN = (type(None), str, int, float, complex, bool, bytes)


def _names(code: types.CodeType) -> set[str]:
    """Global and attribute names used by code and the code nested in it (lambdas, inner functions)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _used_globals(fn: types.FunctionType) -> list[str]:
    """The names of fn's module-level values that it uses and that can change its results: functions of
    the same module and plain values (numbers, text, tuples, dicts, arrays); modules and classes do not."""
    def relevant(value) -> bool:
        value = getattr(value, "__wrapped__", value)  # jax.jit, functools.wraps and the like
        if isinstance(value, types.FunctionType):
            return value.__module__ == fn.__module__
        return isinstance(value, (*_PLAIN, tuple, list, dict, frozenset, np.ndarray))
    return sorted(n for n in _names(fn.__code__) if n in fn.__globals__ and relevant(fn.__globals__[n]))


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
            return ["function", obj.__module__, obj.__qualname__]
        seen.add(id(obj))
        closure = []
        for c in obj.__closure__ or ():
            try:
                closure.append(_fingerprint(c.cell_contents, seen))
            except ValueError:  # an empty cell
                closure.append(None)
        return ["function", obj.__module__, obj.__qualname__, _fingerprint(obj.__code__, seen),
                _fingerprint(obj.__defaults__, seen), _fingerprint(obj.__kwdefaults__, seen), closure,
                {n: _fingerprint(obj.__globals__[n], seen) for n in _used_globals(obj)}]
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
    return ["object", type(obj).__module__, type(obj).__qualname__]


def cell_identity(fn: Callable) -> dict:
    """What makes a cell function itself: its module, qualified name and a digest of its code (bytecode and
    constants, recursively), defaults, closure values, and the functions and constants of its own module
    that it uses (recursively)."""
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {fn!r}")
    return {"module": getattr(fn, "__module__", None), "qualname": getattr(fn, "__qualname__", type(fn).__qualname__),
            "code": digest(_fingerprint(fn, set()))}

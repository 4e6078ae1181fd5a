"""Sweeps: a parameter grid -> cells evaluated in chunks on every device of every process -> a results table.

- Cells are the grid's cartesian product, numbered in order; cell i gets key fold_in(base, i), so no value
  depends on chunking, device count or process count.
- String, bool and integer parameters are static (they may change shapes): cells are grouped by them. Float
  parameters, and the integer ones named in `vmapped` (by default "replicate"), are traced.
- Each chunk holds `per_device` cells per device on a one-axis mesh ("cells") over `jax.devices()`, so every
  device runs the same compiled program on the same batch size whatever the device count. Within a device
  the cells run batched (vmap) on GPU/TPU and one after another (lax.map) on CPU, where batched LAPACK calls
  (eigh, qr) can deadlock jaxlib's thread pool (0.10.2); `cell_batching` forces either path.
- Many processes: after `jax.distributed.initialize()` every process builds the same chunk, feeds its own
  devices' slices, and receives the gathered results; process 0 alone holds the lock and writes.
- The table (see `isojax.results`) is identified by a configuration that includes the cell function (module,
  qualified name, a digest of its code, closure and defaults) and the isojax version. A rerun resumes a table
  of the same configuration after validating every row, and refuses anything else before writing anything.
  Finished chunks are appended as complete lines (O(chunk)); the end sorts the table by cell (atomically).
- SIGINT (Ctrl-C) lets the current chunk finish and be stored, then raises KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import signal
import threading
import types
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

import isojax
from isojax import _sweep_store as store
from isojax import _validate as V
from isojax import results

__all__ = ["BATCHING", "cell_identity", "cells", "run_sweep"]

BATCHING = ("auto", "serial", "vectorised")


def cells(grid: dict[str, list]) -> list[dict]:
    """The grid's cartesian product, in order (the last parameter varies fastest)."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"grid must be a non-empty dict of parameter lists, got {grid!r}")
    for name, values in grid.items():
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty list, got {values!r}")
        for v in values:
            if not isinstance(v, (str, bool, int, float, np.integer, np.floating, np.bool_)):
                raise ValueError(f"grid[{name!r}] holds {v!r} of type {type(v).__name__}; use str, bool, int or float")
            if isinstance(v, str) and ("\n" in v or "\r" in v):
                raise ValueError(f"grid[{name!r}] holds a text value with a line break: {v!r}")
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(grid[n] for n in names))]


def _fingerprint(obj, depth: int = 0):
    """A JSON-able description of code and the values it closes over, the same in every process."""
    if isinstance(obj, types.CodeType):
        return ["code", obj.co_code.hex(), [_fingerprint(c, depth) for c in obj.co_consts], list(obj.co_names)]
    if isinstance(obj, functools.partial):
        return ["partial", _fingerprint(obj.func, depth), _fingerprint(obj.args, depth),
                _fingerprint(sorted(obj.keywords.items()), depth)]
    if isinstance(obj, types.FunctionType):
        if depth > 4:  # deep enough for closures of closures; beyond that the name stands for the function
            return ["function", obj.__module__, obj.__qualname__]
        closure = []
        for c in obj.__closure__ or ():
            try:
                closure.append(_fingerprint(c.cell_contents, depth + 1))
            except ValueError:  # an empty cell
                closure.append(None)
        return ["function", obj.__module__, obj.__qualname__, _fingerprint(obj.__code__, depth),
                _fingerprint(obj.__defaults__ or (), depth),
                _fingerprint(sorted((obj.__kwdefaults__ or {}).items()), depth), closure]
    if isinstance(obj, (frozenset, set)):  # set order depends on the per-process string hash salt
        return sorted(repr(_fingerprint(o, depth)) for o in obj)
    if isinstance(obj, (tuple, list)):
        return [_fingerprint(o, depth) for o in obj]
    if obj is None or isinstance(obj, (str, int, float, complex, bool, bytes)):
        return repr(obj)
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        arr = np.asarray(obj)
        return ["array", str(arr.dtype), list(arr.shape), hashlib.sha256(arr.tobytes()).hexdigest()[:16]]
    return ["object", type(obj).__module__, type(obj).__qualname__]


def cell_identity(fn: Callable) -> dict:
    """What makes a cell function itself: its module, qualified name and a digest of its code (bytecode and
    constants, recursively), defaults and closure values (functions, arrays, numbers, text)."""
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {fn!r}")
    return {"module": getattr(fn, "__module__", None), "qualname": getattr(fn, "__qualname__", type(fn).__qualname__),
            "code": results.config_hash(_fingerprint(fn))}


def _is_static(value) -> bool:
    return isinstance(value, (str, bool, int, np.integer)) and not isinstance(value, float)


def _groups(all_cells: list[dict], done, vmapped) -> dict[tuple, list[int]]:
    """The unfinished cells, grouped by the values of their static parameters (one compilation each)."""
    groups: dict[tuple, list[int]] = {}
    for i, cell in enumerate(all_cells):
        if i not in done:
            static = tuple((k, v) for k, v in cell.items() if _is_static(v) and k not in vmapped)
            groups.setdefault(static, []).append(i)
    return groups


def _compile(fn: Callable, static_kw: dict, dynamic: list[str], batching: str) -> Callable:
    """jit of the chunk program: inputs [devices, per_device, ...]; vmap over the sharded device axis (a batch
    of one per device), then within a device vmap (vectorised) or lax.map (serial) over its cells."""
    def one(key, *dyn):
        return fn(key, **static_kw, **dict(zip(dynamic, dyn, strict=True)))

    if batching == "serial":
        def per_device(keys, *dyn):
            return jax.lax.map(lambda a: one(*a), (keys, *dyn))
    else:
        per_device = jax.vmap(one)
    return jax.jit(jax.vmap(per_device))


@jax.jit
def _cell_keys(base, ids):
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(ids)


def _global(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from the same host array in every process: each feeds its own devices' slices."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def _run_chunk(program, ids: list[int], all_cells, dynamic, base, sharding, per_device: int) -> dict:
    """Evaluate the cells `ids` (at most one chunk); returns {output: host array [len(ids), ...]}."""
    n_dev = sharding.mesh.size
    chunk = n_dev * per_device
    padded = ids + [ids[-1]] * (chunk - len(ids))  # pad with a repeat, dropped below
    def feed(a):  # host [chunk, ...] -> global [devices, per_device, ...]
        return _global(a.reshape((n_dev, per_device) + a.shape[1:]), sharding)
    keys = np.asarray(_cell_keys(base, np.asarray(padded, np.int32)))
    inputs = [feed(keys)] + [feed(np.asarray([all_cells[i][k] for i in padded], V.float_dtype())) for k in dynamic]
    out = program(*inputs)
    out = multihost_utils.process_allgather(out, tiled=True) if jax.process_count() > 1 else jax.device_get(out)
    return {k: np.asarray(v).reshape((chunk,) + v.shape[2:])[:len(ids)] for k, v in out.items()}


def _rows(ids: list[int], all_cells: list[dict], result: dict) -> list[dict]:
    """One row per cell: cell, parameters, then each output (a vector output as name_0, name_1, ...)."""
    rows = []
    for j, i in enumerate(ids):
        row = {"cell": i, **all_cells[i]}
        for key, value in result.items():
            value = value[j]
            if value.ndim == 0:
                row[key] = value.item()
            else:
                row.update({f"{key}_{t}": v.item() for t, v in enumerate(value.ravel())})
        rows.append(row)
    return rows


@contextlib.contextmanager
def _deferred_sigint():
    """While the block runs, SIGINT only sets a flag (checked between chunks), so that an interrupt never
    lands inside a running XLA program (which crashed the process) or between a chunk's compute and store."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: flag.update(hit=True))
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted(flag: dict) -> bool:
    """Whether any process got SIGINT (so that every process stops after the same chunk)."""
    if jax.process_count() == 1:
        return flag["hit"]
    return bool(np.any(multihost_utils.process_allgather(np.int32(flag["hit"]))))


def _share_done(state: store.State | None, error: Exception | None, n: int) -> set[int]:
    """Process 0 read the table (or failed to); every process gets the same set of finished cells."""
    if jax.process_count() == 1:
        if error is not None:
            raise error
        return set(state.done)
    mask = np.zeros(n + 1, np.int8)
    if state is not None:
        mask[list(state.done)] = 1
    mask[n] = error is not None
    mask = np.asarray(multihost_utils.broadcast_one_to_all(mask))
    if error is not None:
        raise error
    if mask[n]:
        raise ValueError("process 0 refused the sweep (see its error message)")
    return set(np.flatnonzero(mask[:n]).tolist())


def run_sweep(fn: Callable[..., dict], grid: dict[str, list], out, seed: int = 0, per_device: int = 16,
              name: str | None = None, progress: bool = True, extra_config: dict | None = None,
              vmapped: tuple[str, ...] = ("replicate",), cell_batching: str = "auto") -> list[dict]:
    """Evaluate `fn(key, **cell) -> dict of scalars or arrays` on every cell of `grid`; write `out` (CSV)
    and `out`.json. Returns the rows, sorted by cell, typed as `results.read_table` types them.

    Resumes a table of the same configuration; refuses (ValueError naming the file and the first bad row) a
    table of another configuration, or one with rows outside the grid, disagreeing with it or unparseable;
    TableLockedError if another process is writing `out`. `cell_batching`: "auto" (serial on CPU, vectorised
    elsewhere), "serial" or "vectorised". Raises KeyboardInterrupt after storing the chunk that SIGINT
    interrupted.
    """
    all_cells = cells(grid)
    per_device = V.positive_int("per_device", per_device)
    if cell_batching not in BATCHING:
        raise ValueError(f"cell_batching must be one of {BATCHING}, got {cell_batching!r}")
    batching = cell_batching
    if batching == "auto":  # the CPU keeps the LAPACK workaround
        batching = "serial" if jax.default_backend() == "cpu" else "vectorised"
    out = Path(out)
    # the dtype is part of the configuration: a float32 table must not be resumed by a float64 run
    config = {"name": name or getattr(fn, "__name__", "sweep"), "grid": grid, "seed": seed,
              "dtype": str(V.float_dtype()), "cell_fn": cell_identity(fn), "isojax": isojax.__version__,
              **(extra_config or {})}
    writer = jax.process_index() == 0
    table = store.SweepTable(out, config, all_cells, list(grid))
    state, error = None, None
    with contextlib.ExitStack() as stack:
        if writer:
            try:
                if not out.parent.exists():
                    out.parent.mkdir(parents=True)
                stack.enter_context(results.exclusive_lock(out))
                state = table.load()
            except (ValueError, OSError) as err:
                error = err
        done = _share_done(state, error, len(all_cells))
        groups = _groups(all_cells, done, vmapped)
        if writer:
            table.begin(state, batching=batching, processes=jax.process_count())
        devices = jax.devices()
        # Auto axes: the cell function stays sharding-agnostic and XLA partitions the batch over devices
        mesh = jax.make_mesh((len(devices),), ("cells",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
        sharding = NamedSharding(mesh, jax.P("cells"))
        base = jax.random.PRNGKey(seed)
        chunk = per_device * len(devices)
        bar = None
        if progress and writer:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(all_cells), initial=len(done), desc=config["name"], unit="cell")
        interrupted = False
        computed: list[dict] = []
        with _deferred_sigint() as flag:
            for static, todo in groups.items():
                static_kw = dict(static)
                dynamic = [k for k in grid if k not in static_kw]
                program = _compile(fn, static_kw, dynamic, batching)
                for start in range(0, len(todo), chunk):
                    ids = todo[start:start + chunk]
                    result = _run_chunk(program, ids, all_cells, dynamic, base, sharding, per_device)
                    rows = _rows(ids, all_cells, result)
                    if writer:
                        table.store(rows)
                    else:
                        computed += rows
                    if bar is not None:
                        bar.update(len(ids))
                    if _interrupted(flag):
                        interrupted = True
                        break
                if interrupted:
                    break
            if bar is not None:
                bar.close()
            if interrupted:
                raise KeyboardInterrupt(f"sweep {config['name']!r} interrupted; {str(out)!r} holds the finished "
                                        "cells and a rerun resumes it")
        if writer:
            finished = table.finish()
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("isojax sweep finished")  # the writer has finished the table
    if writer:
        return finished
    # other processes: the table if they see it (a shared file system), else the rows computed in this run
    return results.read_table(out) if out.exists() else sorted(computed, key=lambda r: r["cell"])

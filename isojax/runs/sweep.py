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
- The table (see `isojax.runs.results`) is identified by a configuration that includes the cell function (its
  qualified name and a digest of its code, closure, defaults and the helpers and constants of its own module
  that it uses: `cell_identity`; not its module's name, so a cell run as a script resumes the table of the
  same cell imported from a notebook) and the isojax version. A rerun resumes a table of the same
  configuration after validating every row, and refuses anything else before writing anything, naming the
  fields that differ (`config_difference`). The sidecar also records where the cell was defined.
  Finished chunks are appended as complete lines (O(chunk)); the end sorts the table by cell (atomically).
- SIGINT (Ctrl-C), SIGTERM and SIGHUP let the current chunk finish and be stored, then raise
  `signals.Interrupted` (a KeyboardInterrupt); the lock is released on the way out.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

import isojax
from isojax import _validate as V
from isojax.runs import _store as store
from isojax.runs import devices, results, signals
from isojax.runs._identity import cell_identity, config_difference

__all__ = ["BATCHING", "cell_identity", "cells", "config_difference", "run_sweep"]

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


def _run_chunk(program, ids: list[int], all_cells, dynamic, base, sharding, per_device: int) -> dict:
    """Evaluate the cells `ids` (at most one chunk); returns {output: host array [len(ids), ...]}."""
    n_dev = sharding.mesh.size
    chunk = n_dev * per_device
    padded = ids + [ids[-1]] * (chunk - len(ids))  # pad with a repeat, dropped below
    def feed(a):  # host [chunk, ...] -> global [devices, per_device, ...]
        return devices.to_global(a.reshape((n_dev, per_device) + a.shape[1:]), sharding)
    keys = np.asarray(_cell_keys(base, np.asarray(padded, np.int32)))
    inputs = [feed(keys)] + [feed(np.asarray([all_cells[i][k] for i in padded], V.float_dtype())) for k in dynamic]
    out = program(*inputs)
    out = devices.to_host(out)
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


def _stop_all(interrupted: bool, error: Exception | None) -> tuple[bool, bool]:
    """After each chunk: whether any process got SIGINT, and whether the writer failed to store, so that
    every process stops after the same chunk (a lone process leaving would leave the others waiting)."""
    if jax.process_count() == 1:
        return interrupted, error is not None
    flags = multihost_utils.process_allgather(np.asarray([interrupted, error is not None], np.int32))
    return bool(np.any(flags[..., 0])), bool(np.any(flags[..., 1]))


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


def _plan(fn, grid, seed, per_device, name, extra_config, cell_batching) -> tuple[list[dict], str, dict]:
    """Validate the arguments (before anything is computed or written): the cells, the batching path for
    this backend, and the configuration that identifies the table."""
    all_cells = cells(grid)
    V.positive_int("per_device", per_device)
    if cell_batching not in BATCHING:
        raise ValueError(f"cell_batching must be one of {BATCHING}, got {cell_batching!r}")
    batching = cell_batching
    if batching == "auto":  # the CPU keeps the LAPACK workaround
        batching = "serial" if jax.default_backend() == "cpu" else "vectorised"
    # the dtype is part of the configuration: a float32 table must not be resumed by a float64 run
    config = {"name": name or getattr(fn, "__name__", "sweep"), "grid": grid, "seed": seed,
              "dtype": str(V.float_dtype()), "cell_fn": cell_identity(fn), "isojax": isojax.__version__,
              **(extra_config or {})}
    return all_cells, batching, config


def _open(table: store.SweepTable, stack: contextlib.ExitStack) -> tuple[store.State | None, Exception | None]:
    """The writer takes the table's lock (held until `stack` closes) and reads and validates the table."""
    try:
        if not table.path.parent.exists():
            table.path.parent.mkdir(parents=True)
        stack.enter_context(results.exclusive_lock(table.path))
        return table.load(), None
    except (ValueError, OSError) as err:
        return None, err


def _chunks(fn, grid: dict, groups: dict, chunk: int, batching: str):
    """(program, traced parameter names, cell ids) for each chunk, one compilation per static group."""
    for static, todo in groups.items():
        static_kw = dict(static)
        dynamic = [k for k in grid if k not in static_kw]
        program = _compile(fn, static_kw, dynamic, batching)
        for start in range(0, len(todo), chunk):
            yield program, dynamic, todo[start:start + chunk]


def run_sweep(fn: Callable[..., dict], grid: dict[str, list], out: Path | str, seed: int = 0, per_device: int = 16,
              name: str | None = None, progress: bool = True, extra_config: dict | None = None,
              vmapped: tuple[str, ...] = ("replicate",), cell_batching: str = "auto",
              force: bool = False) -> list[dict]:
    """Evaluate `fn(key, **cell) -> dict of scalars or arrays` on every cell of `grid`; write `out` (CSV)
    and `out`.json. Returns the rows, sorted by cell, typed as `results.read_table` types them.

    Resumes a table of the same configuration; refuses (ValueError naming the file and the first bad row) a
    table of another configuration (naming the fields that differ), or one with rows outside the grid,
    disagreeing with it or unparseable;
    TableLockedError if another process is writing `out`. `cell_batching`: "auto" (serial on CPU, vectorised
    elsewhere), "serial" or "vectorised". SIGINT, SIGTERM or SIGHUP: the current chunk is finished and stored,
    then `signals.Interrupted` (a KeyboardInterrupt carrying the signal) is raised; the lock is released.
    Files derived from `out` (`out`.json, `out`.digests) that isojax did not write are refused unless `force`.
    """
    all_cells, batching, config = _plan(fn, grid, seed, per_device, name, extra_config, cell_batching)
    out = Path(out)
    table = store.SweepTable(out, config, all_cells, list(grid), force=force)
    writer = jax.process_index() == 0  # one writer: it holds the lock and writes; the others compute
    computed: list[dict] = []
    with contextlib.ExitStack() as stack:
        done = _share_done(*(_open(table, stack) if writer else (None, None)), len(all_cells))
        if writer:
            table.begin(batching=batching, processes=jax.process_count(),
                        cell_defined_in=f"{getattr(fn, '__module__', None)}:{config['cell_fn']['qualname']}")
        sharding = devices.device_sharding("cells")
        base = jax.random.PRNGKey(seed)
        bar = None
        if progress and writer:
            from tqdm.auto import tqdm
            bar = stack.enter_context(tqdm(total=len(all_cells), initial=len(done), desc=config["name"], unit="cell"))
        flag = stack.enter_context(signals.deferred())
        groups = _groups(all_cells, done, vmapped)
        for program, dynamic, ids in _chunks(fn, grid, groups, sharding.mesh.size * per_device, batching):
            result = _run_chunk(program, ids, all_cells, dynamic, base, sharding, per_device)
            rows, error = _rows(ids, all_cells, result), None
            try:
                table.store(rows) if writer else computed.extend(rows)
            except (ValueError, OSError) as err:
                error = err
            if bar is not None:
                bar.update(len(ids))
            interrupted, failed = _stop_all(flag.hit, error)
            if error is not None:
                raise error
            if failed:
                raise RuntimeError(f"process 0 could not store a chunk of {str(out)!r} (see its error message)")
            if interrupted:
                raise flag.interrupted(f"sweep {config['name']!r} interrupted; {str(out)!r} holds the finished "
                                       "cells and a rerun resumes it")
        finished = table.finish() if writer else None
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("isojax sweep finished")  # the writer has finished the table
    if writer:
        return finished
    # other processes: the table if they see it (a shared file system), else the rows computed in this run
    return results.read_table(out) if out.exists() else sorted(computed, key=lambda r: r["cell"])

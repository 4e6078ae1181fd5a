"""Sweeps: a parameter grid -> chunks evaluated with jit(lax.map(...)), sharded over every device -> a CSV table.

- Cells are the grid's cartesian product, numbered in order; cell i gets key fold_in(base, i), so no value
  depends on chunking or device count. Within a chunk the cells run one after another (lax.map) on each
  device; the devices run in parallel.
- String, bool and integer parameters are static (they may change shapes): cells are grouped by them. Float
  parameters, and the integer ones named in `vmapped` (by default "replicate"), are traced and vmapped.
- Each chunk holds `per_device` cells per device on a one-axis mesh ("cells"), so every device runs the same
  compiled program on the same batch size whatever the device count.
- Resumable: the table on disk lists finished cells; a rerun computes only the rest. The table is rewritten
  whole into a temporary file and renamed after each chunk, so a SIGKILL never leaves it half-written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from isojax import _validate as V


def cells(grid: dict[str, list]) -> list[dict]:
    """The grid's cartesian product, in order (the last parameter varies fastest)."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"grid must be a non-empty dict of parameter lists, got {grid!r}")
    for name, values in grid.items():
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty list, got {values!r}")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def _is_static(value) -> bool:
    return isinstance(value, (str, bool, int, np.integer)) and not isinstance(value, float)


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict:
    from importlib import metadata
    out = {"python": platform.python_version()}
    for pkg in ("isojax", "jax", "jaxlib", "numpy", "flax", "optax"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def machine() -> dict:
    """Where something was measured: CPU model, core count, device kinds, jax and Python versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "devices": [str(d.device_kind) for d in jax.devices()],
            "jax": jax.__version__, "python": platform.python_version()}


def atomic_write(path: Path, text: str) -> None:
    """Write text to path through a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _format(value) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # shortest repr that round-trips: bit for bit
    if isinstance(value, (np.integer, np.bool_)):
        return str(value.item())
    return str(value)


def read_table(path) -> list[dict]:
    """Rows of a results CSV as dicts of strings (use `float()` on the measured columns)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_table(path: Path, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: int(r["cell"]))
    columns = list(rows[0]) if rows else ["cell"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")  # quotes a text field holding a comma, quote or newline
    writer.writerow(columns)
    writer.writerows([_format(r[c]) for c in columns] for r in rows)
    atomic_write(path, buf.getvalue())


def _sidecar(config: dict, **extra) -> str:
    return json.dumps({"config": config, "config_hash": config_hash(config), **extra, "versions": _versions(),
                       "git_commit": _git_commit(), "devices": [str(d) for d in jax.devices()]},
                      indent=2, default=str)


def save_table(rows: list[dict], out, config: dict) -> Path:
    """Write rows (dicts with the same keys) as a CSV plus its JSON sidecar (config, versions, commit)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"cell": i, **r} if "cell" not in r else r for i, r in enumerate(rows)]
    _write_table(out, rows)
    atomic_write(out.with_name(out.name + ".json"), _sidecar(config))
    return out


def run_sweep(fn: Callable[..., dict], grid: dict[str, list], out, seed: int = 0, per_device: int = 16,
              name: str | None = None, progress: bool = True, extra_config: dict | None = None,
              vmapped: tuple[str, ...] = ("replicate",)) -> list[dict]:
    """Evaluate `fn(key, **cell) -> dict of scalars` on every cell of `grid`; write `out` (CSV) and `out`.json.

    Resumes from an existing table made by the same configuration; refuses (ValueError) one made by another.
    Returns the rows, sorted by cell.
    """
    all_cells = cells(grid)
    per_device = V.positive_int("per_device", per_device)
    out = Path(out)
    # the dtype is part of the configuration: a float32 table must not be resumed by a float64 run
    config = {"name": name or getattr(fn, "__name__", "sweep"), "grid": grid, "seed": seed,
              "dtype": str(V.float_dtype()), **(extra_config or {})}
    digest = config_hash(config)
    sidecar = out.with_name(out.name + ".json")
    done: dict[int, dict] = {}
    if out.exists():
        meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
        if meta.get("config_hash") != digest:
            raise ValueError(f"out {str(out)!r} holds a table from another configuration; choose another path")
        done = {int(r["cell"]): r for r in read_table(out)}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(sidecar, _sidecar(config, cells=len(all_cells)))

    devices = jax.devices()
    # Auto axes: the cell function stays sharding-agnostic and XLA partitions the vmapped batch.
    mesh = jax.make_mesh((len(devices),), ("cells",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
    sharding = NamedSharding(mesh, jax.P("cells"))
    chunk = per_device * len(devices)
    base = jax.random.PRNGKey(seed)
    groups: dict[tuple, list[int]] = {}
    for i, cell in enumerate(all_cells):
        if i not in done:
            static = tuple((k, v) for k, v in cell.items() if _is_static(v) and k not in vmapped)
            groups.setdefault(static, []).append(i)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(all_cells), initial=len(done), desc=config["name"], unit="cell")
    compiled: dict[tuple, Callable] = {}
    for static, todo in groups.items():
        static_kw = dict(static)
        dynamic = [k for k in grid if k not in static_kw]
        if static not in compiled:
            def one(key, *dyn, static_kw=static_kw, dynamic=dynamic):
                return fn(key, **static_kw, **dict(zip(dynamic, dyn)))
            # lax.map, not vmap, over the cells of a chunk: batched LAPACK calls (eigh, qr) under vmap can
            # deadlock jaxlib's CPU thread pool (0.10.2); cell by cell they run unbatched.
            # Inputs are [devices, per_device]: vmap over the sharded device axis (a batch of one per device),
            # then lax.map over that device's cells.
            compiled[static] = jax.jit(jax.vmap(lambda keys, *dyn, one=one: jax.lax.map(lambda a: one(*a), (keys, *dyn))))
        for start in range(0, len(todo), chunk):
            ids = todo[start:start + chunk]
            padded = ids + [ids[-1]] * (chunk - len(ids))  # pad with a repeat, dropped below
            per_dev = lambda a: a.reshape((len(devices), per_device) + a.shape[1:])
            keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(padded))
            keys = jax.device_put(per_dev(keys), sharding)
            dyn = [jax.device_put(per_dev(jnp.asarray([all_cells[i][k] for i in padded], V.float_dtype())), sharding)
                   for k in dynamic]
            result = jax.tree.map(lambda a: a.reshape((chunk,) + a.shape[2:]),
                                  jax.device_get(compiled[static](keys, *dyn)))
            for j, i in enumerate(ids):
                row = {"cell": i, **all_cells[i]}
                for key, value in result.items():
                    value = np.asarray(value[j])
                    if value.ndim == 0:
                        row[key] = value.item()
                    else:
                        row.update({f"{key}_{t}": v.item() for t, v in enumerate(value.ravel())})
                done[i] = row
            _write_table(out, list(done.values()))
            if bar is not None:
                bar.update(len(ids))
    if bar is not None:
        bar.close()
    if not done:
        _write_table(out, [])
    return sorted(done.values(), key=lambda r: int(r["cell"]))

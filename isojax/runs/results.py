"""Results I/O: CSV tables with JSON sidecars, provenance, atomic and append-only writes, exclusive locks.

A table is a CSV file (a header, then one row per line; the csv module quotes a text field holding a comma,
quote or newline) plus a JSON sidecar `<table>.json`: the configuration and its digest, the column types,
whether the table is complete, and the provenance (package versions, git commit, devices).

- Values are written so that they read back exactly: floats by their shortest round-tripping repr (bit for
  bit), ints and bools by `str`, text as is.
- Typed rows: `read_table` gives each column the type recorded in the sidecar ("int", "float", "bool" or
  "str"). A table without recorded types (made elsewhere) is typed value by value: an integer literal ->
  int, "True"/"False" -> bool, a float literal (also nan, inf) -> float, anything else -> str.
- Whole-table writes go through a temporary file and a rename (`atomic_write`): a reader never sees half a
  file. A table being filled grows by appended complete lines (`append_text`, one write and an fsync per
  batch, O(batch) whatever the table's size); the only defect a reader forgives is a final line without its
  newline, and only while the sidecar says the table is still being written (what a SIGKILL mid-append
  leaves). Any other defect is refused.
- One writer per table: `exclusive_lock` holds `<table>.lock` (fcntl.flock, non-blocking); a second writer
  fails at once with `TableLockedError`. A `<table>.lock` that is not an isojax lock file is refused, never
  overwritten.
- Every row is protected by a digest (`row_digest`: SHA-256 of its text fields, salted by the configuration
  digest) that the sidecar records (`row_sha256`, in file order); `read_table` refuses a table whose rows do
  not match, naming the first bad line (a value edited or nan-ed by hand, a row added, removed or moved, another
  table's rows under this sidecar). While a sweep writes a table, the digests of its rows are appended to
  `<table>.digests` before the rows themselves (`isojax.runs._store`).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from isojax.runs.keys import digest
from isojax.runs.outputs import staged

__all__ = ["TableLockedError", "append_text", "atomic_write", "check_row_digests", "column_types", "config_hash",
           "csv_lines", "exclusive_lock", "format_value", "git_commit", "is_isojax_sidecar", "is_isojax_table",
           "machine", "noting", "parse_value", "provenance", "read_sidecar", "read_table", "read_text_rows",
           "row_digest", "rows_text", "save_table", "sidecar_path", "sidecar_text", "table_text",
           "truncate_torn_tail", "value_kind", "versions", "write_sidecar"]

_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?(\d+\.\d*([eE][-+]?\d+)?|\d+[eE][-+]?\d+|inf|nan)")


class TableLockedError(ValueError):
    """Another process holds the table's lock (it is writing the table)."""


# ----------------------------------------------------------------------------------------- provenance

def config_hash(config: dict) -> str:
    """A 16-hex-digit digest of a configuration (`isojax.runs.keys.digest`)."""
    return digest(config)


def git_commit() -> str | None:
    """The commit of the isojax checkout this module runs from, or None outside a git checkout."""
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    """Python's version and those of isojax and its core dependencies that are installed."""
    from importlib import metadata

    import isojax
    out = {"python": platform.python_version(), "isojax": isojax.__version__}
    for pkg in ("jax", "jaxlib", "numpy", "flax", "optax"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def machine() -> dict:
    """Where something was measured: CPU model, core count, device kinds, jax and Python versions."""
    import jax
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "devices": [str(d.device_kind) for d in jax.devices()],
            "jax": jax.__version__, "python": platform.python_version()}


def provenance() -> dict:
    """Versions, git commit and devices, for a sidecar (and the notes of `noting`, if any)."""
    import jax
    out = {"versions": versions(), "git_commit": git_commit(), "devices": [str(d) for d in jax.devices()]}
    return {**out, "notes": dict(_NOTES)} if _NOTES else out


_NOTES: dict = {}


@contextlib.contextmanager
def noting(**notes) -> Iterator[None]:
    """While the block runs, every sidecar written also records `notes` (under "notes", beside the
    configuration, not in it: a table's identity does not change), e.g. the size changes an experiment runs
    with (`python experiments/<name>.py --set`)."""
    previous = dict(_NOTES)
    _NOTES.update(notes)
    try:
        yield
    finally:
        _NOTES.clear()
        _NOTES.update(previous)


# ----------------------------------------------------------------------------------------- values

def _plain(value):
    """numpy scalars -> Python scalars (other objects, e.g. 0-d arrays, are written by `str` as before)."""
    return value.item() if isinstance(value, np.generic) else value


def format_value(value: object) -> str:
    """The text a value is written as: floats by their round-tripping repr (bit for bit), others by str."""
    value = _plain(value)
    return repr(value) if isinstance(value, float) else str(value)


def _type_of(value) -> str:
    """A value's column type: by its Python type, or (an array, say) by the value rule on its text."""
    value = _plain(value)
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, str)):
        return "int" if isinstance(value, int) else "float" if isinstance(value, float) else "str"
    return value_kind(format_value(value))


def column_types(rows: list[dict]) -> dict[str, str]:
    """Each column's type from its values: one type -> that type; ints and floats -> float; else str."""
    types: dict[str, set] = {}
    for row in rows:
        for name, value in row.items():
            types.setdefault(name, set()).add(_type_of(value))
    return {name: next(iter(t)) if len(t) == 1 else "float" if t == {"int", "float"} else "str"
            for name, t in types.items()}


def value_kind(text: str) -> str:
    """The value rule for untyped text: an integer literal -> "int", True/False -> "bool", a float literal
    (also nan, inf) -> "float", anything else -> "str"."""
    return ("int" if _INT.fullmatch(text) else "bool" if text in ("True", "False")
            else "float" if _FLOAT.fullmatch(text) else "str")


def parse_value(text: str, kind: str | None = None) -> int | float | bool | str:
    """Text -> a value of type `kind` ("int", "float", "bool", "str"), or by `value_kind` if kind is None.
    Raises ValueError if the text is not a value of that type."""
    kind = kind or value_kind(text)
    if kind == "bool":
        if text not in ("True", "False"):
            raise ValueError(f"{text!r} is not a bool")
        return text == "True"
    return {"int": int, "float": float, "str": str}[kind](text)


# ----------------------------------------------------------------------------------------- writing

def atomic_write(path: Path | str, text: str) -> None:
    """Write text to path through a temporary file with a unique name beside it and a rename, so a reader
    never sees half a file; on any failure (a full disk, an interrupt) the temporary file is removed and path
    is as it was (`isojax.runs.outputs.staged`)."""
    with staged(Path(path)) as (tmp,), open(tmp, "w") as f:
        f.write(text)


def csv_lines(records: list[list[str]]) -> str:
    """Records of text fields as complete CSV lines (the csv module quotes a field holding a comma, quote or
    newline)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(records)
    return buf.getvalue()


def rows_text(rows: list[dict], columns: list[str]) -> str:
    """Rows as complete CSV lines over `columns` (every row must have exactly those keys, in that order)."""
    for row in rows:
        if list(row) != columns:
            raise ValueError(f"a row has columns {list(row)}, the table {columns}")
    return csv_lines([[format_value(row[c]) for c in columns] for row in rows])


def append_text(path: Path | str, text: str) -> None:
    """Append complete lines to a file in one write, then fsync: O(len(text)), the file's size does not
    matter. A SIGKILL can at worst leave the final line without its newline."""
    if text and not text.endswith("\n"):
        raise ValueError("append_text appends complete lines only")
    data = memoryview(text.encode())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        while data:  # a regular file takes it in one write; loop only in case it does not
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


def truncate_torn_tail(path: Path | str) -> int:
    """Cut a final line that lacks its newline (a torn append); returns the bytes removed."""
    size = os.path.getsize(path)
    with open(path, "rb+") as f:
        if size == 0:
            return 0
        f.seek(max(size - 65536, 0))
        tail = f.read()
        if tail.endswith(b"\n"):
            return 0
        cut = tail.rfind(b"\n")
        if cut < 0:
            raise ValueError(f"{str(path)!r} has no complete line in its last 64 KiB; remove it")
        keep = size - len(tail) + cut + 1
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep


def sidecar_path(path: Path | str) -> Path:
    """`<table>.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def sidecar_text(config: dict, complete: bool, columns: dict | None = None, **extra) -> str:
    """The JSON text of a table's sidecar: config, its digest, column types, completeness, `extra`, provenance."""
    meta = {"config": config, "config_hash": config_hash(config), "complete": complete,
            "columns": columns, **extra, **provenance()}
    return json.dumps(meta, indent=2, default=str)


def write_sidecar(path: Path | str, config: dict, complete: bool, columns: dict | None = None, **extra) -> Path:
    """Write the table's JSON sidecar (atomically): config, its digest, column types, completeness, provenance."""
    atomic_write(sidecar_path(path), sidecar_text(config, complete, columns, **extra))
    return sidecar_path(path)


def read_sidecar(path: Path | str) -> dict | None:
    """The sidecar of a table as a dict, or None if there is none. Raises ValueError if it is not a JSON object
    (or larger than the bound text_mb)."""
    from isojax import inputs

    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        meta = json.loads(inputs.read_text(side, f"sidecar {str(side)!r}"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(side)!r} is not a valid sidecar ({err}); remove it and its table") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{str(side)!r} is not a valid sidecar (not a JSON object); remove it and its table")
    return meta


def is_isojax_sidecar(path: Path | str) -> bool:
    """Whether the file at path (a `<table>.json`) is a sidecar isojax wrote: a JSON object with a configuration
    digest and the isojax version. A missing or unreadable file is not."""
    from isojax import inputs

    try:
        meta = json.loads(inputs.read_text(path, f"sidecar {str(path)!r}"))
    except (ValueError, OSError):  # missing, not a regular file, too large, not UTF-8 or not JSON
        return False
    return (isinstance(meta, dict) and isinstance(meta.get("config_hash"), str)
            and isinstance(meta.get("versions"), dict) and "isojax" in meta["versions"])


def is_isojax_table(path: Path | str) -> bool:
    """Whether the table at path is one isojax wrote and nobody changed since: its sidecar is isojax's and
    every row matches the digest the sidecar records. A missing or unreadable table is not."""
    try:
        meta = read_sidecar(path) if is_isojax_sidecar(sidecar_path(path)) else None
        if meta is None or "row_sha256" not in meta:
            return False
        check_row_digests(path, meta, read_text_rows(path)[1])
    except (ValueError, OSError, UnicodeDecodeError):
        return False
    return True


def row_digest(table_hash: str, fields: list[str]) -> str:
    """16 hex digits of SHA-256 over a row's text fields (exactly as on disk), salted by its table's
    configuration digest, so a value edited by hand, a row moved to another cell, or another table's rows under
    this table's sidecar no longer match."""
    return hashlib.sha256("\x1f".join([table_hash, *fields]).encode()).hexdigest()[:16]


def table_text(rows: list[dict], config: dict, **extra) -> tuple[str, str]:
    """(CSV text, sidecar text) of a complete table of rows (dicts with the same keys; a "cell" column is
    added if missing; sorted by cell): the sidecar records the column types and each row's `row_digest`."""
    rows = [{"cell": i, **r} if "cell" not in r else r for i, r in enumerate(rows)]
    rows = sorted(rows, key=lambda r: int(r["cell"]))
    columns = list(rows[0]) if rows else ["cell"]
    for row in rows:
        if list(row) != columns:
            raise ValueError(f"a row has columns {list(row)}, the table {columns}")
    records = [[format_value(row[c]) for c in columns] for row in rows]
    table_hash = config_hash(config)
    side = sidecar_text(config, complete=True, columns=column_types(rows) if rows else {"cell": "int"},
                        row_sha256=[row_digest(table_hash, r) for r in records], **extra)
    return csv_lines([columns, *records]), side


def save_table(rows: list[dict], out: Path | str, config: dict) -> Path:
    """Write rows (dicts with the same keys; a "cell" column is added if missing; sorted by cell) as a CSV plus
    its JSON sidecar (config, column types, each row's digest, versions, commit): both written to temporary
    files and renamed together, so neither is ever half-written."""
    out = Path(out)
    table, side = table_text(rows, config)
    with staged(out, sidecar_path(out)) as (tmp_table, tmp_side):
        tmp_table.write_text(table)
        tmp_side.write_text(side)
    return out


def check_row_digests(path: Path | str, meta: dict, rows: list[tuple[int, list[str]]]) -> None:
    """Refuse (ValueError naming the file and the first bad line) a table whose rows do not match the digests
    its sidecar records (`row_sha256`, one per row in file order): a value edited or nan-ed by hand, a row
    added, removed or moved, or another table's rows under this sidecar."""
    digests = meta.get("row_sha256")
    if not isinstance(digests, list):
        raise ValueError(f"{str(path)!r}: its sidecar records no row digests")
    table_hash = meta.get("config_hash", "")
    for j, (line, fields) in enumerate(rows):
        if j >= len(digests) or row_digest(table_hash, fields) != digests[j]:
            raise ValueError(f"{str(path)!r}: line {line} does not match its digest in the sidecar: the table was "
                             "edited or is another table's; remove it (and its .json) or restore it")
    if len(rows) < len(digests):
        raise ValueError(f"{str(path)!r}: the sidecar records {len(digests)} rows, the table has {len(rows)} (rows "
                         f"removed after line {rows[-1][0] if rows else 1})")


# ----------------------------------------------------------------------------------------- reading

def read_text_rows(path: Path | str, allow_torn_tail: bool = False) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A table's header and its rows as text fields, each with its line number (the header is line 1).
    A final line without its newline is dropped if `allow_torn_tail`, refused otherwise; a row whose field
    count differs from the header's is refused (ValueError naming the file and the line)."""
    text = Path(path).read_text()
    if text and not text.endswith("\n"):
        if not allow_torn_tail:
            raise ValueError(f"{str(path)!r}: the last line is incomplete (a torn write?)")
        text = text[:text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise ValueError(f"{str(path)!r} has no header line")
    rows = []
    for fields in reader:
        if len(fields) != len(header):
            raise ValueError(f"{str(path)!r}: line {reader.line_num} has {len(fields)} fields, the header "
                             f"{len(header)}")
        rows.append((reader.line_num, fields))
    return header, rows


def read_table(path: Path | str) -> list[dict]:
    """Rows of a results table as dicts of typed values (the module docstring gives the typing rule).

    Raises ValueError naming the file and line for a value that does not parse as its column's type, or a
    malformed line, and (when the sidecar records row digests, as every table isojax writes does) a row that
    does not match its digest. A final line without its newline is dropped only while the sidecar says the
    table is still being written (a sweep killed mid-append)."""
    meta = read_sidecar(path) or {}
    header, rows = read_text_rows(path, allow_torn_tail=meta.get("complete") is False)
    if "row_sha256" in meta:
        check_row_digests(path, meta, rows)
    types = meta.get("columns") or {}
    kinds = [types.get(name) for name in header]
    out = []
    for line, fields in rows:
        try:
            out.append({name: parse_value(text, kind) for name, text, kind in zip(header, fields, kinds, strict=True)})
        except ValueError as err:
            raise ValueError(f"{str(path)!r}: line {line}: {err}") from err
    return out


def _check_lock_file(lock: Path) -> None:
    """A lock file left by isojax is a regular file holding nothing or a process id; anything else is the
    user's own file, which the lock would truncate and remove: refused."""
    if not lock.exists() and not lock.is_symlink():
        return
    if lock.is_symlink() or not lock.is_file() or lock.stat().st_size > 32:
        raise ValueError(f"{str(lock)!r} exists and is not an isojax lock file; move it away")
    text = lock.read_bytes().strip()
    if text and not (text.isascii() and text.isdigit()):
        raise ValueError(f"{str(lock)!r} exists and is not an isojax lock file; move it away")


@contextlib.contextmanager
def exclusive_lock(path: Path | str) -> Iterator[Path]:
    """Hold `<path>.lock` exclusively while the block runs; raise TableLockedError at once if another
    process holds it. The lock file is removed on release, so nothing is left behind."""
    lock = Path(path).with_name(Path(path).name + ".lock")
    _check_lock_file(lock)
    for _ in range(100):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise TableLockedError(f"{str(path)!r} is being written by another process (pid {holder or '?'}, "
                                   f"lock {str(lock)!r}); wait for it to finish or choose another path") from None
        try:  # the holder may have released and removed the file between our open and flock: retry then
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise TableLockedError(f"could not take the lock {str(lock)!r}")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield lock
    finally:
        os.unlink(lock)  # while still holding it: a process that opened it meanwhile sees a stale inode
        os.close(fd)

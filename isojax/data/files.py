"""Your own series from files: `csv:PATH[:COLUMN]` and `npy:PATH` sources, and the checks every user series gets.

- CSV (read by pandas): one series per numeric column, or only COLUMN (a header name, or a 0-based index when
  no header is called that). A column of text only (dates, names) is not a series: named, it is an error;
  otherwise skipped. A column of numbers with a non-numeric cell (text, or a number pandas cannot read) is
  refused, naming the row and the column, unless `drop_bad_rows`: then every row with a non-numeric or empty
  cell in a series column is dropped.
- .npy: [n] (one series) or [series, n] of real numbers (complex, bool, text and objects are refused).
- Both are regular files (a FIFO or device is refused at once) no larger than the bound data_mb, which also
  bounds a .npy's declared size before it is read (`isojax.inputs`).
- `check_series` refuses, naming the series, one that is empty, too short, not finite or constant.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from isojax import inputs

__all__ = ["is_file_source", "load_series", "check_series"]

PREFIXES = ("csv:", "npy:")


def is_file_source(source: str) -> bool:
    """Whether `source` names a file of the user's own series (csv:... or npy:...)."""
    return isinstance(source, str) and source.startswith(PREFIXES)


def _split_csv(spec: str) -> tuple[Path, str | None]:
    """PATH[:COLUMN] -> (path, column); a path that exists as written wins (it may hold a ':')."""
    if Path(spec).is_file() or ":" not in spec:
        return Path(spec), None
    path, column = spec.rsplit(":", 1)
    return Path(path), column or None


def _open(path: Path, source: str):
    """The data file opened (a regular file within the bound data_mb), or a ValueError naming it."""
    f = inputs.open_regular(path, f"data {source!r}: {str(path)!r}")
    try:
        inputs.check_bound(f"data {source!r}: {str(path)!r}", "the file", os.fstat(f.fileno()).st_size, "data_mb")
    except BaseException:
        f.close()
        raise
    return f


def _csv(source: str, drop_bad_rows: bool = False) -> tuple[list[np.ndarray], list[str]]:
    import pandas as pd

    path, column = _split_csv(source[4:])
    where = f"data {source!r}: {str(path)!r}"
    with _open(path, source) as f:
        try:
            frame = pd.read_csv(f)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as err:
            raise ValueError(f"{where} is not a readable CSV file: {err}") from None
    if column is not None and column not in frame.columns:
        if not (column.isdigit() and int(column) < frame.shape[1]):
            raise ValueError(f"{where} has no column {column!r}; its columns: {list(map(str, frame.columns))}")
        column = frame.columns[int(column)]
    if frame.shape[0] == 0:
        raise ValueError(f"{where} has a header but no rows")
    candidates = [column] if column is not None else list(frame.columns)
    parsed, bad_rows = {}, np.zeros(frame.shape[0], bool)
    for c in candidates:
        cells = frame[c]
        if pd.api.types.is_bool_dtype(cells):  # True/False are not a series
            values = pd.Series(np.nan, index=cells.index)
        elif pd.api.types.is_numeric_dtype(cells):
            values = cells.astype(np.float64)
        else:  # text in the column: which cells are numbers?
            values = pd.to_numeric(cells, errors="coerce")
        text = values.isna().to_numpy() & cells.notna().to_numpy()  # a cell that holds something, not a number
        if text[cells.notna().to_numpy()].all():  # nothing in it is a number: not a series
            if column is not None:
                raise ValueError(f"data {source!r}: column {str(c)!r} of {str(path)!r} is not numeric "
                                 f"(first value {cells.dropna().iloc[0] if cells.notna().any() else None!r})")
            continue
        if text.any() and not drop_bad_rows:
            row = int(np.flatnonzero(text)[0])
            raise ValueError(f"data {source!r}: column {str(c)!r} of {str(path)!r} has a non-numeric cell "
                             f"{cells.iloc[row]!r} in row {row + 1} (after the header); fix it, or drop such rows "
                             "(--drop-bad-rows)")
        bad_rows |= values.isna().to_numpy()
        parsed[c] = values.to_numpy(np.float64)
    if not parsed:
        raise ValueError(f"{where} has no numeric column")
    keep = ~bad_rows if drop_bad_rows else np.ones(frame.shape[0], bool)
    return [v[keep] for v in parsed.values()], [f"{path}:{c}" for c in parsed]


def _npy(source: str) -> tuple[list[np.ndarray], list[str]]:
    path = Path(source[4:])
    where = f"data {source!r}: {str(path)!r}"
    with _open(path, source) as f:
        head = inputs.npy_header(f, where)
        if len(head.shape) not in (1, 2):
            raise ValueError(f"{where} must hold a numeric array [n] or [series, n], got {head.dtype} shape "
                             f"{head.shape}")
        inputs.check_bound(where, "its values as float64", 8 * int(np.prod(head.shape)), "data_mb")
        if head.offset + head.nbytes > os.fstat(f.fileno()).st_size:
            raise ValueError(f"{where} is not a readable .npy file: truncated (it declares shape {head.shape} of "
                             f"{head.dtype})")
        f.seek(0)
        try:
            x = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"{where} is not a readable .npy file: {err}") from None
    rows = x.reshape(1, -1) if x.ndim == 1 else x
    return [np.asarray(r, np.float64) for r in rows], [f"{path}[{i}]" for i in range(len(rows))]


def load_series(source: str, drop_bad_rows: bool = False) -> tuple[list[np.ndarray], list[str]]:
    """The series of a file source and a name for each (file and column, or file and row index).
    source: "csv:PATH[:COLUMN]" or "npy:PATH" -> ([series [n_i]], [name]). drop_bad_rows: drop the CSV rows
    with a non-numeric or empty cell in a series column instead of refusing them."""
    if source.startswith("csv:"):
        return _csv(source, drop_bad_rows)
    if source.startswith("npy:"):
        return _npy(source)
    raise ValueError(f"source must start with one of {PREFIXES}, got {source!r}")


def check_series(series: list, names: list[str] | None = None, min_length: int = 2) -> list[np.ndarray]:
    """The series as float64 1-D arrays, after refusing (ValueError naming it) one that is not 1-D, has fewer
    than `min_length` values, a NaN or inf, or only one value repeated (its scale would be meaningless)."""
    if not isinstance(series, (list, tuple)) or not series:
        raise ValueError(f"series must be a non-empty list of 1-D arrays, got {type(series).__name__}")
    names = list(names) if names is not None else [f"series[{i}]" for i in range(len(series))]
    if len(names) != len(series):
        raise ValueError(f"names has {len(names)} entries for {len(series)} series")
    out = []
    for s, name in zip(series, names):
        try:
            s = np.asarray(s, np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} is not a numeric series: {err}") from None
        if s.ndim != 1:
            raise ValueError(f"{name} must be a 1-D series, got shape {s.shape}")
        if s.size < min_length:
            raise ValueError(f"{name} is too short: {s.size} values, need at least {min_length}")
        bad = np.flatnonzero(~np.isfinite(s))
        if bad.size:
            raise ValueError(f"{name} has {bad.size} non-finite values (NaN, inf or empty cells), first at index "
                             f"{bad[0]}")
        if np.all(s == s[0]):
            raise ValueError(f"{name} is constant ({float(s[0])!r} throughout): nothing to model")
        out.append(s)
    return out

"""Your own series from files: `csv:PATH[:COLUMN]` and `npy:PATH` sources, and the checks every user series gets.

- CSV (read by pandas): one series per numeric column, or only COLUMN (a header name, or a 0-based index when
  no header is called that). A column with text in it is not numeric: named, it is an error; otherwise skipped.
- .npy: [n] (one series) or [series, n].
- `check_series` refuses, naming the series, one that is empty, too short, not finite or constant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def _existing(path: Path, source: str) -> Path:
    if not path.exists():
        raise ValueError(f"data {source!r}: no such file {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"data {source!r}: {str(path)!r} is not a file")
    return path


def _csv(source: str) -> tuple[list[np.ndarray], list[str]]:
    import pandas as pd

    path, column = _split_csv(source[4:])
    _existing(path, source)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise ValueError(f"data {source!r}: {str(path)!r} is not a readable CSV file: {err}") from None
    if column is not None:
        if column not in frame.columns:
            if not (column.isdigit() and int(column) < frame.shape[1]):
                raise ValueError(f"data {source!r}: {str(path)!r} has no column {column!r}; "
                                 f"its columns: {list(map(str, frame.columns))}")
            column = frame.columns[int(column)]
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise ValueError(f"data {source!r}: column {str(column)!r} of {str(path)!r} is not numeric "
                             f"(first value {frame[column].iloc[0]!r})")
        names = [column]
    else:
        names = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        if not names:
            raise ValueError(f"data {source!r}: {str(path)!r} has no numeric column")
    return [frame[c].to_numpy(np.float64) for c in names], [f"{path}:{c}" for c in names]


def _npy(source: str) -> tuple[list[np.ndarray], list[str]]:
    path = _existing(Path(source[4:]), source)
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"data {source!r}: {str(path)!r} is not a readable .npy file: {err}") from None
    if not isinstance(x, np.ndarray) or x.ndim not in (1, 2) or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"data {source!r}: {str(path)!r} must hold a numeric array [n] or [series, n], got "
                         f"{getattr(x, 'dtype', type(x).__name__)} shape {getattr(x, 'shape', '?')}")
    rows = x.reshape(1, -1) if x.ndim == 1 else x
    return [np.asarray(r, np.float64) for r in rows], [f"{path}[{i}]" for i in range(len(rows))]


def load_series(source: str) -> tuple[list[np.ndarray], list[str]]:
    """The series of a file source and a name for each (file and column, or file and row index).
    source: "csv:PATH[:COLUMN]" or "npy:PATH" -> ([series [n_i]], [name])"""
    if source.startswith("csv:"):
        return _csv(source)
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

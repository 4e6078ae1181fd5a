"""The table of one sweep: validated on resume, grown by appended chunks, sorted by cell at the end.

Used by `isojax.runs.sweep` in the writing process only, while it holds the table's lock. Rows are kept as text
fields (exactly what is on disk), so resumed and fresh rows are typed by one rule at the end.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from isojax.runs import results
from isojax.runs._identity import config_difference

_HINT = "the table does not belong to this sweep: remove it (and its .json) or choose another path"


@dataclasses.dataclass
class State:
    """What is on disk: the header (None: no table), finished cells -> text fields, whether the last line is
    torn (a SIGKILL mid-append) and whether the sidecar marks the table complete."""
    header: list[str] | None
    done: dict[int, list[str]]
    torn: bool = False
    complete: bool = False


class SweepTable:
    """One sweep's table at `path` for `config` over `all_cells` (parameters `names`)."""

    def __init__(self, path: Path, config: dict, all_cells: list[dict], names: list[str]):
        self.path, self.config, self.cells, self.names = Path(path), config, all_cells, names
        self.state, self.info = State(None, {}), {}
        self.wrote = False

    def _bad(self, line: int, why: str) -> ValueError:
        return ValueError(f"{str(self.path)!r}: line {line}: {why}; {_HINT}")

    def load(self) -> State:
        """Read and validate the table on disk (nothing is written): the sidecar's configuration digest must
        be this sweep's; every row must be a cell of the grid, once, with the grid's parameter values and
        numeric outputs. Raises ValueError naming the file and the first bad row."""
        if not self.path.exists():
            return State(None, {})
        meta = results.read_sidecar(self.path)
        if meta is None or meta.get("config_hash") != results.config_hash(self.config):
            differs = config_difference(meta.get("config") if meta else None, self.config)
            raise ValueError(f"out {str(self.path)!r} holds a table from another configuration ({differs}); "
                             "choose another path")
        complete = meta.get("complete") is not False
        header, rows = results.read_text_rows(self.path, allow_torn_tail=not complete)
        k = 1 + len(self.names)
        if header[:k] != ["cell", *self.names]:
            raise self._bad(1, f"the header starts {header[:k]}, the sweep's columns are {['cell', *self.names]}")
        expected = [[results.format_value(c[n]) for n in self.names] for c in self.cells]
        done: dict[int, list[str]] = {}
        for line, fields in rows:
            cell = fields[0]
            if not (cell.isascii() and cell.isdigit()) or int(cell) >= len(self.cells):
                raise self._bad(line, f"cell {cell!r} is not a cell of the {len(self.cells)}-cell grid")
            i = int(cell)
            if i in done:
                raise self._bad(line, f"cell {i} appears twice")
            if fields[1:k] != expected[i]:
                raise self._bad(line, f"cell {i} has parameters {fields[1:k]}, the grid {expected[i]}")
            bad = [h for h, t in zip(header[k:], fields[k:], strict=True) if results.value_kind(t) == "str"]
            if bad:
                raise self._bad(line, f"cell {i}: column {bad[0]!r} is not a number")
            done[i] = fields
        torn = self.path.stat().st_size > 0 and _last_byte(self.path) != b"\n"
        self.state = State(header, done, torn, complete)
        return self.state

    def begin(self, **info) -> None:
        """Get ready to add rows (after `load`): mark the table incomplete in the sidecar (with `info`) and cut
        a torn last line. Writes nothing if the table is already complete."""
        self.info = info
        if self.state.complete and len(self.state.done) == len(self.cells):
            return
        results.write_sidecar(self.path, self.config, complete=False, cells=len(self.cells), **self.info)
        if self.state.torn:
            results.truncate_torn_tail(self.path)
        self.wrote = True

    def store(self, rows: list[dict]) -> None:
        """Add finished rows: the first chunk creates the table (header and rows, atomically), later ones are
        appended as complete lines in one write (O(chunk))."""
        columns = list(rows[0])
        records = [[results.format_value(r[c]) for c in columns] for r in rows]
        if self.state.header is None:
            results.atomic_write(self.path, results.csv_lines([columns, *records]))
            self.state.header = columns
        elif columns != self.state.header:
            raise ValueError(f"the cell function returned columns {columns[1 + len(self.names):]}, the table "
                             f"{str(self.path)!r} has {self.state.header[1 + len(self.names):]}")
        else:
            results.append_text(self.path, results.csv_lines(records))
        for r, fields in zip(rows, records, strict=True):
            self.state.done[r["cell"]] = fields

    def types(self) -> dict[str, str]:
        """Column types: the cell an int, the parameters by their grid values, the outputs by their text."""
        types = {"cell": "int", **results.column_types([{n: c[n] for n in self.names} for c in self.cells])}
        k = 1 + len(self.names)
        for j, name in enumerate(self.state.header[k:], start=k):
            kinds = {results.value_kind(f[j]) for f in self.state.done.values()}
            types[name] = next(iter(kinds)) if len(kinds) == 1 else "float" if kinds == {"int", "float"} else "str"
        return types

    def typed_rows(self) -> list[dict]:
        """The finished rows, sorted by cell, typed by `types` (as `results.read_table` reads them)."""
        if self.state.header is None:
            return []
        types = self.types()
        kinds = [types[h] for h in self.state.header]
        return [{h: results.parse_value(t, kind) for h, t, kind in zip(self.state.header, self.state.done[i], kinds,
                                                                          strict=True)}
                for i in sorted(self.state.done)]

    def finish(self) -> list[dict]:
        """Sort the table by cell (one atomic rewrite) and mark it complete with its column types."""
        if self.wrote and len(self.state.done) == len(self.cells):
            records = [self.state.done[i] for i in sorted(self.state.done)]
            results.atomic_write(self.path, results.csv_lines([self.state.header, *records]))
            results.write_sidecar(self.path, self.config, complete=True, columns=self.types(),
                                  cells=len(self.cells), **self.info)
        return self.typed_rows()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)

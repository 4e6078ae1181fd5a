"""The table of one sweep: validated on resume, grown by appended chunks, sorted by cell at the end.

Used by `isojax.runs.sweep` in the writing process only, while it holds the table's lock. Rows are kept as text
fields (exactly what is on disk), so resumed and fresh rows are typed by one rule at the end.

Every row is protected by its digest (`results.row_digest`). While the table is being written, each chunk's
digests are appended to `<table>.digests` (one `cell digest` line per row) before its rows are appended to the
table, so whatever a SIGKILL leaves, every row on disk has its digest; a torn last line of either file is
forgiven while the table is being written. The end sorts the table, records the digests in the sidecar
(`row_sha256`) and removes `<table>.digests`. On resume a row that does not match its digest (edited or nan-ed
by hand, moved, another table's) is refused, naming its line.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from isojax.runs import results
from isojax.runs._identity import config_difference

_HINT = "the table does not belong to this sweep: remove it (and its .json) or choose another path"


def digests_path(path: Path) -> Path:
    """`<table>.digests`: the digests of the rows of a table being written."""
    return path.with_name(path.name + ".digests")


def _read_digests(path: Path) -> dict[int, str] | None:
    """{cell: digest} from a `.digests` file (a torn last line dropped), or None if it is not one."""
    if not path.is_file():
        return None
    text = path.read_bytes().decode("ascii", errors="replace")
    out = {}
    for line in text[:text.rfind("\n") + 1].splitlines():
        cell, _, digest = line.partition(" ")
        if not (cell.isascii() and cell.isdigit() and len(digest) == 16 and digest.isascii() and digest.isalnum()):
            return None
        out[int(cell)] = digest
    return out


def _digest_lines(records: list[list[str]], table_hash: str) -> str:
    return "".join(f"{r[0]} {results.row_digest(table_hash, r)}\n" for r in records)


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

    def __init__(self, path: Path, config: dict, all_cells: list[dict], names: list[str], force: bool = False):
        self.path, self.config, self.cells, self.names = Path(path), config, all_cells, names
        self.hash, self.log, self.force = results.config_hash(config), digests_path(Path(path)), force
        self.state, self.info = State(None, {}), {}
        self.wrote = False

    def _check_leftovers(self) -> None:
        """With no table yet: a sidecar or digests file at its derived paths is replaced only if isojax wrote it
        (or with force)."""
        from isojax.runs.outputs import check_derived

        side = results.sidecar_path(self.path)
        check_derived(side, results.is_isojax_sidecar(side), self.force, what=str(self.path))
        check_derived(self.log, _read_digests(self.log) is not None, self.force, what=str(self.path))

    def _expected(self, meta: dict, complete: bool) -> dict[int, str]:
        """{cell: digest} of the rows on disk: from the sidecar once complete, else from `<table>.digests`."""
        if complete:
            digests = meta.get("row_sha256")
            if not isinstance(digests, list) or len(digests) != len(self.cells):
                raise ValueError(f"{str(self.path)!r}: its sidecar records no digest for each of its "
                                 f"{len(self.cells)} rows (written by an older isojax, or edited); {_HINT}")
            return dict(enumerate(digests))
        digests = _read_digests(self.log)
        if digests is None:
            raise ValueError(f"{str(self.path)!r} is being written but {str(self.log)!r}, the digests of its rows, "
                             f"is missing or damaged; {_HINT}")
        return digests

    def _bad(self, line: int, why: str) -> ValueError:
        return ValueError(f"{str(self.path)!r}: line {line}: {why}; {_HINT}")

    def load(self) -> State:
        """Read and validate the table on disk (nothing is written): the sidecar's configuration digest must
        be this sweep's; every row must be a cell of the grid, once, with the grid's parameter values and
        numeric outputs. Raises ValueError naming the file and the first bad row."""
        if not self.path.exists():
            self._check_leftovers()
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
        digests = self._expected(meta, complete)
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
            if digests.get(i) != results.row_digest(self.hash, fields):
                raise self._bad(line, f"cell {i} does not match its digest (a value edited or nan-ed by hand, or "
                                      "another table's row)")
            done[i] = fields
        torn = self.path.stat().st_size > 0 and _last_byte(self.path) != b"\n"
        self.state = State(header, done, torn, complete)
        return self.state

    def begin(self, **info) -> None:
        """Get ready to add rows (after `load`). A table on disk: write the digests of its finished rows to
        `<table>.digests`, mark it incomplete in the sidecar (with `info`) and cut a torn last line; nothing if it
        is already complete (but a digests file left by an interrupted `finish` is removed). No table yet:
        nothing; its files are created with its first chunk (`store`), so a run that fails or is interrupted
        before leaves none."""
        self.info = info
        if self.state.complete and len(self.state.done) == len(self.cells):
            if _read_digests(self.log) is not None:
                self.log.unlink()
            return
        self.wrote = True
        if self.state.header is None:
            return
        results.atomic_write(self.log, _digest_lines([self.state.done[i] for i in sorted(self.state.done)], self.hash))
        results.write_sidecar(self.path, self.config, complete=False, cells=len(self.cells), **self.info)
        if self.state.torn:
            results.truncate_torn_tail(self.path)

    def _create(self, columns: list[str], records: list[list[str]]) -> None:
        """The first chunk of a new table: sidecar, digests and table, each atomically; if any fails, none of
        the three stays."""
        try:
            results.write_sidecar(self.path, self.config, complete=False, cells=len(self.cells), **self.info)
            results.atomic_write(self.log, _digest_lines(records, self.hash))
            results.atomic_write(self.path, results.csv_lines([columns, *records]))
        except BaseException:
            if not self.path.exists():
                self.log.unlink(missing_ok=True)
                results.sidecar_path(self.path).unlink(missing_ok=True)
            raise

    def store(self, rows: list[dict]) -> None:
        """Add finished rows: their digests first (appended to `<table>.digests`), then the rows; the first
        chunk creates the table (`_create`), later ones are appended as complete lines in one write
        (O(chunk))."""
        columns = list(rows[0])
        records = [[results.format_value(r[c]) for c in columns] for r in rows]
        if self.state.header is None:
            self._create(columns, records)
            self.state.header = columns
        elif columns != self.state.header:
            raise ValueError(f"the cell function returned columns {columns[1 + len(self.names):]}, the table "
                             f"{str(self.path)!r} has {self.state.header[1 + len(self.names):]}")
        else:
            results.append_text(self.log, _digest_lines(records, self.hash))
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
        """Sort the table by cell (one atomic rewrite), mark it complete with its column types and its rows'
        digests, and remove `<table>.digests`."""
        if self.wrote and len(self.state.done) == len(self.cells):
            records = [self.state.done[i] for i in sorted(self.state.done)]
            results.atomic_write(self.path, results.csv_lines([self.state.header, *records]))
            results.write_sidecar(self.path, self.config, complete=True, columns=self.types(),
                                  cells=len(self.cells), row_sha256=[results.row_digest(self.hash, r) for r in records],
                                  **self.info)
            self.log.unlink(missing_ok=True)
        return self.typed_rows()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)

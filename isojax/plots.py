"""One figure style for every isojax figure: panels sized to stay readable, labelled axes, PNG + PDF.

Importing this module changes nothing global: it picks no matplotlib backend and leaves `rcParams` alone. The
style applies only inside `style()` (a `matplotlib.rc_context`), so a notebook keeps its inline figures and
its own settings. Draw and save a figure inside one `with plots.style():` block (or decorate the drawing
function with `@plots.styled`): font sizes are read when artists are made, and dpi/bbox when it is saved.

`plot_table` draws columns of a results table (`isojax plot`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["SINGLE", "DOUBLE", "PANEL", "STYLE", "style", "styled", "figure", "save", "plot_table"]

SINGLE = 3.4  # inches: one column of a two-column paper
DOUBLE = 7.0
PANEL = 1.75  # inches: the narrowest panel whose 6-7 pt tick labels and axis labels stay readable (DOUBLE / 4)

STYLE = {
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "legend.fontsize": 6,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "lines.linewidth": 1.0,
    "lines.markersize": 3,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "figure.constrained_layout.use": True,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The isojax figure style, for the duration of a `with` block only."""
    with mpl.rc_context(STYLE):
        yield


def styled(draw: Callable) -> Callable:
    """Decorator: run a figure-drawing function inside `style()`."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with style():
            return draw(*args, **kwargs)
    return wrapper


def figure(nrows: int = 1, ncols: int = 1, width: float | None = None, height: float | None = None,
           **kw) -> tuple[Figure, np.ndarray]:
    """A figure and a [nrows, ncols] array of axes in the isojax style, sized to its grid: width defaults to
    ncols panels of PANEL inches (at least SINGLE, one column of a paper: 1 × 1 is 3.4 in wide, 2 × 4 is 7 in,
    1 × 6 is 10.5 in), height to 0.75 × the panel width per row. -> (Figure, axes [nrows, ncols])"""
    for name, value in (("nrows", nrows), ("ncols", ncols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    with style():
        width = width or max(SINGLE, ncols * PANEL)
        height = height or 0.75 * (width / ncols) * nrows
        return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kw)


def save(fig: Figure, out_dir: Path | str, name: str) -> list[Path]:
    """Write name.png and name.pdf into out_dir (each to a temporary file, then renamed) and close fig."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with style():
        for ext in ("png", "pdf"):
            path = out_dir / f"{name}.{ext}"
            fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=f".{ext}")  # a unique new name
            os.close(fd)
            try:
                fig.savefig(tmp, format=ext)
                os.chmod(tmp, 0o666 & ~_umask())
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
            paths.append(path)
    plt.close(fig)
    return paths


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------------- a table's columns

def _read_rows(table: Path) -> tuple[list[dict], dict]:
    from isojax.runs import results

    if not table.is_file():
        raise ValueError(f"table {str(table)!r}: no such file")
    try:
        rows = results.read_table(table)
        meta = results.read_sidecar(table) or {}
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"table {str(table)!r} could not be read: {err}") from None
    if not rows:
        raise ValueError(f"table {str(table)!r} has no rows")
    return rows, meta


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _matches(value, text: str) -> bool:
    """A --where value against a typed cell: numerically for numbers (0.5 matches 0.50), as text otherwise."""
    if _is_number(value):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return str(value) == text


def _selected(rows: list[dict], meta: dict, table: Path, x: str, ys: list[str], by: str | None,
              where: dict[str, str]) -> list[dict]:
    """The rows to draw, after every column is checked: each named column exists, x and every y are numbers,
    and no parameter of the sweep other than x, by and replicate varies among them (averaging over it would
    mix different experiments into one point)."""
    columns = list(rows[0])
    for flag, names in (("--x", [x]), ("--y", ys), ("--by", [by] if by else []), ("--where", list(where))):
        for name in names:
            if name not in columns:
                raise ValueError(f"{flag} {name!r} is not a column of {str(table)!r}; its columns: {columns}")
    chosen = [r for r in rows if all(_matches(r[k], v) for k, v in where.items())]
    if not chosen:
        shown = " ".join(f"{k}={v}" for k, v in where.items())
        raise ValueError(f"no row of {str(table)!r} has {shown}")
    for flag, name in (("--x", x), *(("--y", y) for y in ys)):
        bad = next((r[name] for r in chosen if not _is_number(r[name])), None)
        if bad is not None:
            numeric = [c for c in columns if all(_is_number(r[c]) for r in chosen)]
            raise ValueError(f"{flag} {name!r} is not numeric (it holds {bad!r}); numeric columns: {numeric}")
    grid = (meta.get("config") or {}).get("grid") or {}
    for name in grid:
        if name in (x, by, "replicate") or name in where or name not in columns:
            continue
        values = sorted({r[name] for r in chosen}, key=str)
        if len(values) > 1:
            raise ValueError(f"column {name!r} takes {len(values)} values {values} in {str(table)!r}: choose one "
                             f"with --where {name}={values[0]} or draw a line for each with --by {name}")
    return chosen


def _default_figure(table: Path, x: str, ys: list[str], by: str | None) -> Path:
    return table.with_name(f"{table.stem}_{'_'.join(ys)}_vs_{x}{f'_by_{by}' if by else ''}")


@styled
def plot_table(table: Path | str, x: str, y: str | list[str], by: str | None = None,
               where: dict[str, str] | None = None, out: Path | str | None = None) -> list[Path]:
    """Draw columns of a results table (a sweep's, or any isojax table): one panel per column in `y` against
    column `x`, one line per value of column `by` (if given), each point the mean of the rows that share it
    (several: replicates), with their standard deviation as error bars. `where` {column: value} keeps only
    the matching rows. A sweep table's other parameters must take one value among the rows drawn (the
    sidecar's grid says which columns are parameters). Writes out.png and out.pdf (default: beside the
    table, TABLE_<y>_vs_<x>). -> [png, pdf]

    ValueError before drawing anything for a missing or unreadable table, an empty one, a column that is not
    there, a non-numeric x or y, or a parameter that varies without being drawn."""
    table = Path(table)
    ys = [y] if isinstance(y, str) else list(y)
    if not ys:
        raise ValueError("y must name at least one column")
    where = dict(where or {})
    rows, meta = _read_rows(table)
    chosen = _selected(rows, meta, table, x, ys, by, where)
    from isojax.runs.outputs import check_output

    out = Path(out) if out is not None else _default_figure(table, x, ys, by)
    if out.suffix in (".png", ".pdf"):
        out = out.with_suffix("")
    for suffix in (".png", ".pdf"):
        check_output(out.with_name(out.name + suffix), suffix)
    groups = sorted({r[by] for r in chosen}, key=lambda v: (str(type(v)), v)) if by else [None]
    ncols = min(len(ys), 4)
    fig, axes = figure((len(ys) + ncols - 1) // ncols, ncols)
    most = 1
    for ax, name in zip(axes.ravel(), ys):
        for group in groups:
            sel = [r for r in chosen if by is None or r[by] == group]
            xs = sorted({float(r[x]) for r in sel})
            vals = [np.array([float(r[name]) for r in sel if float(r[x]) == v]) for v in xs]
            most = max(most, *(len(v) for v in vals))
            mean = [v.mean() for v in vals]
            spread = [v.std() if len(v) > 1 else 0.0 for v in vals]
            ax.errorbar(xs, mean, yerr=spread if max(spread) > 0 else None, marker="o", capsize=2,
                        label=None if group is None else f"{by} = {group}")
        ax.set_xlabel(x)
        ax.set_ylabel(name)
    for ax in axes.ravel()[len(ys):]:
        ax.set_axis_off()
    if by:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False)
    note = f": mean ± sd of up to {most} rows a point" if most > 1 else ""
    fig.suptitle(f"{table.name}{note}" + ("".join(f", {k} = {v}" for k, v in where.items())))
    return save(fig, out.parent, out.name)

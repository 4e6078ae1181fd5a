"""One figure style for every isojax figure: single-column width, labelled axes, PNG + PDF.

Importing this module changes nothing global: it picks no matplotlib backend and leaves `rcParams` alone. The
style applies only inside `style()` (a `matplotlib.rc_context`), so a notebook keeps its inline figures and
its own settings. Draw and save a figure inside one `with plots.style():` block (or decorate the drawing
function with `@plots.styled`): font sizes are read when artists are made, and dpi/bbox when it is saved.
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

__all__ = ["SINGLE", "DOUBLE", "STYLE", "style", "styled", "figure", "save"]

SINGLE = 3.4  # inches: one column of a two-column paper
DOUBLE = 7.0

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


def figure(nrows: int = 1, ncols: int = 1, width: float = SINGLE, height: float | None = None,
           **kw) -> tuple[Figure, np.ndarray]:
    """A figure and a [nrows, ncols] array of axes in the isojax style; height defaults to 0.75 × width per
    row over columns. -> (Figure, axes [nrows, ncols])"""
    with style():
        height = height or width * 0.75 * nrows / ncols
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

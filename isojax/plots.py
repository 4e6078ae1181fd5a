"""One figure style for every isojax figure: single-column width, labelled axes, PNG + PDF."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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


def figure(nrows: int = 1, ncols: int = 1, width: float = SINGLE, height: float | None = None, **kw):
    """A figure in the isojax style; height defaults to 0.75 × width per row over columns."""
    plt.rcParams.update(STYLE)
    height = height or width * 0.75 * nrows / ncols
    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kw)


def save(fig, out_dir, name: str) -> list[Path]:
    """Write name.png and name.pdf into out_dir (each to a temporary file, then renamed) and close fig."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{name}.{ext}"
        tmp = out_dir / f".{name}.tmp{os.getpid()}.{ext}"
        fig.savefig(tmp, format=ext)
        os.replace(tmp, path)
        paths.append(path)
    plt.close(fig)
    return paths

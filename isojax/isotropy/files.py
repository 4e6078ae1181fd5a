"""Hidden states saved in files (.npy, .npz, .safetensors), measured layer by layer (`isojax measure`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from isojax.isotropy.api import measure_layers
from isojax.runs import results
from isojax.runs.outputs import check_output

__all__ = ["read_hidden", "measure_file"]


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_hidden(path: Path) -> dict[str, np.ndarray]:
    """Hidden states from a file, one [n, d] array per layer in file order: .npy [n, d] or [layers, n, d]; .npz
    with `hidden` ([n, d] or [layers, n, d]) or else one named [n, d] array per layer; .safetensors likewise (its
    names in natural order, as the format keeps none). -> {layer name: [n, d]}"""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"file {str(path)!r}: no such file" if not path.exists() else f"{str(path)!r} is not a file")
    try:
        if path.suffix == ".npy":
            arrays = {"hidden": np.load(path, allow_pickle=False)}
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        elif path.suffix == ".safetensors":
            from safetensors.numpy import load_file
            loaded = load_file(str(path))  # the format keeps no order: names in natural order (h.2 before h.10)
            arrays = {k: loaded[k] for k in sorted(loaded, key=_natural)}
        else:
            raise ValueError(f"file {str(path)!r} must be .npy, .npz or .safetensors")
    except ValueError:
        raise
    except Exception as err:  # zip, pickle and safetensors each raise their own type for a damaged file
        raise ValueError(f"file {str(path)!r} could not be read (truncated or corrupt?): {err}") from None
    if not arrays:
        raise ValueError(f"file {str(path)!r} holds no arrays")
    if "hidden" in arrays or len(arrays) == 1:
        name, x = ("hidden", arrays["hidden"]) if "hidden" in arrays else next(iter(arrays.items()))
        if x.ndim == 2:
            return {"0": x}
        if x.ndim == 3:
            return {str(i): layer for i, layer in enumerate(x)}
        raise ValueError(f"file {str(path)!r}: array {name!r} must be [n, d] or [layers, n, d], got shape {x.shape}")
    bad = {k: v.shape for k, v in arrays.items() if v.ndim != 2}
    if bad:
        raise ValueError(f"file {str(path)!r}: every per-layer array must be [n, d], got shapes {bad}")
    return dict(arrays)


def measure_file(path: Path, out: Path, measures: list[str] | None = None, max_points: int = 2000,
                 seed: int = 0) -> tuple[list[dict], list[Path]]:
    """Every isotropy measure (or `measures`) of each layer's hidden states in a file (see `read_hidden`) ->
    (rows, files written): the table out (.csv) with its JSON sidecar, and a by-layer figure beside it
    (out's stem .png and .pdf)."""
    from isojax import plots

    out = check_output(out, ".csv")
    for ext in (".png", ".pdf", ".csv.json"):
        check_output(out.with_name(out.stem + ext) if ext != ".csv.json" else out.with_name(out.name + ".json"))
    hidden = read_hidden(path)
    rows = measure_layers(hidden, seed=seed, measures=measures, max_points=max_points)
    config = {"name": "measure_file", "file": str(path), "measures": measures, "max_points": max_points, "seed": seed}
    written = [results.save_table(rows, out, config), out.with_name(out.name + ".json")]
    with plots.style():
        written += _plot_layers(rows, out)
    return rows, written


def _plot_layers(rows: list[dict], out: Path) -> list[Path]:
    """One small panel per measure, its value against the layer."""
    from isojax import plots

    names = [k for k in rows[0] if k not in ("layer", "cell") and isinstance(rows[0][k], (int, float))]
    cols = min(3, len(names))
    fig, axes = plots.figure((len(names) + cols - 1) // cols, cols, width=plots.DOUBLE)
    layers = np.arange(len(rows))
    for ax, name in zip(axes.ravel(), names):
        ax.plot(layers, [r[name] for r in rows], marker="o")
        ax.set_xlabel("layer")
        ax.set_ylabel(name)
        ax.set_xticks(layers, [str(r["layer"]) for r in rows])
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    return plots.save(fig, out.parent, out.stem)

"""Hidden states saved in files (.npy, .npz, .safetensors), measured layer by layer (`isojax measure`).

A file is read one layer at a time, so memory holds one layer (plus what the measures need), whatever the
file's size: a .npy is read at each layer's offset, an .npz member is decompressed as a stream, a .safetensors
tensor is read at its offsets. Before anything is read beyond the headers, every declared shape and dtype is
checked: each layer is `[n, d]`, takes at most the bound layer_mb in memory, the file holds at most the bound
layers arrays (`isojax.inputs`), its values are real numbers (complex, bool, text and objects are refused), and
the declared bytes are really there (a truncated file is refused, not padded).
"""

from __future__ import annotations

import hashlib
import math
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from isojax import inputs
from isojax.isotropy.api import MEASURES, measure
from isojax.runs import results
from isojax.runs.outputs import check_derived, check_output, staged

__all__ = ["SUFFIXES", "derived_outputs", "read_hidden", "iter_hidden", "measure_file"]

SUFFIXES = (".npy", ".npz", ".safetensors")
_MEASURE_DTYPES = ("F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8")


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class _Array(NamedTuple):
    """One array of the file, as its header declares it, and how to read one of its layers."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    read: Callable[[int], np.ndarray]  # layer index (0 for a 2-D array) -> that layer [n, d]
    missing: str = ""  # why the declared bytes are not all there ("" when they are, or cannot be known yet)


def _exact(f, count: int, dtype: np.dtype, label: str) -> np.ndarray:
    """count values of dtype read from f's position: all of them, or a ValueError (truncated file)."""
    out = np.empty(count, dtype)
    view = memoryview(out).cast("B")
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise ValueError(f"{label} is truncated: it declares {len(view):,} bytes of data, only {got:,} are there")
        got += n
    return out


def _widen(raw: np.ndarray, entry_dtype: str) -> np.ndarray:
    """bfloat16 words (read as uint16) -> float32, exactly; any other dtype unchanged, in native byte order."""
    if entry_dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(raw.dtype.newbyteorder("="), copy=False)


def _npy_arrays(path: Path, label: str) -> tuple[list[_Array], Callable[[], None]]:
    f = inputs.open_regular(path, label)
    try:
        head = inputs.npy_header(f, label)
        size = f.seek(0, 2)
    except BaseException:
        f.close()
        raise
    missing = "" if head.offset + head.nbytes <= size else (
        f"{label} is truncated: its header declares shape {head.shape} of {head.dtype} ({head.nbytes:,} bytes), "
        f"the file holds {size - head.offset:,}")

    def read(i: int) -> np.ndarray:
        shape = head.shape[1:] if len(head.shape) == 3 else head.shape
        count = math.prod(shape)
        if head.fortran and len(head.shape) == 3:  # layer i is strided through the whole file: map it
            mapped = np.memmap(f, head.dtype, "r", head.offset, head.shape, order="F")
            return np.array(mapped[i], order="C")
        f.seek(head.offset + i * count * head.dtype.itemsize)
        flat = _exact(f, count, head.dtype, label)
        return _widen(flat.reshape(shape, order="F" if head.fortran else "C"), "")

    return [_Array("hidden", head.shape, head.dtype, read, missing)], f.close


def _npz_arrays(path: Path, label: str) -> tuple[list[_Array], Callable[[], None]]:
    f = inputs.open_regular(path, label)
    try:
        z = zipfile.ZipFile(f)
        heads = inputs.npz_member_headers(z, label)
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as err:
        f.close()
        raise ValueError(f"{label} could not be read (truncated or corrupt?): {err}") from None
    except BaseException:
        f.close()
        raise
    streams: dict[str, tuple] = {}  # a member of [layers, n, d] is read as one stream, layer after layer

    def reader(name: str, head: inputs.NpyHeader) -> Callable[[int], np.ndarray]:
        def read(i: int) -> np.ndarray:
            shape = head.shape[1:] if len(head.shape) == 3 else head.shape
            count = math.prod(shape)
            where = f"{label}: array {name!r}"
            try:
                stream, at = streams.get(name, (None, -1))
                if stream is None or at != i:
                    if stream is not None:
                        stream.close()
                    stream = z.open(name + ".npy")
                    inputs.npy_header(stream, where)
                    for _ in range(i):  # skip earlier layers (only when read out of order)
                        _exact(stream, count, head.dtype, where)
                flat = _exact(stream, count, head.dtype, where)
                if len(head.shape) == 3:  # the next layer follows in the same stream
                    streams[name] = (stream, i + 1)
                else:
                    stream.close()
                    streams.pop(name, None)
            except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as err:
                raise ValueError(f"{where} could not be read (truncated or corrupt?): {err}") from None
            if head.fortran and len(head.shape) == 3:
                raise ValueError(f"{where}: a Fortran-ordered [layers, n, d] array in an .npz cannot be read one "
                                 "layer at a time; save it in C order (np.ascontiguousarray)")
            return _widen(flat.reshape(shape, order="F" if head.fortran else "C"), "")
        return read

    def close() -> None:
        for stream, _ in streams.values():
            stream.close()
        z.close()
        f.close()

    return [_Array(name, h.shape, h.dtype, reader(name, h)) for name, h in heads.items()], close


def _safetensors_arrays(path: Path, label: str) -> tuple[list[_Array], Callable[[], None]]:
    entries, _ = inputs.safetensors_header(path, label, _MEASURE_DTYPES)
    f = inputs.open_regular(path, label)

    def reader(e: inputs.SafetensorsEntry) -> Callable[[int], np.ndarray]:
        def read(i: int) -> np.ndarray:
            shape = e.shape[1:] if len(e.shape) == 3 else e.shape
            count = math.prod(shape)
            f.seek(e.start + i * count * e.numpy_dtype.itemsize)
            return _widen(_exact(f, count, e.numpy_dtype, label), e.dtype).reshape(shape)
        return read

    dtype = {name: np.dtype(np.float32) if e.dtype == "BF16" else e.numpy_dtype for name, e in entries.items()}
    arrays = [_Array(name, e.shape, dtype[name], reader(e)) for name, e in entries.items()]
    return sorted(arrays, key=lambda a: _natural(a.name)), f.close  # the format keeps no order: h.2 before h.10


def _plan(path: Path) -> tuple[list[tuple[str, tuple[int, int], Callable[[], np.ndarray]]], Callable[[], None]]:
    """[(layer name, [n, d], read it)] of a file from its headers alone, checked (see the module docstring),
    and the function that closes the file."""
    path = Path(path)
    label = f"file {str(path)!r}"
    if path.suffix not in SUFFIXES:
        raise ValueError(f"file {str(path)!r} must be .npy, .npz or .safetensors")
    opener = {".npy": _npy_arrays, ".npz": _npz_arrays, ".safetensors": _safetensors_arrays}[path.suffix]
    arrays, close = opener(path, label)
    try:
        plan = _layers(arrays, label)  # declared sizes first: a bomb is named as one, not as a short file
        for a in arrays:
            if a.missing:
                raise ValueError(a.missing)
        return plan, close
    except BaseException:
        close()
        raise


def _layers(arrays: list[_Array], label: str) -> list[tuple[str, tuple[int, int], Callable[[], np.ndarray]]]:
    if not arrays:
        raise ValueError(f"{label} holds no arrays")
    names = [a.name for a in arrays]
    if "hidden" in names or len(arrays) == 1:
        a = arrays[names.index("hidden")] if "hidden" in names else arrays[0]
        if len(a.shape) == 2:
            layers = [("0", a.shape, a, 0)]
        elif len(a.shape) == 3:
            inputs.check_bound(label, "the number of layers", a.shape[0], "layers")
            layers = [(str(i), a.shape[1:], a, i) for i in range(a.shape[0])]
        else:
            raise ValueError(f"{label}: array {a.name!r} must be [n, d] or [layers, n, d], got shape {a.shape}")
    else:
        bad = {a.name: a.shape for a in arrays if len(a.shape) != 2}
        if bad:
            raise ValueError(f"{label}: every per-layer array must be [n, d], got shapes {bad}")
        layers = [(a.name, a.shape, a, 0) for a in arrays]
    plan = []
    for name, shape, a, i in layers:
        # in memory as measured: half precision and integers widen (to float32, or float64 under x64)
        itemsize = max(a.dtype.itemsize, 4) if a.dtype.kind == "f" else 8
        inputs.check_bound(f"{label}: layer {name!r} {list(shape)} of {a.dtype}", "its size in memory",
                      math.prod(shape) * itemsize, "layer_mb")
        plan.append((name, tuple(shape), lambda a=a, i=i: a.read(i)))
    return plan


def iter_hidden(path: Path | str) -> Iterator[tuple[str, np.ndarray]]:
    """(layer name, hidden states [n, d]) for each layer of a file, read one at a time (see `read_hidden` for
    the layouts); every header is checked before the first layer is read."""
    plan, close = _plan(Path(path))
    try:
        for name, _, read in plan:
            yield name, read()
    finally:
        close()


def read_hidden(path: Path | str) -> dict[str, np.ndarray]:
    """Hidden states from a file, one [n, d] array per layer in file order: .npy [n, d] or [layers, n, d]; .npz
    with `hidden` ([n, d] or [layers, n, d]) or else one named [n, d] array per layer; .safetensors likewise (its
    names in natural order, as the format keeps none). Every layer in memory at once: `iter_hidden` reads one at
    a time. -> {layer name: [n, d]}"""
    return dict(iter_hidden(path))


def derived_outputs(out: Path | str) -> dict[str, Path]:
    """The files `measure_file` writes for the table `out` (.csv): {"table", "sidecar", "png", "pdf"}."""
    out = Path(out)
    return {"table": out, "sidecar": results.sidecar_path(out), "png": out.with_suffix(".png"),
            "pdf": out.with_suffix(".pdf")}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _ours(paths: dict[str, Path]) -> dict[str, bool]:
    """Which derived files isojax wrote: the sidecar if it is an isojax sidecar; a figure if that sidecar
    records it with its SHA-256 (a file changed since, or another program's, is not ours)."""
    side = paths["sidecar"]
    ours = {"sidecar": results.is_isojax_sidecar(side)}
    recorded = (results.read_sidecar(paths["table"]) or {}).get("figures", {}) if ours["sidecar"] else {}
    for kind in ("png", "pdf"):
        p = paths[kind]
        ours[kind] = p.is_file() and isinstance(recorded, dict) and recorded.get(p.name) == _sha256(p)
    return ours


def measure_file(path: Path | str, out: Path | str, measures: list[str] | None = None, max_points: int = 2000,
                 seed: int = 0, force: bool = False) -> tuple[list[dict], list[Path]]:
    """Every isotropy measure (or `measures`) of each layer's hidden states in a file (see `read_hidden`; read
    one layer at a time) -> (rows, files written): the table out (.csv), its JSON sidecar (out.json, which
    records the figures' SHA-256), and a by-layer figure beside it (out's stem .png and .pdf). Layer i is
    measured with key fold_in(key(seed), i), as `measure_layers` does.

    The derived files (sidecar, figures) replace existing ones only if isojax wrote them, or with `force`.
    Everything is checked before any compute (headers, sizes, outputs); the four files are written to
    temporary files and renamed together at the end, so a failure (a full disk) or an interrupt leaves none of
    them changed and no temporary file behind."""
    out = check_output(out, ".csv")
    paths = derived_outputs(out)
    ours = _ours(paths)
    for kind in ("sidecar", "png", "pdf"):
        check_derived(paths[kind], ours[kind], force, what=str(out))
    unknown = [m for m in (measures or []) if m not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measures {unknown}; valid names are {list(MEASURES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    plan, close = _plan(Path(path))
    key = jax.random.PRNGKey(int(seed))
    rows = []
    try:
        for i, (name, _, read) in enumerate(plan):
            layer = f"hidden[{name!r}]"
            x = read()
            if x.size == 0:
                raise ValueError(f"{layer} is empty (shape {x.shape})")
            rows.append({"layer": name, **measure(x, jax.random.fold_in(key, i), measures, max_points,
                                                  name=layer)})
            del x
    finally:
        close()
    config = {"name": "measure_file", "file": str(path), "measures": measures, "max_points": max_points, "seed": seed}
    return rows, _write(rows, paths, config)


def _write(rows: list[dict], paths: dict[str, Path], config: dict) -> list[Path]:
    """The table, its sidecar and the figure, all staged and renamed together."""
    from isojax import plots

    order = ("table", "sidecar", "png", "pdf")
    with staged(*(paths[k] for k in order)) as temps:
        tmp = dict(zip(order, temps, strict=True))
        fig = _plot_layers(rows)
        try:
            with plots.style():
                for kind in ("png", "pdf"):
                    fig.savefig(tmp[kind], format=kind)
        finally:
            import matplotlib.pyplot as plt
            plt.close(fig)
        figures = {paths[k].name: _sha256(tmp[k]) for k in ("png", "pdf")}
        table, side = results.table_text(rows, config, figures=figures)
        tmp["table"].write_text(table)
        tmp["sidecar"].write_text(side)
    return [paths[k] for k in order]


def _plot_layers(rows: list[dict]):
    """One small panel per measure, its value against the layer."""
    from isojax import plots

    names = [k for k in rows[0] if k not in ("layer", "cell") and isinstance(rows[0][k], (int, float))]
    cols = min(3, len(names))
    fig, axes = plots.figure((len(names) + cols - 1) // cols, cols, width=plots.DOUBLE)
    layers = np.arange(len(rows))
    with plots.style():
        for ax, name in zip(axes.ravel(), names):
            ax.plot(layers, [r[name] for r in rows], marker="o")
            ax.set_xlabel("layer")
            ax.set_ylabel(name)
            ax.set_xticks(layers, [str(r["layer"]) for r in rows])
        for ax in axes.ravel()[len(names):]:
            ax.set_visible(False)
    return fig

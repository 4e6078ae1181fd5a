"""Reading files isojax did not write, within stated bounds: nothing is allocated before the size a file
declares has been checked, and only regular files are opened.

- Bounds (`BOUNDS`, each with its default and what it limits) are checked before any array is built: the size
  of a text or JSON input, of your own series, of one layer of hidden states, and the parameter and layer count
  of a model that a checkpoint or config.json describes. `bounds(**values)` raises (or lowers) them for a block;
  the `isojax` command's `--limit NAME=VALUE` does the same.
- `open_regular` opens without blocking and refuses anything that is not a regular file (a FIFO, /dev/zero, a
  socket, a folder) at once, so a hostile path can neither hang a command nor feed it without end.
- `npy_header` and `safetensors_header` read only a file's header (bounded) and check every declared shape,
  dtype and offset against the bytes that are really there.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import math
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # the transformer imports JAX: only for the annotation
    from isojax import transformer as tf

__all__ = ["BOUNDS", "NpyHeader", "SafetensorsEntry", "bound", "bounds", "check_model_size", "parse_bound",
           "open_regular", "read_text", "npy_header", "npz_member_headers", "safetensors_header", "refuse_dtype",
           "check_bound"]

MB = 2**20

# name: (default, what it limits). Sizes in MiB of the file or of the array in memory.
BOUNDS: dict[str, tuple[float, str]] = {
    "text_mb": (64, "MiB of a text or JSON input (embed --text, sweep --config, config.json, tokenizer.json)"),
    "data_mb": (1024, "MiB of your own series (a csv:/npy: file, and its values in memory)"),
    "layer_mb": (128, "MiB of one layer of hidden states in memory (measure reads a file one layer at a time; "
                      "with every measure its peak is about 7 layers)"),
    "params": (2e9, "parameters of a model that a checkpoint or config.json describes"),
    "layers": (1024, "layers of such a model, and arrays (layers) in a hidden-states file"),
}
_OVERRIDES: contextvars.ContextVar[dict | None] = contextvars.ContextVar("isojax_bounds", default=None)
_HEADER_LIMIT = 100 * MB  # safetensors' own limit on its JSON header


def bound(name: str) -> float:
    """The bound `name` in force (a `bounds` block's value, else the default in `BOUNDS`)."""
    if name not in BOUNDS:
        raise ValueError(f"unknown bound {name!r}; the bounds are {sorted(BOUNDS)}")
    return (_OVERRIDES.get() or {}).get(name, BOUNDS[name][0])


@contextlib.contextmanager
def bounds(**values: float) -> Iterator[None]:
    """Within the block, the named bounds take these values (positive numbers), e.g. bounds(params=5e9)."""
    for name, value in values.items():
        bound(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"bound {name} must be a positive number, got {value!r}")
    token = _OVERRIDES.set({**(_OVERRIDES.get() or {}), **values})
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


def parse_bound(text: str) -> tuple[str, float]:
    """"NAME=VALUE" (a --limit flag) -> (name, value), refused unless NAME is a bound and VALUE a positive
    number."""
    name, sep, value = str(text).partition("=")
    if not sep or name not in BOUNDS:
        raise ValueError(f"--limit takes NAME=VALUE with NAME one of {sorted(BOUNDS)}, got {text!r}")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"--limit {name} must be a positive number, got {value!r}")
    return name, number


def _refused(label: str, what: str, size: float, name: str) -> ValueError:
    limit = bound(name)
    shown = f"{size / MB:,.1f} MiB" if name.endswith("_mb") else f"{size:,.0f}"
    cap = f"{limit:,g} MiB" if name.endswith("_mb") else f"{limit:,.0f}"
    return ValueError(f"{label}: {what} is {shown}, more than the limit {name}={cap} (raise it with "
                      f"--limit {name}=N, or isojax.inputs.bounds({name}=N))")


def check_bound(label: str, what: str, size: float, name: str) -> None:
    """Refuse (ValueError naming label, what, its size and how to raise the bound) a size above the bound
    `name` (bytes for the *_mb bounds, a count otherwise)."""
    limit = bound(name) * (MB if name.endswith("_mb") else 1)
    if size > limit:
        raise _refused(label, what, size, name)



# ----------------------------------------------------------------------------------------- opening

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def open_regular(path: Path | str, label: str) -> IO[bytes]:
    """The file at path opened for binary reading, if it is a regular file: a FIFO, a device (/dev/zero), a
    socket or a folder is refused at once (ValueError "`label` is not a file (a FIFO)"), never waited on.
    label names the input in messages, e.g. "--text 'x.txt'"."""
    try:  # O_NONBLOCK: opening a FIFO without a writer would otherwise wait for one
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ValueError(f"{label}: no such file") from None
    except OSError as err:
        raise ValueError(f"{label} could not be opened: {err.strerror or err}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
        raise ValueError(f"{label} is not a file ({kind}); isojax reads regular files only")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_text(path: Path | str, label: str, name: str = "text_mb") -> str:
    """A regular file's text (UTF-8), refused before reading if it is larger than the bound `name`."""
    with open_regular(path, label) as f:
        size = os.fstat(f.fileno()).st_size
        check_bound(label, "the file", size, name)
        data = f.read(int(bound(name) * MB) + 1)  # a file growing while read is still bounded
    check_bound(label, "the file", len(data), name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{label} is not UTF-8 text: {err}") from None


def refuse_dtype(label: str, dtype: np.dtype, allowed: str = "numeric") -> None:
    """Refuse a dtype that is not a real number: complex (its imaginary part would be dropped), bool, text,
    objects, structured or time types. allowed "numeric": ints and floats; "float": floats only."""
    dtype = np.dtype(dtype)
    kinds = "f" if allowed == "float" else "fiu"
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        what = {"c": "complex values", "b": "bool values", "O": "Python objects", "U": "text", "S": "bytes",
                "V": "structured values", "M": "datetimes", "m": "timedeltas"}.get(dtype.kind, f"{dtype} values")
        if dtype.fields is not None or dtype.subdtype is not None:
            what = "structured values"
        need = "floats" if allowed == "float" else "integers or floats"
        raise ValueError(f"{label} holds {what} ({dtype}); only real numbers ({need}) are accepted")


# ----------------------------------------------------------------------------------------- .npy / .npz


class NpyHeader(NamedTuple):
    """What a .npy header declares: shape, dtype, Fortran order, and where the data starts (bytes)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def npy_header(f: IO[bytes], label: str) -> NpyHeader:
    """The header of the .npy stream f (read from its current position; nothing else is read), checked: a
    known version, a header of at most 10,000 bytes, a real-number dtype (complex, objects, text refused),
    non-negative dimensions. Raises ValueError naming `label`."""
    start = f.tell() if f.seekable() else 0
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10_000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10_000)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise ValueError(f"{label} is not a readable .npy array: {err}") from None
    refuse_dtype(label, dtype)
    if any((not isinstance(n, int)) or n < 0 for n in shape):
        raise ValueError(f"{label} declares an invalid shape {shape}")
    offset = (f.tell() - start) if f.seekable() else 0
    return NpyHeader(tuple(shape), np.dtype(dtype), bool(fortran), offset)


def npz_member_headers(z: zipfile.ZipFile, label: str) -> dict[str, NpyHeader]:
    """{array name: header} of every member of an open zipfile.ZipFile that is an .npz, reading headers
    only (nothing is decompressed beyond them). A member that is not an .npy array, or more members than the
    bound `layers`, is refused."""
    infos = z.infolist()
    check_bound(label, "the number of arrays", len(infos), "layers")
    out = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise ValueError(f"{label}: member {info.filename!r} is not an .npy array (raw bytes?); an .npz holds "
                             "arrays only")
        with z.open(info) as member:
            out[info.filename[:-4]] = npy_header(member, f"{label}: array {info.filename[:-4]!r}")
    return out


# ----------------------------------------------------------------------------------------- .safetensors

# safetensors dtype codes -> numpy dtypes (BF16 is read as raw 16-bit words and widened by the caller)
_SAFETENSORS = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64,
                "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32,
                "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}


class SafetensorsEntry(NamedTuple):
    """One tensor a safetensors header declares: dtype code ("F32", "BF16", ...), shape, and its bytes'
    absolute position in the file."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numpy_dtype(self) -> np.dtype:
        """The dtype its bytes are read as (BF16: uint16 words)."""
        return np.dtype(_SAFETENSORS[self.dtype]).newbyteorder("<")


def safetensors_header(path: Path | str, label: str, dtypes: tuple[str, ...]) -> tuple[dict[str, SafetensorsEntry],
                                                                                        dict[str, str]]:
    """({name: entry}, metadata) of a safetensors file, from its header alone, after checking that the header
    is bounded and valid JSON, every dtype one of `dtypes`, every shape's byte count equal to its offsets'
    span, every span inside the file, and no two spans overlapping. Raises ValueError naming `label`."""
    with open_regular(path, label) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{label} is not a readable safetensors file (truncated or corrupt?): {size} bytes")
        n = int.from_bytes(head, "little")
        if n > min(_HEADER_LIMIT, size - 8):
            raise ValueError(f"{label} is not a readable safetensors file (truncated or corrupt?): its header "
                             f"declares {n:,} bytes, the file has {size - 8:,} after the length")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{label} is not a readable safetensors file (truncated or corrupt?): header: {err}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{label} is not a readable safetensors file: its header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError(f"{label} is not a readable safetensors file: its metadata must map names to strings")
    data_start, data_size = 8 + n, size - 8 - n
    entries, spans = {}, []
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{label} is not a readable safetensors file: tensor {name!r} has a malformed header "
                             f"entry {e!r}")
        dtype, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in dtypes:
            raise ValueError(f"{label}: tensor {name!r} has dtype {dtype}; this file may hold only "
                             f"{', '.join(dtypes)}")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                   for d in shape)):
            raise ValueError(f"{label} is not a readable safetensors file: tensor {name!r} has an invalid shape "
                             f"{shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise ValueError(f"{label} is not a readable safetensors file (truncated or corrupt?): tensor {name!r} "
                             f"has data offsets {offsets!r} outside the file's {data_size:,} data bytes")
        itemsize = np.dtype(_SAFETENSORS[dtype]).itemsize
        if math.prod(shape) * itemsize != offsets[1] - offsets[0]:
            raise ValueError(f"{label} is not a readable safetensors file: tensor {name!r} of shape {shape} and "
                             f"dtype {dtype} needs {math.prod(shape) * itemsize:,} bytes, its offsets span "
                             f"{offsets[1] - offsets[0]:,}")
        entries[name] = SafetensorsEntry(dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:]):
        if begin < end:
            raise ValueError(f"{label} is not a readable safetensors file: tensors {a!r} and {b!r} overlap")
    return entries, meta


# ----------------------------------------------------------------------------------------- models


def check_model_size(config: tf.Config, label: str) -> int:
    """The parameter count of the model `config` (an `isojax.transformer.Config`) describes, from shapes
    alone (`jax.eval_shape`: nothing is allocated), after refusing more layers than the bound `layers`;
    refused (ValueError naming label) above the bound `params`."""
    import functools

    import jax

    from isojax import transformer as tf

    check_bound(label, "the number of layers", config.layers, "layers")
    for field in ("vocab", "d_model", "heads", "mlp", "max_len", "type_vocab", "d_head", "rel_buckets"):
        value = getattr(config, field)
        if value > 2**40:  # past any bound whatever the other sizes; keeps shapes inside int64 arithmetic
            raise ValueError(f"{label}: config.{field} = {value:,} describes a model larger than the limit "
                             f"params={bound('params'):,.0f}")
    def count_for(layers: int) -> int:
        shapes = jax.eval_shape(functools.partial(tf.init, config=dataclasses.replace(config, layers=layers)),
                                jax.ShapeDtypeStruct((2,), np.uint32))
        return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))

    # every block has the same shapes: two small traces give the count for any depth (tracing all of a deep
    # model's blocks costs seconds per hundred)
    one, two = count_for(1), count_for(2)
    count = one + (config.layers - 1) * (two - one)
    if count > bound("params"):
        raise ValueError(f"{label} describes a model of {count:,} parameters (vocab {config.vocab:,}, d_model "
                         f"{config.d_model:,}, layers {config.layers:,}), more than the limit params="
                         f"{bound('params'):,.0f} (raise it with --limit params=N, or isojax.inputs.bounds(params=N))")
    return count

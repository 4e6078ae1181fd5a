"""Checkpoints: a model's parameters as a flat safetensors file (names from the pytree paths) whose metadata
describes the model (architecture, tokenizer, data, steps, seed, isojax version) and carries a SHA-256 checksum
of everything the file says, its metadata as well as its tensors, verified on load.

Loading trusts nothing the file declares before checking it: the header (bounded, every offset inside the file,
tensors float32 or float64 only), the checksum (streamed from the file, nothing allocated), the size of the
model its config describes (`isojax.inputs.check_model_size`: parameters and layers within the bounds, from
shapes alone), and that every tensor has the name and shape that config gives it; only then are the tensors
read.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from isojax import inputs
from isojax import transformer as tf
from isojax.runs.outputs import staged

__all__ = ["FORMAT", "DESCRIBED", "DTYPES", "checksum", "save", "load"]

FORMAT = "isojax-checkpoint/2"  # /2: the checksum covers the metadata too (/1 covered the tensors only)
# what every checkpoint's metadata describes, beside the architecture config (so a file says what it is)
DESCRIBED = ("tokenizer", "data", "steps", "seed")
DTYPES = ("F32", "F64")  # what the format holds: parameters in the float dtype in use
_NUMPY = {"F32": "<f4", "F64": "<f8"}


def _flatten(params) -> dict[str, np.ndarray]:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def _metadata_bytes(metadata: dict[str, str] | None) -> bytes:
    return json.dumps(sorted((k, v) for k, v in (metadata or {}).items() if k != "sha256")).encode()


def checksum(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> str:
    """SHA-256 over every metadata entry but `sha256` itself (names and text, in name order) and every tensor's
    name, dtype, shape and bytes, in name order (a hex string)."""
    h = hashlib.sha256(_metadata_bytes(metadata))
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(json.dumps([name, t.dtype.str, list(t.shape)]).encode())
        h.update(t.tobytes())
    return h.hexdigest()


def _file_checksum(path: Path, entries: dict[str, inputs.SafetensorsEntry], metadata: dict[str, str],
                   label: str) -> str:
    """`checksum` of a file's tensors and metadata, streamed from the file (O(1 MiB) memory)."""
    h = hashlib.sha256(_metadata_bytes(metadata))
    with inputs.open_regular(path, label) as f:
        for name in sorted(entries):
            e = entries[name]
            h.update(json.dumps([name, _NUMPY[e.dtype], list(e.shape)]).encode())
            f.seek(e.start)
            left = e.end - e.start
            while left:
                block = f.read(min(left, 1 << 20))
                if not block:
                    raise ValueError(f"{label} is not a readable safetensors file (truncated or corrupt?)")
                h.update(block)
                left -= len(block)
    return h.hexdigest()


def _meta_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def save(path: Path | str, params: tf.Params, config: tf.Config, meta: dict | None = None) -> Path:
    """Write params as safetensors (tensor names = pytree paths). The metadata holds the architecture config,
    the format, the isojax version, a SHA-256 checksum of the metadata and the tensors (`load` verifies it) and
    `meta`: what the model was trained on (tokenizer, data, steps, seed; any JSON-serialisable values).
    Written to a temporary file with a unique name beside path and renamed, so the path never holds half a
    checkpoint and no other file is touched; the file gets the umask's permissions."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    import isojax
    path = Path(path)
    meta = dict(meta or {})
    reserved = {"format", "config", "isojax_version", "sha256"} & set(meta)
    if reserved:
        raise ValueError(f"meta must not set {sorted(reserved)}: save writes them")
    tensors = _flatten(params)
    metadata = {k: _meta_text(v) for k, v in meta.items()}
    metadata.update(format=FORMAT, config=json.dumps(dataclasses.asdict(config)), isojax_version=isojax.__version__)
    metadata["sha256"] = checksum(tensors, metadata)
    with staged(path) as (tmp,):
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as err:  # safetensors reports a full disk as its own error: it is an OSError
            raise OSError(f"could not write checkpoint {str(path)!r}: {err}") from None
    return path


def _header(path: Path, label: str) -> tuple[dict[str, inputs.SafetensorsEntry], dict[str, str]]:
    if not path.exists():
        raise ValueError(f"{label}: no such file")
    entries, raw = inputs.safetensors_header(path, label, DTYPES)
    missing = [k for k in ("format", "config", "sha256") if k not in raw]
    if missing:
        raise ValueError(f"{label} lacks the metadata {missing}: not an isojax checkpoint, or one written before "
                         "checkpoints described themselves (retrain it)")
    if raw["format"] != FORMAT:
        raise ValueError(f"{label} has format {raw['format']!r}, not {FORMAT!r}: written by an older isojax whose "
                         "checksum did not cover the metadata, or by another program (retrain it)")
    return entries, raw


def _decode(raw: dict[str, str]) -> dict:
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    return meta


def load(path: Path | str) -> tuple[tf.Params, tf.Config, dict]:
    """Read and verify a checkpoint written by `save` -> (params, config, metadata). The arrays are bit for
    bit those saved. metadata: the decoded entries (config and every `meta` value; JSON is decoded). A
    missing, truncated or corrupt file, a FIFO or device, missing metadata, a checksum mismatch (one changed
    byte of a tensor or of the metadata), a tensor dtype other than float32/float64, a model larger than the
    bounds params and layers (`isojax.inputs`), or tensors that do not fit the config are a ValueError naming
    the file; nothing is allocated before the sizes are checked."""
    path = Path(path)
    label = f"checkpoint {str(path)!r}"
    entries, raw = _header(path, label)
    if _file_checksum(path, entries, raw, label) != raw["sha256"]:
        raise ValueError(f"{label} fails its SHA-256 checksum: the file is corrupt or was altered (its tensors "
                         "or its metadata: architecture, tokenizer, data)")
    meta = _decode(raw)
    try:
        config = tf.Config(**meta["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{label} has an invalid config: {err}") from None
    meta["config"] = config
    inputs.check_model_size(config, label)
    template = jax.eval_shape(functools.partial(tf.init, config=config), jax.ShapeDtypeStruct((2,), np.uint32))
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [jax.tree_util.keystr(p) for p, _ in flat]
    if set(names) != set(entries) or any(entries[n].shape != t.shape for n, (_, t) in zip(names, flat)):
        raise ValueError(f"{label} holds tensors that do not fit its config {config}")
    with inputs.open_regular(path, label) as f:
        leaves = [jnp.asarray(_read_tensor(f, entries[n], label)) for n in names]
    return jax.tree_util.tree_unflatten(treedef, leaves), config, meta


def _read_tensor(f, entry: inputs.SafetensorsEntry, label: str) -> np.ndarray:
    """One tensor's bytes at its offsets -> [shape] in native byte order."""
    f.seek(entry.start)
    data = f.read(entry.end - entry.start)
    if len(data) != entry.end - entry.start:
        raise ValueError(f"{label} is not a readable safetensors file (truncated or corrupt?)")
    dtype = np.dtype(_NUMPY[entry.dtype])
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("=")).reshape(entry.shape)

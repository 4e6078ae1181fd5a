"""Checkpoints: a model's parameters as a flat safetensors file (names from the pytree paths) whose metadata
describes the model (architecture, tokenizer, data, steps, seed, isojax version) and carries a SHA-256 checksum
of the tensors, verified on load."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from isojax import transformer as tf

__all__ = ["FORMAT", "DESCRIBED", "checksum", "save", "load"]

FORMAT = "isojax-checkpoint/1"
# what every checkpoint's metadata describes, beside the architecture config (so a file says what it is)
DESCRIBED = ("tokenizer", "data", "steps", "seed")


def _flatten(params) -> dict[str, np.ndarray]:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def checksum(tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order (a hex string)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(json.dumps([name, t.dtype.str, list(t.shape)]).encode())
        h.update(t.tobytes())
    return h.hexdigest()


def _meta_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def save(path: Path | str, params: tf.Params, config: tf.Config, meta: dict | None = None) -> Path:
    """Write params as safetensors (tensor names = pytree paths). The metadata holds the architecture config,
    the format, the isojax version, a SHA-256 checksum of the tensors (`load` verifies it) and `meta`: what
    the model was trained on (tokenizer, data, steps, seed; any JSON-serialisable values). Written to a
    temporary file and renamed, so the path never holds half a checkpoint; the temporary file never stays."""
    from safetensors.numpy import save_file

    import isojax
    path = Path(path)
    meta = dict(meta or {})
    reserved = {"format", "config", "isojax_version", "sha256"} & set(meta)
    if reserved:
        raise ValueError(f"meta must not set {sorted(reserved)}: save writes them")
    tensors = _flatten(params)
    metadata = {k: _meta_text(v) for k, v in meta.items()}
    metadata.update(format=FORMAT, config=json.dumps(dataclasses.asdict(config)), isojax_version=isojax.__version__,
                    sha256=checksum(tensors))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r}: no such file" if not path.exists() else
                         f"checkpoint {str(path)!r} is not a file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error type (and OSError) for a damaged file
        raise ValueError(f"checkpoint {str(path)!r} is not a readable safetensors file "
                         f"(truncated or corrupt?): {err}") from None


def load(path: Path | str) -> tuple[tf.Params, tf.Config, dict]:
    """Read and verify a checkpoint written by `save` -> (params, config, metadata). The arrays are bit for
    bit those saved. metadata: the decoded entries (config and every `meta` value; JSON is decoded). A
    missing, truncated or corrupt file, missing metadata, a checksum mismatch or tensors that do not fit the
    config are a ValueError naming the file."""
    path = Path(path)
    tensors, raw = _read(path)
    missing = [k for k in ("format", "config", "sha256") if k not in raw]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} lacks the metadata {missing}: not an isojax checkpoint, or "
                         "one written before checkpoints described themselves (retrain it)")
    if checksum(tensors) != raw["sha256"]:
        raise ValueError(f"checkpoint {str(path)!r} fails its SHA-256 checksum: the file is corrupt or was altered")
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    try:
        config = tf.Config(**meta["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {str(path)!r} has an invalid config: {err}") from None
    meta["config"] = config
    template = tf.init(jax.random.PRNGKey(0), config)
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [jax.tree_util.keystr(p) for p, _ in flat]
    if set(names) != set(tensors) or any(tensors[n].shape != t.shape for n, (_, t) in zip(names, flat)):
        raise ValueError(f"checkpoint {str(path)!r} holds tensors that do not fit its config {config}")
    leaves = [jnp.asarray(tensors[n]) for n in names]
    return jax.tree_util.tree_unflatten(treedef, leaves), config, meta



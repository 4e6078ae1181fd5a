"""Reading a Hugging Face checkpoint folder: config.json, model.safetensors, tokenizer.json.

Every missing piece (the folder, a file, a tensor, a config key) is a ValueError that names it, raised
before any array is built; so is a damaged file (config.json or tokenizer.json not JSON, a safetensors header
with offsets outside the file), a FIFO or device, and a config.json whose model exceeds the bounds params or
layers (`isojax.inputs`).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from isojax import inputs
from isojax import transformer as tf

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"
DTYPES = ("F64", "F32", "F16", "BF16", "I64", "I32")  # weights, and integer buffers (BERT's position_ids)


def require(path: Path, name: str) -> Path:
    """The file `name` inside the folder `path`, or a ValueError naming the missing path."""
    if not path.is_dir():
        raise ValueError(f"model folder {str(path)!r} does not exist (it must hold {CONFIG}, {WEIGHTS})")
    file = path / name
    if not file.exists():  # a FIFO or a device is named as such when it is opened (`isojax.inputs.open_regular`)
        raise ValueError(f"missing file {str(file)!r}: a checkpoint folder needs {CONFIG} and {WEIGHTS} "
                         f"(and {TOKENIZER} for text)")
    return file


def read_config(path: Path) -> dict:
    """config.json as a dict (a regular file within the bound text_mb, holding a JSON object)."""
    file = require(path, CONFIG)
    try:
        cfg = json.loads(inputs.read_text(file, repr(str(file))))
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(file)!r} is not valid JSON: {err}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{str(file)!r} must hold a JSON object, got {type(cfg).__name__}")
    return cfg


def key(cfg: dict, name: str, default=None, where: str = CONFIG):
    """cfg[name], its default, or a ValueError naming the missing key."""
    if name in cfg and cfg[name] is not None:
        return cfg[name]
    if default is None:
        raise ValueError(f"{where} has no {name!r}")
    return default


def check_config(config: tf.Config, path: Path) -> tf.Config:
    """The model config.json describes, once its size is within the bounds params and layers
    (`isojax.inputs.check_model_size`, from shapes alone): checked before any tensor is read or built."""
    inputs.check_model_size(config, repr(str(path / CONFIG)))
    return config


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of model.safetensors as a numpy array; half precision is widened to float32. The header is
    checked first (`isojax.inputs.safetensors_header`: bounded, offsets inside the file, floating-point weights
    and integer buffers only); a damaged file is a ValueError naming it."""
    from safetensors import safe_open
    file = require(path, WEIGHTS)
    inputs.safetensors_header(file, repr(str(file)), DTYPES)
    out = {}
    try:
        with safe_open(str(file), framework="flax") as f:  # flax: reads bfloat16 too, which numpy cannot
            for name in f.keys():
                t = f.get_tensor(name)
                if t.dtype in (jnp.float16, jnp.bfloat16):
                    t = t.astype(jnp.float32)
                out[name] = np.asarray(t)
    except Exception as err:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"{str(file)!r} is not a readable safetensors file (truncated or corrupt?): {err}") from None
    return out


class Tensors:
    """Lookup of checkpoint tensors by name, with the head-model prefix (`bert.`, `transformer.`) removed;
    a missing tensor is a ValueError naming it and the file."""

    def __init__(self, tensors: dict[str, np.ndarray], path: Path, prefix: str = ""):
        strip = prefix and any(k.startswith(prefix) for k in tensors)
        self._t = {(k[len(prefix):] if strip and k.startswith(prefix) else k): v for k, v in tensors.items()}
        self._file = path / WEIGHTS

    def __contains__(self, name: str) -> bool:
        return name in self._t

    def __call__(self, name: str, *alternatives: str) -> jnp.ndarray:
        for n in (name, *alternatives):
            if n in self._t:
                return jnp.asarray(self._t[n])
        raise ValueError(f"{str(self._file)!r} has no tensor {name!r}")

    def optional(self, name: str):
        return jnp.asarray(self._t[name]) if name in self._t else None


def read_tokenizer(path: Path):
    """The `tokenizers.Tokenizer` of tokenizer.json, or None when the folder has none. A file that is not a
    tokenizer (not JSON, another format, larger than the bound text_mb, a FIFO) is a ValueError naming it."""
    from tokenizers import Tokenizer
    file = path / TOKENIZER
    if not file.exists():
        return None
    text = inputs.read_text(file, repr(str(file)))
    try:
        return Tokenizer.from_str(text)
    except Exception as err:  # tokenizers raises its own exception type for a malformed file
        raise ValueError(f"{str(file)!r} is not a valid tokenizer.json: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def activation(name: str, where: str) -> str:
    """A Hugging Face activation name -> transformer.Config.activation."""
    known = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
    if name not in known:
        raise ValueError(f"{where}: activation {name!r} is not supported (supported: {sorted(known)})")
    return known[name]


def layer_norm(t: Tensors, prefix: str) -> tf.LayerNorm:
    """LayerNorm `prefix`.weight and `prefix`.bias."""
    return tf.LayerNorm(t(f"{prefix}.weight"), t(f"{prefix}.bias"))


def split_heads_in(w: jnp.ndarray, heads: int) -> jnp.ndarray:
    """A projection [d, H·dk] (input-major) -> [H, d, dk]."""
    d = w.shape[0]
    return jnp.transpose(w.reshape(d, heads, -1), (1, 0, 2))

"""Numeric language models of the study: named architectures, cached training, and the evaluation of a trained
model (forecast NMSE and the isotropy of every layer's hidden states)."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from isojax import _validate as V
from isojax import isotropy, keys, train
from isojax import transformer as tf
from isojax.data import corpus

__all__ = ["ARCHS", "layer_rows", "train_and_measure"]

# the architectures the study's trained-model experiments compare
ARCHS: dict[str, dict] = {
    "decoder": dict(d_model=64, heads=4, layers=2, causal=True),
    "encoder": dict(d_model=64, heads=4, layers=2, causal=False),
    "decoder-deep-wide": dict(d_model=96, heads=4, layers=4, causal=True),
}


def layer_rows(hidden: jax.Array | np.ndarray, key: jax.Array) -> list[dict]:
    """Isotropy of each layer's hidden states. hidden: [L + 1, n, d] -> one dict per layer
    (`isotropy.layer_summary`: clustered cosine, its best k and silhouette, IsoScore and d(0.8)/d); layer l uses
    key fold_in(key, l)."""
    return [{"layer": layer, **isotropy.layer_summary(jnp.asarray(hidden[layer]), jax.random.fold_in(key, layer))}
            for layer in range(hidden.shape[0])]


def _losses_path(path: Path) -> Path:
    return path.with_suffix(".losses.npy")


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _load_cached(path: Path, run: str):
    """(params, losses) of the cache entry at path for run, or None when there is none or it cannot be used:
    a corrupt or foreign checkpoint (checksum, metadata of another run) or a missing or altered losses file is
    named in a warning and retrained, never trusted."""
    if not path.exists():
        return None
    try:
        params, _, meta = train.load(path)
        if meta.get("run") != run:
            raise ValueError(f"it was written for run {meta.get('run')!r}, not {run!r}")
        losses_file = _losses_path(path)
        if not losses_file.exists():
            raise ValueError(f"its losses file {str(losses_file)!r} is missing")
        try:
            losses = np.load(losses_file, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"its losses file {str(losses_file)!r} cannot be read: {err}") from None
        if _sha256(losses) != meta.get("losses_sha256"):
            raise ValueError(f"its losses file {str(losses_file)!r} does not match the checkpoint's checksum")
    except ValueError as err:
        warnings.warn(f"model cache entry {str(path)!r} is unusable ({err}); retraining it", stacklevel=3)
        return None
    return params, losses


def train_and_measure(key: jax.Array, source: str, tokenizer: str, arch: str, steps: int, seq_len: int = 64,
                      penalty: Callable | None = None, penalty_weight: float = 0.0, samples: int = 10,
                      points: int = 1024, cache: Path | str | None = None
                      ) -> tuple[dict, list[dict], np.ndarray]:
    """Train an `arch` model on `source` tokenized by `tokenizer` (or load the checkpoint cached under `cache`
    by an earlier identical run, verified first: see `_load_cached`); return (forecast NMSE, final loss and head
    partition isotropy; per-layer measures; hidden states [n, L + 1, T, d] of the first points // seq_len
    training windows)."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    k_data, k_train, k_eval, k_measure = jax.random.split(key, 4)
    data = corpus.build(source, tokenizer, k_data, seq_len=seq_len, count=16)
    spec = ARCHS[arch]
    config = tf.Config(vocab=data.vocab, mlp=2 * spec["d_model"], max_len=seq_len, **spec)
    layers = tuple(range(1, config.layers + 1)) if penalty is not None else ()
    tcfg = train.TrainConfig(steps=steps, penalty_weight=penalty_weight, penalty_layers=layers)
    raw_key = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    ident = {"key": np.asarray(raw_key).tolist(),
             "source": source, "tokenizer": tokenizer, "config": str(config), "train": str(tcfg),
             "penalty": getattr(penalty, "__name__", None), "dtype": str(V.float_dtype()),
             # the training tokens themselves, so a change in how a corpus is built never reuses a stale model
             "tokens": hashlib.sha256(np.ascontiguousarray(data.sequences).tobytes()).hexdigest()[:16]}
    run = keys.digest(ident)
    path = None if cache is None else Path(cache) / f"{run}.safetensors"
    cached = _load_cached(path, run) if path is not None else None
    if cached is not None:
        params, losses = cached
    else:
        params, losses, _ = train.train(k_train, config, jnp.asarray(data.sequences), tcfg, penalty=penalty,
                                        progress=False)
        if path is not None:
            meta = {"run": run, "tokenizer": corpus.tokenizer_spec(data.tokenizer), "data": source, "steps": steps,
                    "seed": ident["key"], "arch": arch, "penalty": ident["penalty"],
                    "penalty_weight": float(penalty_weight), "losses_sha256": _sha256(losses)}
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(_losses_path(path), losses)  # first, so a model file implies its losses
            train.save(path, params, config, meta)
    nmse = train.evaluate_forecasts(k_eval, params, config, data, samples=samples)
    seqs = jnp.asarray(data.sequences[: max(points // seq_len, 1)])
    hidden = np.asarray(jax.vmap(lambda s: tf.forward(params, s, config)[0])(seqs))  # [n, L+1, T, d]
    per_layer = layer_rows(np.moveaxis(hidden, 1, 0).reshape(hidden.shape[1], -1, hidden.shape[-1]), k_measure)
    head_iso = float(isotropy.partition_isotropy(params.lm_head[: data.tokenizer.vocab]))
    return ({"nmse": nmse, "final_loss": float(np.mean(losses[-20:])), "head_partition_isotropy": head_iso},
            per_layer, hidden)

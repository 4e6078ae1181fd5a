"""Numeric language models of the study: named architectures, cached training, and the evaluation of a trained
model (forecast NMSE and the isotropy of every layer's hidden states)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

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


def layer_rows(hidden, key: jax.Array) -> list[dict]:
    """Isotropy of each layer's hidden states. hidden: [L + 1, n, d] -> one dict per layer with clustered
    cosine, its best k and silhouette, IsoScore and d(0.8)/d; layer l uses key fold_in(key, l)."""
    rows = []
    for layer in range(hidden.shape[0]):
        x = jnp.asarray(hidden[layer])
        cc = isotropy.clustered_cosine(x, jax.random.fold_in(key, layer), k_max=min(16, x.shape[0] - 1))
        lam = isotropy.covariance_spectrum(x)
        rows.append({"layer": layer, "clustered_cosine": float(cc.score), "best_k": int(cc.best_k),
                     "best_silhouette": float(jnp.max(cc.silhouettes)),
                     "isoscore": float(isotropy.isoscore_from_spectrum(lam)),
                     "d80_fraction": float(isotropy.d_80_from_spectrum(lam)) / x.shape[1]})
    return rows


def train_and_measure(key: jax.Array, source: str, tokenizer: str, arch: str, steps: int, seq_len: int = 64,
                      penalty: Callable | None = None, penalty_weight: float = 0.0, samples: int = 10,
                      points: int = 1024, cache: Path | None = None):
    """Train an `arch` model on `source` tokenized by `tokenizer` (or load the checkpoint cached under `cache`
    by an earlier identical run); return (forecast NMSE, final loss and head partition isotropy; per-layer
    measures; hidden states [n, L + 1, T, d] of the first points // seq_len training windows)."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    k_data, k_train, k_eval, k_measure = jax.random.split(key, 4)
    data = corpus.build(source, tokenizer, k_data, seq_len=seq_len, count=16)
    spec = ARCHS[arch]
    config = tf.Config(vocab=data.vocab, mlp=2 * spec["d_model"], max_len=seq_len, **spec)
    layers = tuple(range(1, config.layers + 1)) if penalty is not None else ()
    tcfg = train.TrainConfig(steps=steps, penalty_weight=penalty_weight, penalty_layers=layers)
    ident = {"key": np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key).tolist(),
             "source": source, "tokenizer": tokenizer, "config": str(config), "train": str(tcfg),
             "penalty": getattr(penalty, "__name__", None), "dtype": str(V.float_dtype()),
             # the training tokens themselves, so a change in how a corpus is built never reuses a stale model
             "tokens": hashlib.sha256(np.ascontiguousarray(data.sequences).tobytes()).hexdigest()[:16]}
    path = None if cache is None else Path(cache) / f"{keys.digest(ident)}.safetensors"
    if path is not None and path.exists():
        params, _ = train.load(path)
        losses = np.load(path.with_suffix(".losses.npy"))
    else:
        params, losses, _ = train.train(k_train, config, jnp.asarray(data.sequences), tcfg, penalty=penalty,
                                        progress=False)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path.with_suffix(".losses.npy"), losses)  # first, so a model file implies its losses
            train.save(path, params, config)
    nmse = train.evaluate_forecasts(k_eval, params, config, data, samples=samples)
    seqs = jnp.asarray(data.sequences[: max(points // seq_len, 1)])
    hidden = np.asarray(jax.vmap(lambda s: tf.forward(params, s, config)[0])(seqs))  # [n, L+1, T, d]
    per_layer = layer_rows(np.moveaxis(hidden, 1, 0).reshape(hidden.shape[1], -1, hidden.shape[-1]), k_measure)
    head_iso = float(isotropy.partition_isotropy(params.lm_head[: data.tokenizer.vocab]))
    return ({"nmse": nmse, "final_loss": float(np.mean(losses[-20:])), "head_partition_isotropy": head_iso},
            per_layer, hidden)

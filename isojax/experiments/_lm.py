"""Shared by the trained-model experiments: train one numeric LM, forecast, and measure its layers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from isojax import isotropy, train
from isojax import transformer as tf
from isojax.data import corpus

ARCHS = {
    "decoder": dict(d_model=64, heads=4, layers=2, causal=True),
    "encoder": dict(d_model=64, heads=4, layers=2, causal=False),
    "decoder-deep-wide": dict(d_model=96, heads=4, layers=4, causal=True),
}


def train_and_measure(key, source: str, tokenizer: str, arch: str, steps: int, seq_len: int = 64,
                      penalty=None, penalty_weight: float = 0.0, samples: int = 10, points: int = 1024):
    """Train on `source`, return (forecast NMSE, per-layer measures list, hidden states of the last layer)."""
    k_data, k_train, k_eval, k_measure = jax.random.split(key, 4)
    data = corpus.build(source, tokenizer, k_data, seq_len=seq_len, count=16)
    spec = ARCHS[arch]
    config = tf.Config(vocab=data.vocab, mlp=2 * spec["d_model"], max_len=seq_len, **spec)
    layers = tuple(range(1, config.layers + 1)) if penalty is not None else ()
    tcfg = train.TrainConfig(steps=steps, penalty_weight=penalty_weight, penalty_layers=layers)
    params, losses, _ = train.train(k_train, config, jnp.asarray(data.sequences), tcfg, penalty=penalty, progress=False)
    nmse = train.evaluate_forecasts(k_eval, params, config, data, samples=samples)
    seqs = jnp.asarray(data.sequences[: max(points // seq_len, 1)])
    hidden = np.asarray(jax.vmap(lambda s: tf.forward(params, s, config)[0])(seqs))  # [n, L+1, T, d]
    per_layer = []
    for layer in range(hidden.shape[1]):
        x = jnp.asarray(hidden[:, layer].reshape(-1, hidden.shape[-1]))
        cc = isotropy.clustered_cosine(x, jax.random.fold_in(k_measure, layer), k_max=min(16, x.shape[0] - 1))
        lam = isotropy.covariance_spectrum(x)
        per_layer.append({"layer": layer, "clustered_cosine": float(cc.score), "best_k": int(cc.best_k),
                          "best_silhouette": float(jnp.max(cc.silhouettes)), "isoscore": float(isotropy.isoscore_from_spectrum(lam)),
                          "d80_fraction": float(isotropy.d_80_from_spectrum(lam)) / x.shape[1]})
    head_iso = float(isotropy.partition_isotropy(params.lm_head[: data.tokenizer.vocab]))
    return {"nmse": nmse, "final_loss": float(np.mean(losses[-20:])), "head_partition_isotropy": head_iso}, per_layer, hidden

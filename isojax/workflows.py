"""What the `isojax` commands do, as library functions: a measures sweep over synthetic families, training a
numeric LM to a checkpoint, and embedding data with a model. The CLI only parses arguments and calls these."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from isojax import distributions, isotropy, pretrained, sweep, train
from isojax import transformer as tf
from isojax.data import corpus, real, tokens

__all__ = ["measures_cell", "measures_sweep", "train_model", "embed_data"]


def measures_cell(key: jax.Array, family: str, n: int, d: int, knob, replicate: int = 0) -> dict[str, jax.Array]:
    """One cell of a measures sweep: every isotropy measure of n points in d dimensions from `family`."""
    k1, k2 = jax.random.split(key)
    return isotropy.all_measures(distributions.sample(family, k1, n, d, knob), k2)


def measures_sweep(grid: dict[str, list], out: Path, seed: int = 0) -> list[dict]:
    """Every isotropy measure over a grid of family, n, d, knob and replicate -> the rows of out (CSV)."""
    unknown = set(grid.get("family", [])) - set(distributions.FAMILIES)
    if unknown:
        raise ValueError(f"families {sorted(unknown)} unknown; choose from {sorted(distributions.FAMILIES)}")
    return sweep.run_sweep(measures_cell, grid, out, seed=seed, name="isotropy_measures")


def train_model(data: str, tokenizer: str, arch: str, layers: int, d_model: int, heads: int, seq_len: int,
                steps: int, seed: int, out: Path, log=print) -> Path:
    """Train a numeric LM on `data` (see `corpus.build`) and save its checkpoint to out; logs the final loss and
    the forecast NMSE on the held-out series."""
    built = corpus.build(data, tokenizer, jax.random.PRNGKey(seed), seq_len=seq_len)
    config = tf.Config(vocab=built.vocab, d_model=d_model, heads=heads, layers=layers, mlp=4 * d_model,
                       max_len=seq_len, causal=arch == "decoder")
    params, losses, _ = train.train(jax.random.PRNGKey(seed + 1), config, built.sequences, train.TrainConfig(steps=steps))
    train.save(out, params, config)
    log(f"final loss {losses[-20:].mean():.4f}; checkpoint {out}")
    if built.contexts:
        nmse = train.evaluate_forecasts(jax.random.PRNGKey(seed + 2), params, config, built)
        log(f"forecast NMSE (median of 20 samples) {nmse:.4f}")
    return Path(out)


def embed_data(model: str, data: str, tokenizer: str, max_sequences: int, seed: int, out: Path) -> np.ndarray:
    """Every layer's hidden states of a model ('minilm' or a checkpoint from `train_model`) on `data`, saved as
    out (.npz, array `hidden` [L + 1, tokens, d]). MiniLM embeds real series serialized as digit strings."""
    if model == "minilm":
        params, config = pretrained.load_minilm()
        if not data.startswith("real:"):
            raise ValueError("--model minilm embeds serialized real series: --data real:<name>")
        digits = tokens.DigitTokenizer(precision=1, digits=3)
        texts = [digits.to_text(s[:40]) for s in real.load(data[5:])]
        ids, mask = pretrained.encode(texts)
        hidden = jax.vmap(lambda t, m: tf.forward(params, t, config, key_mask=m)[0])(jnp.asarray(ids), jnp.asarray(mask))
        hidden = np.moveaxis(np.asarray(hidden), 1, 0)[:, mask]  # [L+1, real tokens, d]
    else:
        params, config = train.load(model)
        built = corpus.build(data, tokenizer, jax.random.PRNGKey(seed), seq_len=config.max_len)
        seqs = jnp.asarray(built.sequences[:max_sequences])
        hidden = np.asarray(jax.vmap(lambda t: tf.forward(params, t, config)[0])(seqs))  # [n, L+1, T, d]
        hidden = np.moveaxis(hidden, 1, 0).reshape(hidden.shape[1], -1, hidden.shape[-1])  # [L+1, n·T, d]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, hidden=hidden)
    return hidden

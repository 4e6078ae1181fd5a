"""What `isojax train` and `isojax embed --data` do, as library functions: train one numeric LM to a
self-describing checkpoint, and embed numeric data with a checkpoint (or MiniLM on serialized real series).

Each checks its inputs and that its output path can be written before any compute, so a mistake costs no time
and leaves nothing on disk (ValueError naming the argument or file); files are written to a temporary name and
renamed, so an interrupted run leaves no half-written output.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from isojax import _validate as V
from isojax import inputs, pretrained
from isojax import transformer as tf
from isojax.data import corpus, files, real, tokens
from isojax.models import checkpoint, forecast, recipes, training
from isojax.runs.outputs import check_output, write_npz

__all__ = ["train_model", "embed_data"]


def _file_digest(source: str) -> str | None:
    """SHA-256 of a file source's file (so a checkpoint records exactly which data it saw), read in blocks."""
    if not files.is_file_source(source):
        return None
    path = source[4:] if source.startswith("npy:") or Path(source[4:]).is_file() else source[4:].rsplit(":", 1)[0]
    h = hashlib.sha256()
    with inputs.open_regular(path, f"data {source!r}") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def train_model(data: str, tokenizer: str, arch: str, layers: int | None, d_model: int | None, heads: int | None,
                seq_len: int, steps: int, seed: int, out: Path, log: Callable[[str], object] = print,
                drop_bad_rows: bool = False) -> Path:
    """Train a numeric LM of architecture `arch` (`recipes.ARCHITECTURES`; layers, d_model and heads override
    the recipe's) on `data` (see `corpus.build`) and save its checkpoint to out (self-describing: see
    `checkpoint.save`); logs the final loss and the forecast NMSE on the held-out series. drop_bad_rows: drop
    CSV rows with a non-numeric cell instead of refusing them (`isojax.data.files.load_series`)."""
    tok = corpus.make_tokenizer(tokenizer)
    config = recipes.model_config(arch, tok.vocab + 1, seq_len, layers=layers, d_model=d_model, heads=heads)
    steps = V.positive_int("steps", steps)
    out = check_output(out, ".safetensors")
    built = corpus.build(data, tok, jax.random.PRNGKey(seed), seq_len=seq_len, drop_bad_rows=drop_bad_rows)
    tcfg = training.TrainConfig(steps=steps)
    params, losses, _ = training.train(jax.random.PRNGKey(seed + 1), config, built.sequences, tcfg)
    if not np.isfinite(losses).all() or not all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params)):
        raise ValueError(f"training diverged (final loss {losses[-1]}); nothing was saved to {str(out)!r}")
    meta = {"tokenizer": corpus.tokenizer_spec(tok), "data": data, "data_sha256": _file_digest(data),
            "steps": steps, "seed": seed, "arch": arch, "engine": training.SERIAL.tag,
            "train": dataclasses.asdict(tcfg)}
    checkpoint.save(out, params, config, meta)
    log(f"final loss {losses[-20:].mean():.4f}; checkpoint {out}")
    if built.contexts:
        nmse = forecast.evaluate_forecasts(jax.random.PRNGKey(seed + 2), params, config, built)
        log(f"forecast NMSE (median of 20 samples) {nmse:.4f}")
    return Path(out)


def _checkpoint_tokenizer(meta: dict, requested: str | None, model: str, vocab: int):
    """The checkpoint's own tokenizer; a different `requested` one is refused (its ids would mean nothing)."""
    spec = meta.get("tokenizer")
    if not isinstance(spec, dict):
        raise ValueError(f"checkpoint {model!r} does not record its tokenizer; retrain it with this isojax")
    if requested is not None and requested != spec.get("name"):
        raise ValueError(f"--tokenizer {requested!r} does not match checkpoint {model!r}, trained with "
                         f"{spec.get('name')!r}; leave --tokenizer out to use the checkpoint's")
    tok = corpus.tokenizer_from_spec(spec)
    if tok.vocab + 1 != vocab:  # ids past the embedding would be read out of range, silently
        raise ValueError(f"checkpoint {model!r}: its tokenizer has {tok.vocab} tokens (+1 MASK), its embedding "
                         f"{vocab} rows; the file does not describe one model")
    return tok


def embed_data(model: str, data: str, tokenizer: str | None, max_sequences: int, seed: int, out: Path,
               drop_bad_rows: bool = False) -> np.ndarray:
    """Every layer's hidden states of a model ('minilm' or a checkpoint from `train_model`) on `data`, saved as
    out (.npz, array `hidden` [L + 1, tokens, d]). A checkpoint uses its own tokenizer (`tokenizer`, if given,
    must name the same). MiniLM embeds real series serialized as digit strings."""
    max_sequences = V.positive_int("max_sequences", max_sequences)
    out = check_output(out, ".npz")
    if model == "minilm":
        if not data.startswith("real:"):
            raise ValueError("--model minilm embeds serialized real series: --data real:<name>")
        digits = tokens.DigitTokenizer(precision=1, digits=3)
        texts = [digits.to_text(s[:40]) for s in real.load(data[5:])]
        # every real token of every text, in text order: [L+1, real tokens, d] (128 tokens per text at most)
        hidden = np.asarray(pretrained.embed_texts("minilm", texts, pooling=None, max_len=128).hidden)
    else:
        params, config, meta = checkpoint.load(model)
        tok = _checkpoint_tokenizer(meta, tokenizer, model, config.vocab)
        built = corpus.build(data, tok, jax.random.PRNGKey(seed), seq_len=config.max_len, drop_bad_rows=drop_bad_rows)
        hidden = tf.hidden_states(params, config, built.sequences[:max_sequences])  # [n, L+1, T, d]
        hidden = np.moveaxis(hidden, 1, 0).reshape(hidden.shape[1], -1, hidden.shape[-1])  # [L+1, n·T, d]
    write_npz(out, hidden=hidden)
    return hidden

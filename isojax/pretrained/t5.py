"""The T5 encoder (Chronos's backbone) into isojax's transformer.

T5's encoder: RMS layer norm (scale only), no biases, scores not divided by √d_k, a bucketed relative
position bias held by the first block and shared by all, ReLU or gated-GELU feed-forward
(`feed_forward_proj`), a final layer norm that Hugging Face applies to the last reported hidden state.
Only the encoder is loaded: the decoder and the LM head of T5ForConditionalGeneration are ignored.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp

from isojax import attention as att
from isojax import transformer as tf
from isojax.pretrained import _files as F

__all__ = ["config_from_t5", "params_from_t5", "load_folder"]


def _feed_forward(proj: str, where: str) -> tuple[str, bool]:
    """feed_forward_proj -> (activation, gated), T5Config's rule ("gated-gelu" is the tanh GELU)."""
    parts = proj.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ValueError(f"{where}: feed_forward_proj {proj!r} must be 'ACT' or 'gated-ACT'")
    act = "gelu_new" if proj == "gated-gelu" else parts[-1]
    return F.activation(act, where), len(parts) == 2


def config_from_t5(cfg: dict, max_len: int) -> tf.Config:
    """T5's config.json (as a dict) -> tf.Config of its encoder; max_len: the longest input accepted."""
    where = "T5 config.json"
    activation, gated = _feed_forward(cfg.get("feed_forward_proj", "relu"), where)
    return tf.Config(vocab=F.key(cfg, "vocab_size"), d_model=F.key(cfg, "d_model"), heads=F.key(cfg, "num_heads"),
                     d_head=F.key(cfg, "d_kv"), layers=F.key(cfg, "num_layers"), mlp=F.key(cfg, "d_ff"),
                     max_len=max_len, causal=False, post_ln=False, ln_eps=F.key(cfg, "layer_norm_epsilon", 1e-6),
                     tied_head=True, norm="rms", activation=activation, gated=gated, bias=False, attn_scale=False,
                     abs_pos=False, rel_buckets=F.key(cfg, "relative_attention_num_buckets", 32),
                     rel_max_distance=F.key(cfg, "relative_attention_max_distance", 128), final_norm_hidden=True)


def params_from_t5(t: F.Tensors, config: tf.Config) -> tf.Params:
    """Map T5's encoder tensors (torch Linear: weight [out, in], no biases) onto tf.Params."""
    h, d, dk = config.heads, config.d_model, config.head_dim

    def ln(name):  # T5's norm: a scale, no bias
        return tf.LayerNorm(t(name))

    def split_in(w):  # torch [H·dk, d] -> [H, d, dk]
        return F.split_heads_in(w.T, h)

    blocks = []
    for i in range(config.layers):
        a, ff = f"encoder.block.{i}.layer.0", f"encoder.block.{i}.layer.1"
        attn = att.AttentionParams(w_q=split_in(t(f"{a}.SelfAttention.q.weight")),
                                   w_k=split_in(t(f"{a}.SelfAttention.k.weight")),
                                   w_v=split_in(t(f"{a}.SelfAttention.v.weight")),
                                   w_o=t(f"{a}.SelfAttention.o.weight").T.reshape(h, dk, d))
        w_in = t(f"{ff}.DenseReluDense.wi_0.weight" if config.gated else f"{ff}.DenseReluDense.wi.weight").T
        blocks.append(tf.Block(attn=attn, ln_attn=ln(f"{a}.layer_norm.weight"), w_in=w_in, b_in=None,
                               w_out=t(f"{ff}.DenseReluDense.wo.weight").T, b_out=None,
                               ln_mlp=ln(f"{ff}.layer_norm.weight"),
                               w_gate=t(f"{ff}.DenseReluDense.wi_1.weight").T if config.gated else None))
    embed = t("shared.weight", "encoder.embed_tokens.weight")
    return tf.Params(embed=embed, pos=None, blocks=tuple(blocks), ln_final=ln("encoder.final_layer_norm.weight"),
                     head_bias=jnp.zeros((config.vocab,), embed.dtype),
                     rel_bias=t("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"))


def load_folder(path: Path, max_len: int) -> tuple[tf.Params, tf.Config]:
    """A T5 checkpoint folder -> (params, config) of its encoder."""
    config = F.check_config(config_from_t5(F.read_config(path), max_len), path)
    return params_from_t5(F.Tensors(F.read_tensors(path), path), config), config

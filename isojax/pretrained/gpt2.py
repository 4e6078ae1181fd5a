"""The GPT-2 family (pre-LN causal decoders) into isojax's transformer.

GPT-2's layouts: Conv1D weights are [in, out] (not torch Linear's [out, in]); c_attn fuses Q, K, V into one
[d, 3d] projection; learned absolute positions; tanh-approximated GELU (`gelu_new`); a final LayerNorm ln_f,
which Hugging Face applies to the last reported hidden state (config.final_norm_hidden).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp

from isojax import attention as att
from isojax import transformer as tf
from isojax.pretrained import _files as F

__all__ = ["config_from_gpt2", "params_from_gpt2", "load_folder"]


def config_from_gpt2(cfg: dict) -> tf.Config:
    """GPT-2's config.json (as a dict) -> tf.Config (the LM head tied to wte unless tie_word_embeddings=false)."""
    where = "GPT-2 config.json"
    for flag in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        if cfg.get(flag):
            raise ValueError(f"{where}: {flag}=true is not supported")
    d = F.key(cfg, "n_embd")
    return tf.Config(vocab=F.key(cfg, "vocab_size"), d_model=d, heads=F.key(cfg, "n_head"),
                     layers=F.key(cfg, "n_layer"), mlp=cfg.get("n_inner") or 4 * d, max_len=F.key(cfg, "n_positions"),
                     causal=True, post_ln=False, ln_eps=F.key(cfg, "layer_norm_epsilon", 1e-5),
                     tied_head=cfg.get("tie_word_embeddings", True),
                     activation=F.activation(cfg.get("activation_function", "gelu_new"), where),
                     attn_scale=cfg.get("scale_attn_weights", True), final_norm_hidden=True)


def params_from_gpt2(t: F.Tensors, config: tf.Config) -> tf.Params:
    """Map GPT-2's tensors (`transformer.` prefix removed) onto tf.Params."""
    h, d = config.heads, config.d_model
    dk = d // h
    blocks = []
    for i in range(config.layers):
        p = f"h.{i}"
        w_qkv, b_qkv = t(f"{p}.attn.c_attn.weight"), t(f"{p}.attn.c_attn.bias")  # [d, 3d], [3d]: q | k | v
        w_q, w_k, w_v = (F.split_heads_in(w_qkv[:, j * d:(j + 1) * d], h) for j in range(3))
        b_q, b_k, b_v = (b_qkv[j * d:(j + 1) * d].reshape(h, dk) for j in range(3))
        attn = att.AttentionParams(w_q=w_q, w_k=w_k, w_v=w_v, w_o=t(f"{p}.attn.c_proj.weight").reshape(h, dk, d),
                                   b_q=b_q, b_k=b_k, b_v=b_v, b_o=t(f"{p}.attn.c_proj.bias"))
        blocks.append(tf.Block(attn=attn, ln_attn=F.layer_norm(t, f"{p}.ln_1"),
                               w_in=t(f"{p}.mlp.c_fc.weight"), b_in=t(f"{p}.mlp.c_fc.bias"),
                               w_out=t(f"{p}.mlp.c_proj.weight"), b_out=t(f"{p}.mlp.c_proj.bias"),
                               ln_mlp=F.layer_norm(t, f"{p}.ln_2")))
    embed = t("wte.weight")
    return tf.Params(embed=embed, pos=t("wpe.weight"), blocks=tuple(blocks), ln_final=F.layer_norm(t, "ln_f"),
                     head_bias=jnp.zeros((config.vocab,), embed.dtype),
                     head=None if config.tied_head else t("lm_head.weight"))


def load_folder(path: Path) -> tuple[tf.Params, tf.Config]:
    """A GPT-2 checkpoint folder -> (params, config)."""
    config = F.check_config(config_from_gpt2(F.read_config(path)), path)
    return params_from_gpt2(F.Tensors(F.read_tensors(path), path, prefix="transformer."), config), config

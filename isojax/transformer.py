"""Pure-functional transformer LMs on isojax's one attention: causal decoder or bidirectional encoder.

`forward(params, tokens, config)` returns the hidden states of every layer ([L + 1, T, d]: the embeddings,
then each block's output) and the logits [T, V]. Pre-LN blocks for the models trained here; post-LN blocks
(BERT's layout) so that a pre-trained MiniLM loads into the same functions (`isojax.pretrained`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import struct

from isojax import _validate as V
from isojax import attention as att


@dataclasses.dataclass(frozen=True)
class Config:
    """Static architecture; hashable, so it is a static argument of jit."""

    vocab: int
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    mlp: int = 128
    max_len: int = 256
    causal: bool = True  # causal decoder; False: bidirectional encoder (masked-token objective)
    post_ln: bool = False  # BERT-style post-LN blocks and an embedding LayerNorm
    type_vocab: int = 0  # BERT token-type embeddings (0 = none)
    ln_eps: float = 1e-5
    tied_head: bool = True  # LM head Φ = the token embedding matrix

    def __post_init__(self):
        for name in ("vocab", "d_model", "heads", "layers", "mlp", "max_len"):
            V.positive_int(f"config.{name}", getattr(self, name))
        if self.d_model % self.heads:
            raise ValueError(f"config.d_model={self.d_model} must be divisible by config.heads={self.heads}")


@struct.dataclass
class LayerNorm:
    scale: jax.Array  # [d]
    bias: jax.Array  # [d]


@struct.dataclass
class Block:
    attn: att.AttentionParams
    ln_attn: LayerNorm
    w_in: jax.Array  # [d, mlp]
    b_in: jax.Array  # [mlp]
    w_out: jax.Array  # [mlp, d]
    b_out: jax.Array  # [d]
    ln_mlp: LayerNorm


@struct.dataclass
class Params:
    embed: jax.Array  # [V, d] token embeddings (and the tied LM head Φ)
    pos: jax.Array  # [max_len, d]
    blocks: tuple  # of Block
    ln_final: LayerNorm  # pre-LN: final norm; post-LN: the embedding norm
    head_bias: jax.Array  # [V]
    types: jax.Array | None = None  # [type_vocab, d]
    head: jax.Array | None = None  # [V, d] when the head is not tied

    @property
    def lm_head(self) -> jax.Array:
        """Φ [V, d]: the output embeddings."""
        return self.embed if self.head is None else self.head


def _ln(d, dtype):
    return LayerNorm(jnp.ones((d,), dtype), jnp.zeros((d,), dtype))


def init(key, config: Config, dtype=None) -> Params:
    """Random parameters (normal 0.02, as GPT-2/BERT)."""
    dtype = dtype or V.float_dtype()
    d = config.d_model
    keys = jax.random.split(key, config.layers + 4)
    normal = lambda k, shape: 0.02 * jax.random.normal(k, shape, dtype)
    blocks = []
    for i in range(config.layers):
        kb = jax.random.split(keys[i], 3)
        blocks.append(Block(
            attn=att.init_attention(kb[0], d, config.heads, dtype=dtype),
            ln_attn=_ln(d, dtype), w_in=normal(kb[1], (d, config.mlp)), b_in=jnp.zeros((config.mlp,), dtype),
            w_out=normal(kb[2], (config.mlp, d)) / math.sqrt(2 * config.layers), b_out=jnp.zeros((d,), dtype),
            ln_mlp=_ln(d, dtype)))
    return Params(
        embed=normal(keys[-1], (config.vocab, d)), pos=normal(keys[-2], (config.max_len, d)), blocks=tuple(blocks),
        ln_final=_ln(d, dtype), head_bias=jnp.zeros((config.vocab,), dtype),
        types=normal(keys[-3], (config.type_vocab, d)) if config.type_vocab else None,
        head=None if config.tied_head else normal(keys[-4], (config.vocab, d)))


def layer_norm(p: LayerNorm, x, eps: float) -> jax.Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p.scale + p.bias


def _block(b: Block, x, config: Config, key_mask):
    gelu = lambda u: jax.nn.gelu(u, approximate=False)
    if config.post_ln:
        x = layer_norm(b.ln_attn, x + att.self_attention(b.attn, x, config.causal, key_mask), config.ln_eps)
        return layer_norm(b.ln_mlp, x + gelu(x @ b.w_in + b.b_in) @ b.w_out + b.b_out, config.ln_eps)
    x = x + att.self_attention(b.attn, layer_norm(b.ln_attn, x, config.ln_eps), config.causal, key_mask)
    return x + gelu(layer_norm(b.ln_mlp, x, config.ln_eps) @ b.w_in + b.b_in) @ b.w_out + b.b_out


def forward(params: Params, tokens, config: Config, key_mask=None, token_types=None):
    """tokens: [T] ints -> (hidden [L + 1, T, d], logits [T, V]). key_mask: [T] bool, False = padding."""
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must have rank 1 [T] (vmap for batches), got shape {tuple(tokens.shape)}")
    if tokens.shape[0] > config.max_len:
        raise ValueError(f"tokens has length {tokens.shape[0]} > config.max_len={config.max_len}")
    x = params.embed[tokens] + params.pos[: tokens.shape[0]]
    if params.types is not None:
        x = x + params.types[jnp.zeros_like(tokens) if token_types is None else token_types]
    if config.post_ln:
        x = layer_norm(params.ln_final, x, config.ln_eps)
    hidden = [x]
    for b in params.blocks:
        x = _block(b, x, config, key_mask)
        hidden.append(x)
    out = x if config.post_ln else layer_norm(params.ln_final, x, config.ln_eps)
    logits = out @ params.lm_head.T + params.head_bias
    return jnp.stack(hidden), logits

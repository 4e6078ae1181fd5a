"""Pure-functional transformer LMs on isojax's one attention: causal decoder or bidirectional encoder.

`encode(params, tokens, config)` returns the hidden states of every layer ([L + 1, T, d]: the embeddings, then
each block's output) and the final representation [T, d] that the LM head reads; `forward` adds the logits
[T, V] from `isojax.head`, the verified head (docs/theory.md T1, T2), so a trained model runs exactly the head
that `isojax check` verifies. `hidden_states` runs a model over many inputs [n, T] in compiled chunks.

Pre-LN blocks for the models trained here; post-LN blocks
(BERT's layout) so that a pre-trained MiniLM loads into the same functions (`isojax.pretrained`). A few
`Config` switches cover the other pre-trained families: RMS norm without bias and no score scaling, relative
position bias, gated feed-forward (T5/Chronos), tanh-GELU and the final norm on the last hidden state
(GPT-2, T5). Their defaults are the models trained here, bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from isojax import _validate as V
from isojax import attention as att
from isojax import head

__all__ = ["Config", "LayerNorm", "Block", "Params", "init", "layer_norm", "rms_norm", "relative_position_bucket",
           "encode", "forward", "hidden_states"]

NORMS = ("layer", "rms")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


@dataclasses.dataclass(frozen=True)
class Config:
    """Static architecture; hashable, so it is a static argument of jit. Scalars only (saved as JSON)."""

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
    # --- switches for pre-trained families (defaults: the models trained here) ---
    d_head: int = 0  # per-head width d_k (0 = d_model // heads; T5 allows heads·d_k ≠ d_model)
    norm: str = "layer"  # "layer" (mean, variance, bias) or "rms" (T5: scale only, no mean subtraction)
    activation: str = "gelu"  # "gelu" (erf), "gelu_tanh" (GPT-2's gelu_new), "relu"
    gated: bool = False  # feed-forward act(x W_in) ⊙ (x W_gate) (T5's gated-gelu)
    bias: bool = True  # biases in the linear layers (T5 has none)
    attn_scale: bool = True  # scores scaled by 1/√d_k (T5: not scaled)
    abs_pos: bool = True  # learned absolute position embeddings (T5: none, relative bias instead)
    rel_buckets: int = 0  # T5 relative position bias buckets (0 = none); computed once, shared by all blocks
    rel_max_distance: int = 128  # distances at or past this share the last bucket
    final_norm_hidden: bool = False  # the last hidden state is after the final norm (Hugging Face's convention)

    def __post_init__(self):
        for name in ("vocab", "d_model", "heads", "layers", "mlp", "max_len"):
            V.positive_int(f"config.{name}", getattr(self, name))
        if self.d_head == 0 and self.d_model % self.heads:
            raise ValueError(f"config.d_model={self.d_model} must be divisible by config.heads={self.heads}")
        if self.d_head < 0 or self.rel_buckets < 0 or self.rel_max_distance <= 0:
            raise ValueError(f"config.d_head={self.d_head}, config.rel_buckets={self.rel_buckets} must be >= 0 and "
                             f"config.rel_max_distance={self.rel_max_distance} > 0")
        if self.norm not in NORMS or self.activation not in ACTIVATIONS:
            raise ValueError(f"config.norm={self.norm!r} must be one of {NORMS} and config.activation="
                             f"{self.activation!r} one of {ACTIVATIONS}")
        if self.rel_buckets and self.rel_buckets < 4:
            raise ValueError(f"config.rel_buckets={self.rel_buckets} must be 0 or >= 4")
        if self.norm == "rms" and self.post_ln:
            raise ValueError("config.norm='rms' is for pre-norm blocks (T5): it needs post_ln=False")

    @property
    def head_dim(self) -> int:
        return self.d_head or self.d_model // self.heads


@struct.dataclass
class LayerNorm:
    """A norm's parameters: scale [d] and bias [d] (None for RMS norm)."""

    scale: jax.Array  # [d]
    bias: jax.Array | None = None  # [d]; None for RMS norm


@struct.dataclass
class Block:
    """One transformer block: attention, its norm, the feed-forward weights (gated or not) and its norm."""

    attn: att.AttentionParams
    ln_attn: LayerNorm
    w_in: jax.Array  # [d, mlp]
    b_in: jax.Array | None  # [mlp]
    w_out: jax.Array  # [mlp, d]
    b_out: jax.Array | None  # [d]
    ln_mlp: LayerNorm
    w_gate: jax.Array | None = None  # [d, mlp], the linear branch of a gated feed-forward


@struct.dataclass
class Params:
    """A model's parameters: embeddings, optional positions and type embeddings, blocks, final norm and head."""

    embed: jax.Array  # [V, d] token embeddings (and the tied LM head Φ)
    pos: jax.Array | None  # [max_len, d]; None without absolute positions
    blocks: tuple  # of Block
    ln_final: LayerNorm  # pre-LN: final norm; post-LN: the embedding norm
    head_bias: jax.Array  # [V]
    types: jax.Array | None = None  # [type_vocab, d]
    head: jax.Array | None = None  # [V, d] when the head is not tied
    rel_bias: jax.Array | None = None  # [rel_buckets, H] relative position bias

    @property
    def lm_head(self) -> jax.Array:
        """Φ [V, d]: the output embeddings."""
        return self.embed if self.head is None else self.head


def _ln(d, dtype, config: Config | None = None):
    rms = config is not None and config.norm == "rms"
    return LayerNorm(jnp.ones((d,), dtype), None if rms else jnp.zeros((d,), dtype))


def init(key: jax.Array, config: Config, dtype: jax.typing.DTypeLike | None = None) -> Params:
    """Random parameters (normal 0.02, as GPT-2/BERT) of `dtype` (default: the float dtype in use)."""
    dtype = dtype or V.float_dtype()
    d = config.d_model
    keys = jax.random.split(key, config.layers + 4)

    def normal(k, shape):
        return 0.02 * jax.random.normal(k, shape, dtype)

    def zeros(n):
        return jnp.zeros((n,), dtype) if config.bias else None

    blocks = []
    for i in range(config.layers):
        kb = jax.random.split(keys[i], 3)
        blocks.append(Block(
            attn=att.init_attention(kb[0], d, config.heads, d_k=config.head_dim, bias=config.bias, dtype=dtype),
            ln_attn=_ln(d, dtype, config), w_in=normal(kb[1], (d, config.mlp)), b_in=zeros(config.mlp),
            w_out=normal(kb[2], (config.mlp, d)) / math.sqrt(2 * config.layers), b_out=zeros(d),
            ln_mlp=_ln(d, dtype, config),
            # fold_in: the extra draws leave the default models' parameters as they were
            w_gate=normal(jax.random.fold_in(keys[i], 1), (d, config.mlp)) if config.gated else None))
    return Params(
        embed=normal(keys[-1], (config.vocab, d)),
        pos=normal(keys[-2], (config.max_len, d)) if config.abs_pos else None, blocks=tuple(blocks),
        ln_final=_ln(d, dtype, config), head_bias=jnp.zeros((config.vocab,), dtype),
        types=normal(keys[-3], (config.type_vocab, d)) if config.type_vocab else None,
        head=None if config.tied_head else normal(keys[-4], (config.vocab, d)),
        rel_bias=normal(jax.random.fold_in(key, 1), (config.rel_buckets, config.heads)) if config.rel_buckets else None)


def layer_norm(p: LayerNorm, x: jax.Array, eps: float) -> jax.Array:
    """LayerNorm over the last axis: x [..., d] -> [..., d]."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p.scale + p.bias


def rms_norm(p: LayerNorm, x: jax.Array, eps: float) -> jax.Array:
    """T5's layer norm: x / rms(x) · scale, no mean subtraction, no bias. x [..., d] -> [..., d]."""
    return x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + eps) * p.scale


def _norm(p: LayerNorm, x, config: Config):
    return rms_norm(p, x, config.ln_eps) if config.norm == "rms" else layer_norm(p, x, config.ln_eps)


def relative_position_bucket(length: int, buckets: int, max_distance: int, bidirectional: bool) -> np.ndarray:
    """T5's bucket of key j relative to query i -> [T, T] ints: exact for small distances, log-spaced up to
    max_distance. Computed in float32 with truncation, as the reference does, so the buckets agree exactly."""
    rel = np.arange(length)[None, :] - np.arange(length)[:, None]  # key - query
    out = np.zeros_like(rel)
    if bidirectional:
        buckets //= 2
        out += (rel > 0) * buckets
        rel = np.abs(rel)
    else:
        rel = -np.minimum(rel, 0)
    exact = buckets // 2
    far = np.maximum(rel, exact).astype(np.float32)  # the entries below `exact` take the exact branch below
    log_ratio = np.log(far / np.float32(exact)) / np.float32(math.log(max_distance / exact))
    large = exact + (log_ratio * np.float32(buckets - exact)).astype(np.int64, copy=False)
    large = np.minimum(large, buckets - 1)
    return out + np.where(rel < exact, rel, large)


def _position_bias(params: Params, length: int, config: Config):
    if params.rel_bias is None:
        return None
    idx = relative_position_bucket(length, config.rel_buckets, config.rel_max_distance, not config.causal)
    return jnp.transpose(params.rel_bias[idx], (2, 0, 1))  # [T, T, H] -> [H, T, T]


_ACT = {"gelu": lambda u: jax.nn.gelu(u, approximate=False), "gelu_tanh": lambda u: jax.nn.gelu(u, approximate=True),
        "relu": jax.nn.relu}


def _linear(x, w, b):
    return x @ w if b is None else x @ w + b


def _mlp_residual(b: Block, x, h, config: Config):
    """x + MLP(h), summed as (x + u W_out) + b_out: the order the trained models were computed in."""
    u = _ACT[config.activation](_linear(h, b.w_in, b.b_in))
    if b.w_gate is not None:
        u = u * (h @ b.w_gate)
    y = x + u @ b.w_out
    return y if b.b_out is None else y + b.b_out


def _block(b: Block, x, config: Config, key_mask, bias):
    scale = None if config.attn_scale else 1.0

    def attn(h):
        return att.self_attention(b.attn, h, config.causal, key_mask, bias, scale)

    if config.post_ln:
        x = _norm(b.ln_attn, x + attn(x), config)
        return _norm(b.ln_mlp, _mlp_residual(b, x, x, config), config)
    x = x + attn(_norm(b.ln_attn, x, config))
    return _mlp_residual(b, x, _norm(b.ln_mlp, x, config), config)


def encode(params: Params, tokens: jax.typing.ArrayLike, config: Config, key_mask: jax.typing.ArrayLike | None = None,
           token_types: jax.typing.ArrayLike | None = None) -> tuple[jax.Array, jax.Array]:
    """tokens: [T] ints -> (hidden [L + 1, T, d], out [T, d]): every layer's hidden states and the final
    representation the LM head reads (after the final norm of a pre-LN model). key_mask: [T] bool, False =
    padding; token_types: [T] segment ids (default all 0) where the model has type embeddings.

    hidden[0] is the embedding, hidden[l] block l's output; with `config.final_norm_hidden` the last one is
    taken after the final norm, as Hugging Face reports GPT-2's and T5's hidden states."""
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must have rank 1 [T] (vmap for batches), got shape {tuple(tokens.shape)}")
    if tokens.shape[0] > config.max_len:
        raise ValueError(f"tokens has length {tokens.shape[0]} > config.max_len={config.max_len}")
    x = params.embed[tokens] if params.pos is None else params.embed[tokens] + params.pos[: tokens.shape[0]]
    if params.types is not None:
        x = x + params.types[jnp.zeros_like(tokens) if token_types is None else token_types]
    if config.post_ln:
        x = _norm(params.ln_final, x, config)
    bias = _position_bias(params, tokens.shape[0], config)
    hidden = [x]
    for b in params.blocks:
        x = _block(b, x, config, key_mask, bias)
        hidden.append(x)
    out = x if config.post_ln else _norm(params.ln_final, x, config)
    if config.final_norm_hidden and not config.post_ln:
        hidden[-1] = out
    return jnp.stack(hidden), out


def forward(params: Params, tokens: jax.typing.ArrayLike, config: Config, key_mask: jax.typing.ArrayLike | None = None,
            token_types: jax.typing.ArrayLike | None = None) -> tuple[jax.Array, jax.Array]:
    """tokens: [T] ints -> (hidden [L + 1, T, d], logits [T, V]): `encode`, then the logits Φ·out + b of
    `isojax.head.logits` (Φ = params.lm_head, b = params.head_bias)."""
    hidden, out = encode(params, tokens, config, key_mask, token_types)
    return hidden, head.logits(params.lm_head, out, params.head_bias)


@functools.partial(jax.jit, static_argnames="config")
def _hidden_batch(params, ids, mask, config):
    return jax.vmap(lambda t, m: encode(params, t, config, key_mask=m)[0])(ids, mask)


def hidden_states(params: Params, config: Config, ids: jax.typing.ArrayLike, mask: jax.typing.ArrayLike | None = None,
                  batch: int = 32) -> np.ndarray:
    """Every layer's hidden states of a model (trained here or loaded by `isojax.pretrained`) on many inputs.
    ids: [n, T] token ids; mask: [n, T] bool, True = real token (default: all real) -> [n, L + 1, T, d].

    Runs in chunks of `batch` inputs, the last padded with copies of its first row (dropped again), so one
    compilation per (config, batch, T) serves every chunk and every call."""
    ids = np.asarray(ids)
    mask = np.ones(ids.shape, bool) if mask is None else np.asarray(mask, bool)
    if ids.ndim != 2 or mask.shape != ids.shape:
        raise ValueError(f"ids [n, T] and mask must have one shape, got {ids.shape} and {mask.shape}")
    V.token_ids("ids", ids, config.vocab)
    if not mask.any(axis=1).all():
        raise ValueError(f"inputs {np.nonzero(~mask.any(axis=1))[0].tolist()} have no real token (mask all False)")
    batch = V.positive_int("batch", batch)
    n = ids.shape[0]
    size = min(batch, n)
    out = []
    for s in range(0, n, size):
        i, m = ids[s:s + size], mask[s:s + size]
        if i.shape[0] < size:  # pad with copies of the chunk's first row, dropped below
            fill = size - i.shape[0]
            i, m = np.concatenate([i, np.repeat(i[:1], fill, 0)]), np.concatenate([m, np.repeat(m[:1], fill, 0)])
        out.append(np.asarray(_hidden_batch(params, jnp.asarray(i), jnp.asarray(m), config))[: min(size, n - s)])
    return np.concatenate(out)

"""Multi-head self-attention (docs/theory.md T3): the forward pass and its closed-form VJP, written without autodiff.

This is the one attention in isojax: the transformer calls `self_attention`, and the theory checks compare
`attention_vjp` against `jax.vjp` of the same forward and both against a float64 NumPy attention. Per head h:
    Q = X W_Q[h] + b_Q[h],  K = X W_K[h] + b_K[h],  V = X W_V[h] + b_V[h]
    S = s·Q Kᵀ + B[h] + M,  A = softmax_rows(S),  O = A V
and the output mixes the heads, Y = Σ_h O[h] W_O[h] + b_O. The score scale s is 1/√d_k unless given (T5 and
Chronos use s = 1, their scaling folded into the weights); B is an optional additive score bias [H, T, T]
(T5's relative positions, ALiBi), M the mask (0 where allowed, -inf elsewhere). Every function takes the same
`bias` and `scale`; the forward records both in its cache, and the closed-form backward honours them and
returns ∂ℓ/∂B = G_S when a bias was given.
Shapes: x [T, d_model]; W_Q, W_K [H, d_model, d_k]; W_V [H, d_model, d_v]; W_O [H, d_v, d_model];
b_Q, b_K [H, d_k]; b_V [H, d_v]; b_O [d_model]. Biases are optional (None). Batch over sequences with vmap.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from jax.typing import ArrayLike, DTypeLike

from isojax import _validate as V

__all__ = ["AttentionCache", "AttentionGrads", "AttentionParams", "attend", "attention_backward", "attention_forward",
           "attention_mask", "attention_vjp", "init_attention", "init_from_normal", "score_factor", "self_attention",
           "self_attention_closed_form"]


@struct.dataclass
class AttentionParams:
    """Parameters of one multi-head self-attention layer; a frozen pytree. Biases may be None."""

    w_q: jax.Array  # [H, d_model, d_k]
    w_k: jax.Array  # [H, d_model, d_k]
    w_v: jax.Array  # [H, d_model, d_v]
    w_o: jax.Array  # [H, d_v, d_model]
    b_q: jax.Array | None = None  # [H, d_k]
    b_k: jax.Array | None = None  # [H, d_k]
    b_v: jax.Array | None = None  # [H, d_v]
    b_o: jax.Array | None = None  # [d_model]

    @property
    def heads(self) -> int:
        """The number of heads H."""
        return self.w_q.shape[0]


class AttentionCache(NamedTuple):
    """What the backward pass needs from the forward: per-head projections, weights and outputs, and the options
    the scores were computed with. `scale` None means 1/√d_k (a cache written by other code than
    `attention_forward`); `bias` is the additive score bias [H, T, T] or None (none was given)."""

    q: jax.Array  # [H, T, d_k]
    k: jax.Array  # [H, T, d_k]
    v: jax.Array  # [H, T, d_v]
    a: jax.Array  # [H, T, T] attention weights
    o: jax.Array  # [H, T, d_v]
    scale: jax.Array | None = None  # [] the score factor s
    bias: jax.Array | None = None  # [H, T, T] the additive score bias B


def init_from_normal(raw: AttentionParams) -> AttentionParams:
    """The initialisation rule of `init_attention`, applied to standard-normal draws of every field: each weight
    divided by √fan_in (d_model for W_Q, W_K, W_V; H·d_v for W_O), each bias times 0.1 (small, not zero, so tests
    exercise them). The one place of this rule: the theory checks draw their attention instances through it."""
    heads, d_model, _ = raw.w_q.shape
    d_v = raw.w_v.shape[-1]
    fan_in = dict(w_q=d_model, w_k=d_model, w_v=d_model, w_o=heads * d_v)
    return raw.replace(**{name: getattr(raw, name) / math.sqrt(n) for name, n in fan_in.items()},
                       **{name: None if getattr(raw, name) is None else 0.1 * getattr(raw, name)
                          for name in ("b_q", "b_k", "b_v", "b_o")})


def init_attention(key: jax.Array, d_model: int, heads: int, d_k: int | None = None, d_v: int | None = None,
                   bias: bool = True, dtype: DTypeLike | None = None) -> AttentionParams:
    """Random attention parameters: standard normals scaled by `init_from_normal` (Glorot-scaled weights, biases
    0.1·N(0, 1)); bias=False leaves the biases None."""
    d_model = V.positive_int("d_model", d_model)
    heads = V.positive_int("heads", heads)
    d_k = V.positive_int("d_k", d_k if d_k is not None else max(d_model // heads, 1))
    d_v = V.positive_int("d_v", d_v if d_v is not None else d_k)
    dtype = dtype or V.float_dtype()
    ks = jax.random.split(key, 8)
    shapes = dict(w_q=(heads, d_model, d_k), w_k=(heads, d_model, d_k), w_v=(heads, d_model, d_v),
                  w_o=(heads, d_v, d_model), b_q=(heads, d_k), b_k=(heads, d_k), b_v=(heads, d_v), b_o=(d_model,))
    names = list(shapes) if bias else list(shapes)[:4]
    # the same keys for the same fields as before this rule had its own function: every model's initial weights
    # are unchanged (tests/test_attention.py pins them)
    raw = {name: jax.random.normal(k, shapes[name], dtype) for name, k in zip(names, ks, strict=False)}
    return init_from_normal(AttentionParams(**raw))


def attention_mask(length: int, causal: bool, key_mask: ArrayLike | None = None) -> jax.Array:
    """Boolean [T, T] mask, True where query i may attend to key j. key_mask: [T] bool (False = padding)."""
    allowed = jnp.ones((length, length), dtype=bool)
    if causal:
        allowed = jnp.tril(allowed)
    if key_mask is not None:
        allowed = allowed & key_mask[None, :]
    return allowed


def _check(params: AttentionParams, x, key_mask=None):
    x = V.array("x", x, ndim=2, what="[T, d_model]")
    if params.w_q.ndim != 3:
        raise ValueError(f"params.w_q must have rank 3 [H, d_model, d_k], got shape {tuple(params.w_q.shape)}")
    V.same_size("x", x.shape[1], "params.w_q", params.w_q.shape[1], "d_model")
    if key_mask is not None:
        key_mask = jnp.asarray(key_mask, dtype=bool)
        if key_mask.shape != (x.shape[0],):
            raise ValueError(f"key_mask must have shape ({x.shape[0]},) [T], got shape {tuple(key_mask.shape)}")
    return x, key_mask


def _project(x, w, b):
    y = jnp.einsum("td,hdk->htk", x, w)
    return y if b is None else y + b[:, None, :]


def score_factor(scale: ArrayLike | None, d_k: int) -> float | jax.Array:
    """The score factor s: 1/√d_k when `scale` is None, else `scale` itself (a finite number, or a 0-d array
    under a trace). Raises ValueError for anything else."""
    if scale is None:
        return 1.0 / math.sqrt(d_k)
    if isinstance(scale, bool) or not (isinstance(scale, (int, float)) or getattr(scale, "shape", None) == ()):
        raise ValueError(f"scale must be a number or a 0-d array, got {scale!r}")
    if isinstance(scale, (int, float)) and not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale!r}")
    return scale


def attend(q: ArrayLike, k: ArrayLike, v: ArrayLike, allowed: ArrayLike, bias: ArrayLike | None = None,
           scale: float | None = None) -> tuple[jax.Array, jax.Array]:
    """Scaled dot-product attention per head. q, k: [H, T, d_k], v: [H, T, d_v], allowed: [T, T] bool
    -> (o [H, T, d_v], a [H, T, T]). bias: optional additive scores [H, T, T] (T5's relative positions, ALiBi);
    scale: the score factor s, None = 1/√d_k (T5 uses 1: its scaling is folded into the weights).

    A query that may see no key (its row of `allowed` is all False, e.g. a causal query whose only earlier
    keys are padding) gets attention weights 0 and output 0, so the layer gives y_i = b_O there, and every
    gradient through that row is 0: there is nothing to attend to, and softmax over no key would be NaN.
    """
    s = jnp.einsum("htk,hsk->hts", q, k)
    # QKᵀ/√d_k divides (as the trained models were computed); any other factor multiplies
    s = s / math.sqrt(q.shape[-1]) if scale is None else s * score_factor(scale, q.shape[-1])
    if bias is not None:
        s = s + bias
    # The mask M is -inf where attention is not allowed. A row with no key at all gets finite scores (0) so that
    # softmax and its gradient stay finite there; its weights are then set to 0.
    any_key = jnp.any(allowed, axis=-1, keepdims=True)
    a = jax.nn.softmax(jnp.where(allowed, s, jnp.where(any_key, -jnp.inf, 0.0)), axis=-1)
    a = jnp.where(any_key, a, 0.0)
    return jnp.einsum("hts,hsv->htv", a, v), a


def _forward(params: AttentionParams, x, allowed, bias=None, scale=None):
    q = _project(x, params.w_q, params.b_q)
    k = _project(x, params.w_k, params.b_k)
    v = _project(x, params.w_v, params.b_v)
    o, a = attend(q, k, v, allowed, bias, scale)
    y = jnp.einsum("htv,hvd->td", o, params.w_o)
    if params.b_o is not None:
        y = y + params.b_o
    s = jnp.asarray(score_factor(scale, q.shape[-1]), q.dtype)
    return y, AttentionCache(q, k, v, a, o, s, bias)


def _check_bias(params: AttentionParams, x, bias):
    if bias is None:
        return None
    bias = jnp.asarray(bias)  # -inf entries allowed: a bias may mask
    want = (params.heads, x.shape[0], x.shape[0])
    if bias.shape != want:
        raise ValueError(f"bias must have shape {want} [H, T, T], got shape {tuple(bias.shape)}")
    return bias


def attention_forward(params: AttentionParams, x: ArrayLike, causal: bool = False, key_mask: ArrayLike | None = None,
                      bias: ArrayLike | None = None, scale: float | None = None) -> tuple[jax.Array, AttentionCache]:
    """Forward pass keeping the intermediates. x: [T, d_model] -> (y [T, d_model], AttentionCache).
    bias: optional additive scores [H, T, T]; scale: score factor, None = 1/√d_k (see `attend`). Both are
    recorded in the cache, so `attention_backward` differentiates the forward that ran."""
    x, key_mask = _check(params, x, key_mask)
    bias = _check_bias(params, x, bias)
    score_factor(scale, params.w_q.shape[-1])
    return _forward(params, x, attention_mask(x.shape[0], causal, key_mask), bias, scale)


def self_attention(params: AttentionParams, x: ArrayLike, causal: bool = False, key_mask: ArrayLike | None = None,
                   bias: ArrayLike | None = None, scale: float | None = None) -> jax.Array:
    """Multi-head self-attention. x: [T, d_model] -> [T, d_model]. bias [H, T, T] and scale: see `attend`."""
    return attention_forward(params, x, causal, key_mask, bias, scale)[0]


class AttentionGrads(NamedTuple):
    """Closed-form gradients: w.r.t. the parameters, the input, and the scores G_S (for T3's row-sum check);
    `bias` = ∂ℓ/∂B (= G_S) when the forward had an additive score bias, else None; `scale` = ∂ℓ/∂s."""

    params: AttentionParams
    x: jax.Array  # [T, d_model]
    scores: jax.Array  # G_S [H, T, T]
    bias: jax.Array | None = None  # [H, T, T]
    scale: jax.Array | None = None  # []


def attention_backward(params: AttentionParams, x: ArrayLike, cache: AttentionCache, g_y: ArrayLike) -> AttentionGrads:
    """The closed-form VJP of T3 (no autodiff): from G_Y = ∂ℓ/∂Y [T, d_model] to every gradient, with the score
    scale and bias the forward recorded in `cache` (scale None: 1/√d_k)."""
    q, k, v, a, o = cache[:5]
    scale = score_factor(cache.scale, q.shape[-1])
    g_o = jnp.einsum("td,hvd->htv", g_y, params.w_o)  # G_O per head
    g_a = jnp.einsum("htv,hsv->hts", g_o, v)  # G_A = G_O Vᵀ
    g_s = a * (g_a - jnp.sum(a * g_a, axis=-1, keepdims=True))  # softmax Jacobian, rows sum to 0
    g_s_k = jnp.einsum("hts,hsk->htk", g_s, k)
    g_q = g_s_k * scale  # G_Q = s·G_S K
    g_k = jnp.einsum("hts,htk->hsk", g_s, q) * scale  # G_K = s·G_Sᵀ Q
    g_v = jnp.einsum("hts,htv->hsv", a, g_o)  # G_V = Aᵀ G_O
    grads = AttentionParams(
        w_q=jnp.einsum("td,htk->hdk", x, g_q),
        w_k=jnp.einsum("td,htk->hdk", x, g_k),
        w_v=jnp.einsum("td,htv->hdv", x, g_v),
        w_o=jnp.einsum("htv,td->hvd", o, g_y),
        b_q=None if params.b_q is None else g_q.sum(axis=1),
        b_k=None if params.b_k is None else g_k.sum(axis=1),
        b_v=None if params.b_v is None else g_v.sum(axis=1),
        b_o=None if params.b_o is None else g_y.sum(axis=0),
    )
    g_x = (jnp.einsum("htk,hdk->td", g_q, params.w_q) + jnp.einsum("htk,hdk->td", g_k, params.w_k)
           + jnp.einsum("htv,hdv->td", g_v, params.w_v))
    g_scale = jnp.sum(g_s_k * q)  # ∂ℓ/∂s = Σ G_S ⊙ QKᵀ
    return AttentionGrads(grads, g_x, g_s, None if cache.bias is None else g_s, g_scale)


def attention_vjp(params: AttentionParams, x: ArrayLike, g_y: ArrayLike, causal: bool = False,
                  key_mask: ArrayLike | None = None, bias: ArrayLike | None = None,
                  scale: float | None = None) -> tuple[jax.Array, AttentionGrads]:
    """Output and closed-form gradients in one call, with the options of `attention_forward`.
    -> (y [T, d_model], AttentionGrads)."""
    y, cache = attention_forward(params, x, causal, key_mask, bias, scale)
    g_y = V.array("g_y", g_y, ndim=2, what="[T, d_model]")
    if g_y.shape != y.shape:
        raise ValueError(f"g_y must have the output's shape {tuple(y.shape)}, got shape {tuple(g_y.shape)}")
    return y, attention_backward(params, x, cache, g_y)


@jax.custom_vjp
def _attention_cf(params, x, allowed, bias, scale):
    return _forward(params, x, allowed, bias, scale)[0]


def _attention_cf_fwd(params, x, allowed, bias, scale):
    y, cache = _forward(params, x, allowed, bias, scale)
    return y, (params, x, allowed, cache, scale)


def _attention_cf_bwd(res, g_y):
    params, x, allowed, cache, scale = res  # scale None (1/√d_k, not an input) has no cotangent
    g = attention_backward(params, x, cache, g_y)
    g_scale = None if scale is None else g.scale.astype(scale.dtype)
    return g.params, g.x, jnp.zeros_like(allowed, dtype=jax.dtypes.float0), g.bias, g_scale


_attention_cf.defvjp(_attention_cf_fwd, _attention_cf_bwd)


def self_attention_closed_form(params: AttentionParams, x: ArrayLike, causal: bool = False,
                               key_mask: ArrayLike | None = None, bias: ArrayLike | None = None,
                               scale: float | None = None) -> jax.Array:
    """`self_attention` whose gradient under `jax.grad` is the closed-form VJP rather than XLA's autodiff: for
    the parameters, x, the additive score bias (∂ℓ/∂B = G_S, e.g. T5's relative-position table through its
    gather) and the score scale."""
    x, key_mask = _check(params, x, key_mask)
    bias = _check_bias(params, x, bias)
    # None stays None, so the forward divides by √d_k exactly as `self_attention` does
    s = None if scale is None else jnp.asarray(score_factor(scale, params.w_q.shape[-1]), x.dtype)
    return _attention_cf(params, x, attention_mask(x.shape[0], causal, key_mask), bias, s)

"""T3: the closed-form VJP of self-attention against autodiff (in the run dtype and in float64), the masks both
ways, the documented value of a query that sees no key, the key-bias gradient (T3b) and centred keys (T3c)."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from isojax import attention as att
from isojax.theory.harness import CheckRow, Timings, _hashable, eps, normals, rel, row, run_program, uniform

__all__ = ["T3_CONFIGS", "reference_mask", "mask_pattern", "t3_attention", "t3_float64", "check_t3"]


def _leafwise_rel(closed, auto):
    """Worst per-leaf relative error, each leaf's norm floored at 1e-2 of the whole gradient's."""
    leaves_c, leaves_a = jax.tree.leaves(closed), jax.tree.leaves(auto)
    total = jnp.sqrt(sum(jnp.sum(a**2) for a in leaves_a))
    errs = [jnp.linalg.norm((c - a).ravel()) / jnp.maximum(jnp.linalg.norm(a.ravel()), 1e-2 * total)
            for c, a in zip(leaves_c, leaves_a, strict=True)]
    return jnp.max(jnp.stack(errs))


def reference_mask(length: int, causal: bool, key_mask: ArrayLike | None = None) -> jax.Array:
    """The mask T3 describes, one (query, key) pair at a time: i may see j iff (not causal or j ≤ i) and key j
    is not padding. The loop reference for `attention.attention_mask`. -> [T, T] bool"""
    visible = jnp.ones((length,), bool) if key_mask is None else key_mask
    return jnp.stack([jnp.stack([visible[j] & (not causal or j <= i) for j in range(length)])
                      for i in range(length)])


def mask_pattern(forward: Callable, params: att.AttentionParams, x: ArrayLike, causal: bool,
                 key_mask: ArrayLike | None) -> jax.Array:
    """The pairs (i, j) where y_i moves when x_j moves through the keys and values only: W_Q is set to 0, so
    the queries do not depend on x, and one forward-mode derivative per position j gives the blocks
    ∂y_i/∂x_j (non-zero iff query i attends to key j, for generic inputs). -> [T, T] bool"""
    p0 = params.replace(w_q=jnp.zeros_like(params.w_q))
    length, d = x.shape
    direction = jnp.linspace(1.0, 2.0, d, dtype=x.dtype)

    def moved(j):
        x_dot = jnp.zeros_like(x).at[j].set(direction)
        return jax.jvp(lambda x_: forward(p0, x_, causal, key_mask)[0], (x,), (x_dot,))[1]

    tangents = jax.vmap(moved)(jnp.arange(length))  # [j, i, d]
    return jnp.any(tangents != 0, axis=-1).T


def t3_attention(params: att.AttentionParams, x: ArrayLike, g_y: ArrayLike, causal: bool, key_mask: ArrayLike | None,
                 *, forward: Callable = att.attention_forward, backward: Callable = att.attention_backward,
                 attend: Callable = att.attend, mask: Callable = att.attention_mask) -> dict[str, jax.Array]:
    """T3 for one instance: closed-form VJP vs jax.vjp of `forward`; rows of G_S; the masks both ways; a query
    with no visible key; the key-bias gradient; query gradients through centred keys; translation of every key
    by a common vector. -> dict of scalars."""
    eps_ = eps()
    fwd = lambda p, x_: forward(p, x_, causal, key_mask)[0]
    y, vjp = jax.vjp(fwd, params, x)
    auto_p, auto_x = vjp(g_y)
    _, cache = forward(params, x, causal, key_mask)
    closed = backward(params, x, cache, g_y)
    total = jnp.sqrt(sum(jnp.sum(a**2) for a in jax.tree.leaves((auto_p, auto_x))))
    # Each row of G_S sums to (1 - Σ_j A_ij)·Σ_j A_ij G_A_ij: rounding of order eps·Σ_j |A_ij G_A_ij|, which is
    # 0 only when the row is exactly 0 (a row with one key, or none), so 0/0 counts as 0.
    g_a = jnp.einsum("td,hvd,hsv->hts", g_y, params.w_o, cache.v)
    row_scale = jnp.sum(jnp.abs(cache.a * g_a), axis=-1)
    row_sum = jnp.abs(closed.scores.sum(-1))
    out = {
        "t3a": _leafwise_rel((closed.params, closed.x), (auto_p, auto_x)) / eps_,
        "t3a_rows": jnp.max(jnp.where(row_sum == 0, 0.0, row_sum / (eps_ * row_scale))),
    }
    reference = reference_mask(x.shape[0], causal, key_mask)
    out["t3_mask_set"] = jnp.sum(mask(x.shape[0], causal, key_mask) != reference)
    out["t3_mask_jacobian"] = jnp.sum(mask_pattern(forward, params, x, causal, key_mask) != reference)
    # A query with no visible key: weights 0, output b_O exactly, zero gradients through its row (documented
    # in attention.attend), and nothing non-finite anywhere.
    blind = ~jnp.any(reference, axis=-1)  # [T]
    b_o = jnp.zeros_like(y[0]) if params.b_o is None else params.b_o
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves((y, auto_p, auto_x, closed))]))
    out["t3_blind"] = jnp.where(finite, 0.0, jnp.inf) + jnp.sum(jnp.where(blind[:, None], jnp.abs(y - b_o), 0.0)) \
        + jnp.sum(jnp.where(blind[None, :, None], jnp.abs(cache.a), 0.0)) \
        + jnp.sum(jnp.where(blind[None, :, None], jnp.abs(closed.scores), 0.0))
    if params.b_k is not None:
        # a fixed, generic shift δ (no random draw: each one compiles a hash into the program)
        shift = 3.0 + jnp.cos(1.7 * jnp.arange(params.b_k.size, dtype=params.b_k.dtype)).reshape(params.b_k.shape)
        y_shift = fwd(params.replace(b_k=params.b_k + shift), x)
        out["t3b_auto"] = jnp.linalg.norm(auto_p.b_k) / total / eps_
        out["t3b_closed"] = jnp.linalg.norm(closed.params.b_k) / total / eps_
        out["t3b_forward"] = rel(y_shift, y) / eps_
    # T3c: gradients w.r.t. the queries, by autodiff through the scores, against G_S (K - 1k̄ᵀ)/√d_k.
    q, k, v = cache.q, cache.k, cache.v
    allowed = mask(x.shape[0], causal, key_mask)
    mix = lambda q_, k_: jnp.einsum("htv,hvd->td", attend(q_, k_, v, allowed)[0], params.w_o)
    g_q = jax.vjp(lambda q_: mix(q_, k), q)[1](g_y)[0]
    k_bar = 10.0 * jnp.max(jnp.abs(k)) * jnp.ones((k.shape[0], 1, k.shape[2]), k.dtype)
    centred = jnp.einsum("hts,hsk->htk", closed.scores, k - k_bar) / math.sqrt(k.shape[-1])
    g_q_moved = jax.vjp(lambda q_: mix(q_, k + k_bar), q)[1](g_y)[0]
    # Σ_j G_S[i,j] k̄ cancels only up to rounding of the terms themselves, eps·|G_S||K - k̄|/√d_k, which can be
    # far larger than ‖G_Q‖; the softmax of the shifted scores adds rounding of order eps·|q·k̄| on top (seed 21
    # of seeds 0-99 reaches 1.8e3 in this unit, the tolerance is 4096).
    terms = jnp.linalg.norm(jnp.einsum("hts,hsk->htk", jnp.abs(closed.scores), jnp.abs(k - k_bar)))
    terms = terms / math.sqrt(k.shape[-1])
    unit_q = eps_ * (jnp.linalg.norm(g_q) + terms)
    per_unit = lambda err: jnp.where(err == 0, 0.0, err / unit_q)  # 0/0 when every query is blind
    out["t3c_centred"] = per_unit(jnp.linalg.norm(centred - g_q))
    out["t3c_translate_grad"] = per_unit(jnp.linalg.norm(g_q_moved - g_q))
    out["t3c_translate_out"] = rel(mix(q, k + k_bar), mix(q, k)) / eps_
    # the same for `attend` itself: zero weights and output on blind rows, finite everywhere, zero G_Q there
    o_att, a_att = attend(q, k, v, allowed)
    out["t3_blind"] = out["t3_blind"] + jnp.sum(jnp.where(blind[None, :, None], jnp.abs(g_q), 0.0)) \
        + jnp.sum(jnp.where(blind[None, :, None], jnp.abs(o_att), 0.0)) \
        + jnp.sum(jnp.where(blind[None, :, None], jnp.abs(a_att), 0.0)) \
        + jnp.where(jnp.all(jnp.isfinite(o_att)) & jnp.all(jnp.isfinite(a_att)), 0.0, jnp.inf)
    return out


def t3_float64(params: att.AttentionParams, x: ArrayLike, g_y: ArrayLike, causal: bool, key_mask: ArrayLike | None,
               closed_run: tuple[att.AttentionParams, jax.Array], *, forward: Callable = att.attention_forward,
               backward: Callable = att.attention_backward, run_eps: float) -> dict[str, jax.Array]:
    """T3a in float64 (call under jax.enable_x64 with float64 inputs): the float64 closed form against float64
    jax.vjp (relative error, docs/theory.md asks ≤ 1e-10), and the run-dtype closed form `closed_run` (cast to float64)
    against the same float64 autodiff, in units of the run dtype's eps."""
    fwd = lambda p, x_: forward(p, x_, causal, key_mask)[0]
    _, vjp = jax.vjp(fwd, params, x)
    auto = vjp(g_y)
    _, cache = forward(params, x, causal, key_mask)
    closed = backward(params, x, cache, g_y)
    return {"f64": _leafwise_rel((closed.params, closed.x), auto),
            "run_vs_f64": _leafwise_rel(closed_run, auto) / run_eps}


# The first two are the configurations the gradient-structure experiment uses; the rest add padding, no biases,
# d_v ≠ d_k, and (the last) queries that may see no key at all.
T3_CONFIGS = [
    dict(length=5, d_model=6, heads=1, d_k=3, causal=False, bias=True, padded=False),
    dict(length=8, d_model=8, heads=2, d_k=4, causal=True, bias=True, padded=False),
    dict(length=7, d_model=12, heads=3, d_k=5, d_v=3, causal=False, bias=True, padded=True),
    dict(length=16, d_model=16, heads=4, d_k=4, d_v=6, causal=True, bias=True, padded=True),
    dict(length=6, d_model=8, heads=2, d_k=4, d_v=2, causal=True, bias=False, padded=False),
    dict(length=6, d_model=8, heads=2, d_k=3, d_v=5, causal=True, bias=True, padded=True, blind=True),
]


def _draw(k, length, d_model, heads, d_k, causal, bias, padded, d_v=None, blind=False):
    """One T3 instance: Glorot-scaled weights (as `attention.init_attention`), biases 0.1·N(0, 1), x and the
    output cotangent N(0, 1), and a padding mask; all from one normal and one uniform draw (`normals`)."""
    d_v = d_k if d_v is None else d_v
    k_normal, k_mask = jax.random.split(k)
    shapes = [(heads, d_model, d_k), (heads, d_model, d_k), (heads, d_model, d_v), (heads, d_v, d_model),
              (length, d_model), (length, d_model)]
    if bias:
        shapes += [(heads, d_k), (heads, d_k), (heads, d_v), (d_model,)]
    w_q, w_k, w_v, w_o, x, g_y, *biases = normals(k_normal, *shapes)
    params = att.AttentionParams(w_q=w_q / math.sqrt(d_model), w_k=w_k / math.sqrt(d_model),
                                 w_v=w_v / math.sqrt(d_model), w_o=w_o / math.sqrt(heads * d_v))
    if bias:
        params = params.replace(**{name: 0.1 * b for name, b in zip(("b_q", "b_k", "b_v", "b_o"), biases, strict=True)})
    key_mask = None
    if padded and blind:  # half the keys padded, key 0 included: queries that see no key are common
        key_mask = uniform(k_mask, (length,)) < 0.5
    elif padded:  # key 0 always visible, so every query sees a key
        key_mask = (uniform(k_mask, (length,)) < 0.7).at[0].set(True)
    return params, x, g_y, key_mask


def check_t3(key: jax.Array, n: int = 1000, configs: list[dict] | None = None, timings: Timings | None = None,
             **impl) -> list[CheckRow]:
    """T3a–c over random multi-head, masked (causal, padding, both, none), biased and unbiased instances, with
    d_v ≠ d_k and queries that see no key; T3a also against float64 autodiff."""
    timings = timings or Timings()
    configs = configs or T3_CONFIGS
    per = -(-n // len(configs))
    key_sets = [jax.random.split(jax.random.fold_in(key, i), per) for i in range(len(configs))]
    f64_impl = {name: f for name, f in impl.items() if name in ("forward", "backward")}

    def program(*key_sets):
        outs = []
        for cfg, ks in zip(configs, key_sets, strict=True):
            def one(k, cfg=cfg):
                params, x, g_y, key_mask = _draw(k, **cfg)
                res = t3_attention(params, x, g_y, cfg["causal"], key_mask, **impl)
                _, cache = impl.get("forward", att.attention_forward)(params, x, cfg["causal"], key_mask)
                closed = impl.get("backward", att.attention_backward)(params, x, cache, g_y)
                return res, (params, x, g_y, key_mask, (closed.params, closed.x))
            outs.append(jax.lax.map(one, ks))
        return outs

    cache_key = (_hashable(configs), _hashable(impl), per)
    outs = run_program("T3", program, key_sets, cache_key, timings)
    res = {name: np.concatenate([o[0][name] for o in outs if name in o[0]])
           for name in set().union(*(o[0] for o in outs))}

    run_eps = eps()

    def program64(*inputs):
        results = []
        for cfg, (params, x, g_y, key_mask, closed_run) in zip(configs, inputs, strict=True):
            def one(args, cfg=cfg):
                return t3_float64(*args[:3], cfg["causal"], args[3], args[4], run_eps=run_eps, **f64_impl)
            results.append(jax.lax.map(one, (params, x, g_y, key_mask, closed_run)))
        return results

    with jax.enable_x64(True):
        inputs = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if np.issubdtype(a.dtype, np.floating)
                              else jnp.asarray(a), [o[1] for o in outs])
        outs64 = run_program("T3-f64", program64, inputs, (cache_key, run_eps), timings)
    f64 = {name: np.concatenate([o[name] for o in outs64]) for name in outs64[0]}
    ue, uq = "rel/eps", "eps·(‖G_Q‖+‖|G_S||K-k̄|‖/√d_k)"
    # Statement-level rows (exact or invariances) come first, the value rows after them, so each broken
    # implementation in tests/theory_mutations.py is reported by the row that names its mistake.
    return [
        row("T3", "attention_mask = loop reference (causal, padding)", "pairs", res["t3_mask_set"], 0.0),
        row("T3", "pairs with ∂y_i/∂x_j ≠ 0 via K, V = the mask", "pairs", res["t3_mask_jacobian"], 0.0),
        row("T3", "query seeing no key: y_i = b_O, A_i = 0, zero grads", "abs", res["t3_blind"], 0.0),
        row("T3b", "∂ℓ/∂b_K = 0 by autodiff", ue, res["t3b_auto"], 8.0),
        row("T3b", "∂ℓ/∂b_K = 0 in closed form", ue, res["t3b_closed"], 8.0),
        row("T3b", "output unchanged by b_K -> b_K + δ", ue, res["t3b_forward"], 64.0),
        row("T3a", "rows of G_S sum to 0", "eps·Σ_j|A_ij G_A_ij|", res["t3a_rows"], 16.0),
        row("T3a", "closed-form VJP vs jax.vjp, every parameter and x", ue, res["t3a"], 1024.0),
        row("T3a", "run-dtype closed form vs float64 jax.vjp", "rel/eps(run)", f64["run_vs_f64"], 1024.0),
        row("T3a", "float64 closed form vs float64 jax.vjp (docs/theory.md: ≤ 1e-10)", "rel", f64["f64"], 4e-13),
        row("T3c", "G_Q unchanged by K -> K + 1cᵀ", uq, res["t3c_translate_grad"], 4096.0),
        row("T3c", "O unchanged by K -> K + 1cᵀ", ue, res["t3c_translate_out"], 512.0),
        row("T3c", "G_Q = G_S(K - 1k̄ᵀ)/√d_k for any k̄", uq, res["t3c_centred"], 4096.0),
    ]

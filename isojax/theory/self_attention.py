"""T3: self-attention's gradients, through every entry point the models use: the forward and the closed-form VJP
(`attention_forward`, `attention_backward`), the wrapper the transformer runs (`self_attention`), the closed-form
custom_vjp (`self_attention_closed_form`) and `attend`, with the score scale and the additive score bias as
parameters of the statement (1/√d_k, T5's 1 with a relative-position bias, ALiBi, 1/d_k with any bias). Every
value is compared with a float64 NumPy attention written as a loop over heads and queries (`reference.attention`,
`reference.attention_grads`); the closed form also with `jax.vjp` of the forward and in float64; the masks both
ways; the documented value of a query that sees no key; the key-bias gradient (T3b) and centred keys (T3c)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from isojax import attention as att
from isojax.theory import reference as R
from isojax.theory.harness import (
    CheckRow,
    Timings,
    eps,
    evaluate,
    f64,
    modes_text,
    normals,
    residuals_over,
    row,
    uniform,
)

__all__ = ["T3_CONFIGS", "SCORES", "mask_pattern", "t3_attention", "score_bias", "check_t3"]

FIELDS = ("w_q", "w_k", "w_v", "w_o", "b_q", "b_k", "b_v", "b_o")

# The score options the models use: (scale, additive bias). Scale None is 1/√d_k; "1/d_k" is 1/d_k. Biases:
# "relative" a random table over the offset j - i (T5's relative positions, one value per head and offset),
# "alibi" -m_h·|i - j| with ALiBi's slopes m_h = 2^(-8h/H), "random" any bias 0.5·N(0, 1) [H, T, T]. None of them
# depends on the keys' content, as T3c requires.
SCORES = {"default": (None, None), "t5": (1.0, "relative"), "alibi": (None, "alibi"), "inv_dk": ("1/d_k", "random")}


def score_bias(kind: str | Callable | None, heads: int, length: int, key: jax.Array,
               dtype: jnp.dtype) -> jax.Array | None:
    """The additive score bias [H, T, T] of a T3 instance: one of SCORES' kinds (drawn from `key` where
    random), or a callable (heads, length) -> [H, T, T] (a user's statement parameter), or None."""
    if kind is None:
        return None
    if callable(kind):
        return jnp.asarray(kind(heads, length), dtype)
    offset = jnp.arange(length)[None, :] - jnp.arange(length)[:, None]  # j - i
    if kind == "relative":
        table = jax.random.normal(key, (2 * length - 1, heads), dtype)
        return jnp.transpose(table[offset + length - 1], (2, 0, 1))
    if kind == "alibi":
        slopes = 2.0 ** (-8.0 * jnp.arange(1, heads + 1, dtype=dtype) / heads)
        return -slopes[:, None, None] * jnp.abs(offset).astype(dtype)[None]
    if kind == "random":
        return 0.5 * jax.random.normal(key, (heads, length, length), dtype)
    raise ValueError(f"unknown score bias kind {kind!r}; choose from relative, alibi, random or a callable")


def _scale(scale, d_k: int) -> float | None:
    return 1.0 / d_k if scale == "1/d_k" else scale(d_k) if callable(scale) else scale


def mask_pattern(forward: Callable, params: att.AttentionParams, x: ArrayLike, causal: bool,
                 key_mask: ArrayLike | None, **options) -> jax.Array:
    """The pairs (i, j) where y_i moves when x_j moves through the keys and values only: W_Q is set to 0, so
    the queries do not depend on x, and one forward-mode derivative per position j gives the blocks
    ∂y_i/∂x_j (non-zero iff query i attends to key j, for generic inputs). -> [T, T] bool"""
    p0 = params.replace(w_q=jnp.zeros_like(params.w_q))
    length, d = x.shape
    direction = jnp.linspace(1.0, 2.0, d, dtype=x.dtype)

    def moved(j):
        x_dot = jnp.zeros_like(x).at[j].set(direction)
        return jax.jvp(lambda x_: forward(p0, x_, causal, key_mask, **options)[0], (x,), (x_dot,))[1]

    tangents = jax.vmap(moved)(jnp.arange(length))  # [j, i, d]
    return jnp.any(tangents != 0, axis=-1).T


def t3_attention(params: att.AttentionParams, x: ArrayLike, g_y: ArrayLike, causal: bool, key_mask: ArrayLike | None,
                 *, forward: Callable = att.attention_forward,
                 backward: Callable = att.attention_backward) -> dict[str, jax.Array]:
    """T3a and T3b for one instance in JAX (for experiments/gradient_structure.py; `isojax check` computes its
    rows on the host): the closed-form VJP against jax.vjp of the forward ("t3a", worst per-leaf relative
    error over eps) and ∂ℓ/∂b_K by autodiff ("t3b_auto", relative to the whole gradient, over eps)."""
    e = jnp.finfo(x.dtype).eps
    y, vjp = jax.vjp(lambda p, x_: forward(p, x_, causal, key_mask)[0], params, x)
    auto = vjp(g_y)
    _, cache = forward(params, x, causal, key_mask)
    closed = backward(params, x, cache, g_y)
    leaves_c, leaves_a = jax.tree.leaves((closed.params, closed.x)), jax.tree.leaves(auto)
    total = jnp.sqrt(sum(jnp.sum(a**2) for a in leaves_a))
    errs = [jnp.linalg.norm((c - a).ravel()) / jnp.maximum(jnp.linalg.norm(a.ravel()), 1e-2 * total)
            for c, a in zip(leaves_c, leaves_a, strict=True)]
    return {"t3a": jnp.max(jnp.stack(errs)) / e, "t3b_auto": jnp.linalg.norm(auto[0].b_k) / total / e}


# The first two are the configurations the gradient-structure experiment uses; the rest add padding, no biases,
# d_v ≠ d_k, (the last) queries that may see no key at all, and every score option of SCORES. One is vmapped and
# one called eagerly (harness.evaluate).
T3_CONFIGS = [
    dict(length=5, d_model=6, heads=1, d_k=3, causal=False, bias=True, padded=False),
    dict(length=8, d_model=8, heads=2, d_k=4, causal=True, bias=True, padded=False),
    dict(length=7, d_model=12, heads=3, d_k=5, d_v=3, causal=False, bias=True, padded=True, scores="t5", _vmap=True),
    dict(length=16, d_model=16, heads=4, d_k=4, d_v=6, causal=True, bias=True, padded=True, scores="alibi"),
    dict(length=6, d_model=8, heads=2, d_k=4, d_v=2, causal=True, bias=False, padded=False, scores="inv_dk"),
    dict(length=6, d_model=8, heads=2, d_k=3, d_v=5, causal=True, bias=True, padded=True, blind=True, scores="t5",
         _eager=2),
]


def _options(cfg: dict) -> tuple[float | None, str | Callable | None]:
    """(scale, bias kind) of a config: its own "scores" option, or the statement's "scale"/"bias_fn"."""
    if cfg.get("scores") == "given":
        return _scale(cfg.get("scale"), cfg["d_k"]), cfg.get("bias_fn")
    scale, bias = SCORES[cfg.get("scores", "default")]
    return _scale(scale, cfg["d_k"]), bias


def _draw_t3(length, d_model, heads, d_k, causal, bias, padded, d_v=None, blind=False, scores="default",
             scale=None, bias_fn=None):
    """One T3 instance: weights and biases by `attention.init_from_normal` (init_attention's rule), x and the
    output cotangent N(0, 1), a padding mask and the score bias; the check's own projections Q, K, V, mask and
    per-head output cotangents for T3c; all from one normal and one uniform draw (`normals`)."""
    d_v = d_k if d_v is None else d_v
    scale, bias_kind = _options(dict(scores=scores, scale=scale, bias_fn=bias_fn, d_k=d_k))
    s = 1.0 / math.sqrt(d_k) if scale is None else scale

    def one(k):
        k_normal, k_mask, k_bias = jax.random.split(k, 3)
        shapes = [(heads, d_model, d_k), (heads, d_model, d_k), (heads, d_model, d_v), (heads, d_v, d_model),
                  (length, d_model), (length, d_model)]
        if bias:
            shapes += [(heads, d_k), (heads, d_k), (heads, d_v), (d_model,)]
        w_q, w_k, w_v, w_o, x, g_y, *biases = normals(k_normal, *shapes)
        raw = att.AttentionParams(w_q=w_q, w_k=w_k, w_v=w_v, w_o=w_o,
                                  **dict(zip(("b_q", "b_k", "b_v", "b_o"), biases, strict=False)))
        params = att.init_from_normal(raw)
        key_mask = None
        if padded and blind:  # half the keys padded, key 0 included: queries that see no key are common
            key_mask = uniform(k_mask, (length,)) < 0.5
        elif padded:  # key 0 always visible, so every query sees a key
            key_mask = (uniform(k_mask, (length,)) < 0.7).at[0].set(True)
        b_scores = score_bias(bias_kind, heads, length, k_bias, x.dtype)
        proj = lambda w, b_: jnp.einsum("td,hdk->htk", x, w) + (0.0 if b_ is None else b_[:, None, :])
        q, k_, v = proj(params.w_q, params.b_q), proj(params.w_k, params.b_k), proj(params.w_v, params.b_v)
        allowed = jnp.ones((length, length), bool)
        allowed = jnp.tril(allowed) if causal else allowed
        allowed = allowed if key_mask is None else allowed & key_mask[None, :]
        out = dict(params=params, x=x, g_y=g_y, key_mask=key_mask, bias=b_scores, q=q, k=k_, v=v, allowed=allowed,
                   g_o=jnp.einsum("td,hvd->htv", g_y, params.w_o),
                   k_bar=10.0 * jnp.max(jnp.abs(k_)) * jnp.ones((heads, 1, d_k), x.dtype), scale=jnp.asarray(s))
        if bias:
            # a fixed, generic shift δ of b_K (no random draw: each one compiles a hash into the program)
            shift = 3.0 + jnp.cos(1.7 * jnp.arange(heads * d_k, dtype=x.dtype)).reshape(heads, d_k)
            out["params_shift"] = params.replace(b_k=params.b_k + shift)
        return out
    return one


_DEFAULTS = dict(forward=att.attention_forward, backward=att.attention_backward, attend=att.attend,
                 mask=att.attention_mask, self_attention=att.self_attention,
                 closed_form=att.self_attention_closed_form)


def _fns(impl: dict) -> dict:
    unknown = set(impl) - set(_DEFAULTS)
    if unknown:
        raise ValueError(f"check_t3 got unknown implementation functions {sorted(unknown)}; it takes "
                         f"{sorted(_DEFAULTS)}")
    return {**_DEFAULTS, **impl}


def _direct_t3(cfg, impl):
    f = _fns(impl)
    causal = cfg["causal"]
    scale, _ = _options(cfg)

    def direct(x, eager=False):  # eager: no second call of forward and attend (each eager call compiles its ops)
        opts = dict(bias=x["bias"], scale=scale)
        params, inp, km = x["params"], x["x"], x["key_mask"]
        y, cache = f["forward"](params, inp, causal, km, **opts)
        closed = f["backward"](params, inp, cache, x["g_y"])
        o_att, a_att = f["attend"](x["q"], x["k"], x["v"], x["allowed"], **opts)
        out = dict(y=y, a=cache.a, v=cache.v, closed=closed.params, closed_x=closed.x, scores=closed.scores,
                   closed_bias=getattr(closed, "bias", None) if x["bias"] is not None else None,
                   y_sa=f["self_attention"](params, inp, causal, km, **opts),
                   mask=f["mask"](inp.shape[0], causal, km), o_att=o_att, a_att=a_att)
        if not eager:
            out["o_moved"] = f["attend"](x["q"], x["k"] + x["k_bar"], x["v"], x["allowed"], **opts)[0]
            if "params_shift" in x:
                out["y_shift"] = f["forward"](x["params_shift"], inp, causal, km, **opts)[0]
        return out
    return direct


def _traced_t3(cfg, impl):
    f = _fns(impl)
    causal = cfg["causal"]
    scale, _ = _options(cfg)

    def traced(x):
        opts = dict(bias=x["bias"], scale=scale)
        params, inp, km, g_y = x["params"], x["x"], x["key_mask"], x["g_y"]
        auto_p, auto_x = jax.vjp(lambda p, x_: f["forward"](p, x_, causal, km, **opts)[0], params, inp)[1](g_y)
        g_q = lambda k_: jax.vjp(lambda q_: f["attend"](q_, k_, x["v"], x["allowed"], **opts)[0], x["q"])[1](
            x["g_o"])[0]
        cf = lambda p, x_, b: f["closed_form"](p, x_, causal, km, bias=b, scale=scale)
        cf_p, cf_x, cf_b = jax.vjp(cf, params, inp, x["bias"])[1](g_y)
        return dict(auto=auto_p, auto_x=auto_x, pattern=mask_pattern(f["forward"], params, inp, causal, km, **opts),
                    g_q=g_q(x["k"]), g_q_moved=g_q(x["k"] + x["k_bar"]), cf=cf_p, cf_x=cf_x, cf_bias=cf_b)
    return traced


def _params(tree) -> dict:
    """AttentionParams (numpy leaves with an instance axis) -> {field: array or None}."""
    return {name: getattr(tree, name) for name in FIELDS}


def _leafwise_rel(closed: dict, ref: dict) -> np.ndarray:
    """Worst per-leaf relative error over the fields both have, each leaf's norm floored at 1e-2 of the whole
    reference gradient's (a leaf that is ~0, like ∂ℓ/∂b_K, is measured against the gradient's size). A field
    the reference has and `closed` lacks is an error (inf). -> [n]"""
    names = [k for k, v in ref.items() if v is not None]
    n = len(ref[names[0]])
    norm = lambda a: np.linalg.norm(f64(a).reshape(n, -1), axis=1)
    total = np.sqrt(sum(norm(ref[k]) ** 2 for k in names))
    errs = [norm(f64(closed[k]) - f64(ref[k])) / np.maximum(norm(ref[k]), 1e-2 * total)
            if closed.get(k) is not None else np.full(n, np.inf) for k in names]
    return np.max(np.stack(errs), axis=0)


def _reference(cfg, x) -> dict:
    """The mask, y and every gradient of the float64 NumPy attention on a batch of instances."""
    n, length = x["x"].shape[:2]
    allowed = np.broadcast_to(R.mask(length, cfg["causal"], x["key_mask"]), (n, length, length))
    p = _params(x["params"])
    scale, _ = _options(cfg)
    y = R.attention(p, x["x"], allowed, x["bias"], scale)
    return dict(allowed=allowed, y=y, grads=R.attention_grads(p, x["x"], x["g_y"], allowed, x["bias"], scale))


def _residuals_t3(cfg, x, v, t, ref):
    e = eps()
    n = len(x["x"])
    allowed, y_ref, g_ref = ref["allowed"], ref["y"], ref["grads"]
    rel = lambda a, b: np.linalg.norm((f64(a) - f64(b)).reshape(n, -1), axis=1) / np.maximum(
        np.linalg.norm(f64(b).reshape(n, -1), axis=1), np.finfo(float).tiny)
    flat = lambda a: np.abs(f64(a)).reshape(n, -1)
    ref_grads = {k: g_ref.get(k) for k in FIELDS}
    closed = {**_params(v["closed"]), "x": v["closed_x"]}
    ref_x = {**ref_grads, "x": g_ref["x"]}
    if x["bias"] is not None:
        closed["bias"], ref_x["bias"] = v["closed_bias"], g_ref["bias"]
    out = {
        "mask_set": np.sum(np.asarray(v["mask"]) != allowed, axis=(1, 2)),
        "forward": rel(v["y"], y_ref) / e,
        "self_attention": rel(v["y_sa"], y_ref) / e,
        "backward": _leafwise_rel(closed, ref_x) / e,
    }
    blind = ~np.any(allowed, axis=-1)  # [n, T]
    b_o = 0.0 if x["params"].b_o is None else f64(x["params"].b_o)[:, None, :]
    on_blind = lambda a: np.sum(np.where(blind[:, None, :, None], np.abs(f64(a)), 0.0), axis=(1, 2, 3))  # [n,H,T,·]
    leaves = [v["y"], v["o_att"], v["a_att"], v["scores"], *[b for b in closed.values() if b is not None]]
    finite = np.all(np.concatenate([np.isfinite(flat(a)) for a in leaves], axis=1), axis=1)
    out["blind"] = (np.where(finite, 0.0, np.inf) + np.sum(np.where(blind[..., None], np.abs(f64(v["y"]) - b_o), 0.0),
                                                          axis=(1, 2))
                    + on_blind(v["a"]) + on_blind(v["scores"]) + on_blind(v["o_att"]) + on_blind(v["a_att"]))
    # rows of G_S sum to (1 - Σ_j A_ij)·Σ_j A_ij G_A_ij: rounding of order eps·Σ_j |A_ij G_A_ij|, which is 0 only
    # when the row is exactly 0 (a row with one key, or none), so 0/0 counts as 0
    g_a = np.einsum("ntd,nhvd,nhsv->nhts", f64(x["g_y"]), f64(x["params"].w_o), f64(v["v"]))
    row_scale = np.sum(np.abs(f64(v["a"]) * g_a), axis=-1)
    row_sum = np.abs(f64(v["scores"]).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rows"] = np.max(np.where(row_sum == 0, 0.0, row_sum / (e * row_scale)).reshape(n, -1), axis=1)
    for name in ("t3b_closed", "t3b_forward", "t3b_auto"):  # rows about b_K: not for configs without biases
        out[name] = np.full(n, -np.inf)
    if "y_shift" in v:
        out["t3b_closed"] = np.linalg.norm(f64(closed["b_k"]).reshape(n, -1), axis=1) / np.sqrt(
            sum(np.sum(f64(g).reshape(n, -1) ** 2, 1) for k, g in ref_x.items() if g is not None and k != "bias")) / e
        out["t3b_forward"] = rel(v["y_shift"], v["y"]) / e
    if t is not None:
        auto = {**_params(t["auto"]), "x": t["auto_x"]}
        out["t3a"] = _leafwise_rel(closed, auto) / e
        out["mask_jacobian"] = np.sum(np.asarray(t["pattern"]) != allowed, axis=(1, 2))
        out["blind"] = out["blind"] + on_blind(t["g_q"])
        out["blind"] = out["blind"] + np.where(
            np.all(np.concatenate([np.isfinite(flat(a)) for a in jax.tree.leaves((t["auto"], t["auto_x"]))], 1), 1),
            0.0, np.inf)
        cf = {**_params(t["cf"]), "x": t["cf_x"]}
        if x["bias"] is not None:
            cf["bias"] = t["cf_bias"]
        out["custom_vjp"] = _leafwise_rel(cf, ref_x) / e
        if "y_shift" in v:
            total = np.sqrt(sum(np.sum(f64(a).reshape(n, -1) ** 2, 1) for a in auto.values() if a is not None))
            out["t3b_auto"] = np.linalg.norm(f64(auto["b_k"]).reshape(n, -1), axis=1) / total / e
        # T3c: G_Q by autodiff through `attend` against s·G_S (K - 1k̄ᵀ); Σ_j G_S[i,j] k̄ cancels only up to the
        # rounding of the terms themselves, eps·|s|·|G_S||K - k̄|, which can be far larger than ‖G_Q‖
        s = np.abs(f64(x["scale"]))[:, None, None, None]
        k_moved = f64(x["k"]) - f64(x["k_bar"])
        centred = s * np.einsum("nhts,nhsk->nhtk", f64(v["scores"]), k_moved)
        terms = np.linalg.norm((s * np.einsum("nhts,nhsk->nhtk", np.abs(f64(v["scores"])), np.abs(k_moved)))
                               .reshape(n, -1), axis=1)
        g_q = f64(t["g_q"])
        unit_q = e * (np.linalg.norm(g_q.reshape(n, -1), axis=1) + terms)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_unit = lambda err: np.where(err == 0, 0.0, err / unit_q)  # 0/0 when every query is blind
            out["t3c_centred"] = per_unit(np.linalg.norm((centred - g_q).reshape(n, -1), axis=1))
            out["t3c_translate_grad"] = per_unit(np.linalg.norm((f64(t["g_q_moved"]) - g_q).reshape(n, -1), axis=1))
    out["t3c_translate_out"] = rel(v["o_moved"], v["o_att"]) / e if "o_moved" in v else np.full(n, -np.inf)
    return out


def check_t3(key: jax.Array, n: int = 1000, configs: list[dict] | None = None, timings: Timings | None = None,
             options: dict | None = None, **impl) -> list[CheckRow]:
    """T3a–c over random multi-head, masked (causal, padding, both, none), biased and unbiased instances, with
    d_v ≠ d_k, queries that see no key and the score options of SCORES, against a float64 NumPy attention.

    impl: forward(params, x, causal, key_mask, bias=, scale=) -> (y, AttentionCache), backward(params, x, cache,
    g_y) -> AttentionGrads, attend(q, k, v, allowed, bias=, scale=) -> (o, a), mask(T, causal, key_mask),
    self_attention(params, x, causal, key_mask, bias=, scale=) -> y, closed_form (same, with a custom VJP); each
    defaults to isojax's. options: the statement's parameters for every config, {"scale": a number, a callable
    d_k -> number or None (1/√d_k), "bias": a callable (heads, length) -> [H, T, T] or None}; None: each config's
    own "scores" (SCORES), honoured by isojax's functions through their `bias` and `scale` arguments."""
    timings = timings or Timings()
    configs = configs or T3_CONFIGS
    if options is not None:
        configs = [dict(cfg, scores="given", scale=options.get("scale"), bias_fn=options.get("bias"))
                   for cfg in configs]
    _fns(impl)
    evs = evaluate("T3", _draw_t3, _direct_t3, key, n, configs, timings, impl, traced=_traced_t3)
    res = residuals_over(evs, _residuals_t3, timings, prepare=_reference)
    t5 = np.concatenate([worst["custom_vjp"] for ev, worst in zip(evs, _per_config(evs, res), strict=True)
                         if ev.cfg.get("scores") == "t5"]) if any(ev.cfg.get("scores") == "t5" for ev in evs) else None
    ue, uq = "rel/eps", "eps·(‖G_Q‖+|s|‖|G_S||K-k̄|‖)"
    m, mt = modes_text(evs), modes_text(evs, eager=False)
    with_b = [ev for ev in evs if ev.cfg.get("bias", True)]
    mb = modes_text(with_b) if with_b else m
    both = ("forward", "backward")
    # Statement-level rows (exact or invariances) come first, the value rows after them, so each broken
    # implementation in tests/theory_mutations.py is reported by the row that names its mistake.
    rows = [
        row("T3", "attention_mask = float64 NumPy loop over (query, key) pairs", "pairs", res["mask_set"], 0.0,
            kind="value", reference="reference.mask", uses=("mask",), modes=m),
        row("T3", "pairs with ∂y_i/∂x_j ≠ 0 via K, V = the mask", "pairs", res["mask_jacobian"], 0.0,
            uses=("forward",), modes=mt),
        row("T3", "query seeing no key: y_i = b_O, A_i = 0, zero grads", "abs", res["blind"], 0.0,
            uses=("forward", "backward", "attend"), modes=m),
    ]
    if np.any(res["t3b_auto"] != -np.inf):
        b_scope = f"the {len(_present(res['t3b_auto']))} instances with a key bias b_K"
        rows += [
            row("T3b", "∂ℓ/∂b_K = 0 by autodiff", ue, _present(res["t3b_auto"]), 8.0, uses=("forward",), modes=mt,
                scope=b_scope),
            row("T3b", "∂ℓ/∂b_K = 0 in closed form", ue, _present(res["t3b_closed"]), 8.0, uses=("backward",),
                modes=mb, scope=b_scope),
            row("T3b", "output unchanged by b_K -> b_K + δ", ue, _present(res["t3b_forward"]), 64.0,
                uses=("forward",), modes=mb, scope=b_scope),
        ]
    rows += [
        row("T3a", "rows of G_S sum to 0", "eps·Σ_j|A_ij G_A_ij|", res["rows"], 16.0, uses=("backward",), modes=m),
        row("T3a", "closed-form VJP vs jax.vjp of the forward, every parameter and x", ue, res["t3a"], 1024.0,
            kind="route", reference="jax.vjp of the implementation's forward (shares it; second route "
            "reference.attention_grads)", uses=both, modes=mt),
        row("T3a", "forward y = float64 NumPy attention (loop over heads, queries)", ue, res["forward"], 256.0,
            kind="value", reference="reference.attention", uses=("forward",), modes=m),
        row("T3a", "self_attention (the transformer's call) = float64 NumPy attention", ue, res["self_attention"],
            256.0, kind="value", reference="reference.attention", uses=("self_attention",), modes=m),
        row("T3a", "closed-form backward = float64 NumPy gradients (every parameter, x, score bias)", ue,
            res["backward"], 1024.0, kind="value", reference="reference.attention_grads", uses=("backward",),
            modes=m),
        row("T3a", "custom_vjp gradients = float64 NumPy (every parameter, x, score bias)", ue, res["custom_vjp"],
            1024.0, kind="value", reference="reference.attention_grads", uses=("closed_form",), modes=mt),
    ]
    if t5 is not None:
        rows.append(row("T3a", "T5 path (scale 1, relative-position bias): custom_vjp = float64 NumPy", ue, t5,
                        1024.0, kind="value", reference="reference.attention_grads", uses=("closed_form",),
                        modes=modes_text([ev for ev in evs if ev.cfg.get("scores") == "t5"], eager=False),
                        scope="the configurations with T5's score options"))
    # docs/theory.md promises ≤ 1e-10 in float64: checked when the run is float64 (CI runs both dtypes). A float32
    # run does not compile the implementation a second time in float64 for it: that was a third of T3's time.
    f64_note = "" if jax.config.jax_enable_x64 else "float64 runs only: JAX_ENABLE_X64=1 isojax check --only T3a"
    f64_row = row("T3a", "float64 closed form = float64 NumPy gradients (docs/theory.md: ≤ 1e-10)", "rel",
                  res["backward"] * eps() if jax.config.jax_enable_x64 else [0.0], 4e-13, f64_note, kind="value",
                  reference="reference.attention_grads", uses=("backward",), modes=m)
    rows.append(f64_row if jax.config.jax_enable_x64 else dataclasses.replace(
        f64_row, max_residual=math.nan, instances=0, applicable=False))
    rows += [
        # 16384: the unit counts the rounding of G_S's entries as eps·|G_S|, but an entry A(G_A - Σ A G_A) that
        # cancels rounds at eps·A(|G_A| + |Σ A G_A|), so a row whose G_S cancels can sit thousands of units out
        # on correct code (float64 seed 87: 5741, docs/checks.md); a broken G_Q is out by ~1/eps
        row("T3c", "G_Q unchanged by K -> K + 1cᵀ", uq, res["t3c_translate_grad"], 16384.0, uses=("attend",),
            modes=mt),
        row("T3c", "O unchanged by K -> K + 1cᵀ", ue, res["t3c_translate_out"], 512.0, uses=("attend",), modes=m),
        row("T3c", "G_Q = s·G_S(K - 1k̄ᵀ) for any k̄", uq, res["t3c_centred"], 16384.0, uses=("attend", "backward"),
            modes=mt),
    ]
    return rows


def _present(values: np.ndarray) -> np.ndarray:
    """The instances a row applies to (configs without a key bias give -inf there)."""
    return values[values != -np.inf]


def _per_config(evs, res) -> list[dict]:
    """Split concatenated residuals back into one dict per config."""
    out, start = [], 0
    for ev in evs:
        out.append({k: v[start:start + ev.count] for k, v in res.items()})
        start += ev.count
    return out

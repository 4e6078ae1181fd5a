"""Float64 NumPy references for the value rows of `isojax check`.

This module imports NumPy and nothing else (tests/test_theory.py walks its syntax tree and fails if it imports
JAX, isojax or anything that could reach them), so no reference shares a function with the implementation it is
compared against: each computes from the instance's own inputs (the head Φ, the context h, the attention
weights and input), never from a value the implementation returned. Every function works on a leading batch of
instances (any leading axes, broadcast) and computes in float64, whatever the dtype of the run.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["logits", "log_softmax", "softmax", "logsumexp", "centred", "fisher", "kl", "expected_value",
           "grad_logits", "grad_h", "grad_phi", "sgd_step", "mask", "attention", "attention_grads",
           "principal_directions", "log_partition_along", "partition_isotropy", "affine_fit_residual",
           "gaussian_log_partition"]


def _f(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------------------------- the head

def logits(phi: ArrayLike, h: ArrayLike, b: ArrayLike | None = None) -> np.ndarray:
    """z = Φh + b. phi [..., V, d], h [..., C, d], b [..., V] or None -> [..., C, V]"""
    z = _f(h) @ np.swapaxes(_f(phi), -1, -2)
    return z if b is None else z + _f(b)[..., None, :]


def log_softmax(z: ArrayLike) -> np.ndarray:
    """z - m - log Σ_w exp(z_w - m), m = max z, along the last axis. [..., V]"""
    z = _f(z)
    m = np.max(z, axis=-1, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


def logsumexp(z: ArrayLike) -> np.ndarray:
    """m + log Σ_w exp(z_w - m) along the last axis. [..., V] -> [...]"""
    z = _f(z)
    m = np.max(z, axis=-1)
    return m + np.log(np.sum(np.exp(z - m[..., None]), axis=-1))


def softmax(z: ArrayLike) -> np.ndarray:
    """exp(z - m) / Σ exp(z - m) along the last axis. [..., V]"""
    e = np.exp(_f(z) - np.max(_f(z), axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def centred(phi: ArrayLike) -> np.ndarray:
    """(I - 11ᵀ/V) Φ, the centring written as a projection. [..., V, d]"""
    phi = _f(phi)
    v = phi.shape[-2]
    return (np.eye(v) - np.full((v, v), 1.0 / v)) @ phi


def fisher(phi: ArrayLike, h: ArrayLike, b: ArrayLike | None = None) -> np.ndarray:
    """F(h) = Σ_w p_w (φ_w - μ)(φ_w - μ)ᵀ with μ = Σ_w p_w φ_w, the covariance of φ under p(·|h).
    phi [..., V, d], h [..., C, d] -> [..., C, d, d]"""
    phi = _f(phi)
    p = softmax(logits(phi, h, b))  # [..., C, V]
    mu = p @ phi  # [..., C, d]
    dev = phi[..., None, :, :] - mu[..., :, None, :]  # [..., C, V, d]
    return np.einsum("...cv,...cvi,...cvj->...cij", p, dev, dev)


def kl(log_p: ArrayLike, log_q: ArrayLike) -> np.ndarray:
    """KL(p ‖ q) = Σ_w p_w (log p_w - log q_w), terms with p_w = 0 dropped. [..., V] -> [...]"""
    log_p, log_q = _f(log_p), _f(log_q)
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (log_p - log_q), 0.0)
    return np.sum(terms, axis=-1)


def expected_value(log_p: ArrayLike, values: ArrayLike) -> np.ndarray:
    """Σ_w v_w p_w. log_p [..., V], values [..., V] (broadcast) -> [...]"""
    return np.sum(np.exp(_f(log_p)) * _f(values), axis=-1)


def _one_hot(y: ArrayLike, vocab: int) -> np.ndarray:
    return (np.asarray(y)[..., None] == np.arange(vocab)).astype(np.float64)


def grad_logits(phi: ArrayLike, h: ArrayLike, y: ArrayLike, b: ArrayLike | None = None) -> np.ndarray:
    """∇_z ℓ = p - e_y for ℓ = -log p(y|h). y [..., C] ints -> [..., C, V]"""
    p = softmax(logits(phi, h, b))
    return p - _one_hot(y, p.shape[-1])


def grad_h(phi: ArrayLike, h: ArrayLike, y: ArrayLike, b: ArrayLike | None = None) -> np.ndarray:
    """∇_h ℓ = Φ_cᵀ(p - e_y), Φ_c = Φ minus its row mean. -> [..., C, d]"""
    phi = _f(phi)
    return grad_logits(phi, h, y, b) @ (phi - np.mean(phi, axis=-2, keepdims=True))


def grad_phi(phi: ArrayLike, h: ArrayLike, y: ArrayLike, b: ArrayLike | None = None) -> np.ndarray:
    """∇_Φ ℓ = (p - e_y) hᵀ. -> [..., C, V, d]"""
    return grad_logits(phi, h, y, b)[..., :, None] * _f(h)[..., None, :]


def sgd_step(phi: ArrayLike, b: ArrayLike, xs: ArrayLike, ys: ArrayLike, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """One plain SGD step of the mean cross-entropy over a batch: Φ - lr·mean_i (p_i - e_yi) h_iᵀ and
    b - lr·mean_i (p_i - e_yi). phi [..., V, d], b [..., V], xs [..., B, d], ys [..., B] -> (phi, b)"""
    g = grad_logits(phi, xs, ys, b)  # [..., B, V]
    g_phi = np.mean(g[..., :, None] * _f(xs)[..., None, :], axis=-3)
    return _f(phi) - lr * g_phi, _f(b) - lr * np.mean(g, axis=-2)


# ------------------------------------------------------------------------------------------------ attention

def mask(length: int, causal: bool, key_mask: ArrayLike | None = None) -> np.ndarray:
    """Query i may see key j iff (not causal or j ≤ i) and key j is not padding, one pair at a time.
    key_mask [..., T] bool or None -> [..., T, T] bool"""
    visible = np.ones((length,), bool) if key_mask is None else np.asarray(key_mask, bool)
    out = np.zeros(visible.shape[:-1] + (length, length), bool)
    for i in range(length):
        for j in range(length):
            out[..., i, j] = visible[..., j] & (not causal or j <= i)
    return out


def _heads(p: dict, x):
    """Per-head projections Q, K, V as lists over heads, each [..., T, k]."""
    out = {}
    for name in ("q", "k", "v"):
        w = _f(p[f"w_{name}"])
        b = p.get(f"b_{name}")
        out[name] = [x @ w[..., h, :, :] + (0.0 if b is None else _f(b)[..., h, None, :])
                     for h in range(w.shape[-3])]
    return out["q"], out["k"], out["v"]


def _weights(q, k, allowed, bias, scale: float):
    """Attention weights of one head, one query at a time; a query that sees no key gets weights 0."""
    length = q.shape[-2]
    rows = []
    for i in range(length):
        s = scale * np.einsum("...k,...sk->...s", q[..., i, :], k)
        if bias is not None:
            s = s + bias[..., i, :]
        ok = allowed[..., i, :]
        top = np.max(np.where(ok, s, -np.inf), axis=-1, keepdims=True)
        e = np.exp(np.where(ok, s - np.where(np.isfinite(top), top, 0.0), -np.inf))
        total = np.sum(e, axis=-1, keepdims=True)
        rows.append(np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0))
    return np.stack(rows, axis=-2)  # [..., T, T]


def attention(p: dict, x: ArrayLike, allowed: ArrayLike, bias: ArrayLike | None = None,
              scale: float | None = None) -> np.ndarray:
    """Multi-head self-attention, a loop over heads and queries. p: {w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o}
    (biases None or absent) with leading instance axes; x [..., T, D]; allowed [..., T, T] bool; bias
    [..., H, T, T] or None; scale None = 1/√d_k. -> y [..., T, D]"""
    x = _f(x)
    qs, ks, vs = _heads(p, x)
    scale = 1.0 / math.sqrt(qs[0].shape[-1]) if scale is None else float(scale)
    w_o = _f(p["w_o"])
    y = 0.0
    for h, (q, k, v) in enumerate(zip(qs, ks, vs, strict=True)):
        a = _weights(q, k, allowed, None if bias is None else _f(bias)[..., h, :, :], scale)
        y = y + (a @ v) @ w_o[..., h, :, :]
    return y + (0.0 if p.get("b_o") is None else _f(p["b_o"])[..., None, :])


def attention_grads(p: dict, x: ArrayLike, g_y: ArrayLike, allowed: ArrayLike, bias: ArrayLike | None = None,
                    scale: float | None = None) -> dict[str, np.ndarray]:
    """Every gradient of ⟨G_Y, attention(p, x)⟩ by the chain rule, head by head, the softmax's Jacobian
    diag(a) - aaᵀ built per query. -> {w_q, ..., b_o (where p has them), x, bias (if given), scale}"""
    x, g_y = _f(x), _f(g_y)
    qs, ks, vs = _heads(p, x)
    s_ = 1.0 / math.sqrt(qs[0].shape[-1]) if scale is None else float(scale)
    w = {name: _f(p[name]) for name in ("w_q", "w_k", "w_v", "w_o")}
    xt = np.swapaxes(x, -1, -2)
    grads = {name: np.zeros_like(w[name]) for name in w}
    heads_bias = [] if bias is not None else None
    g_x = np.zeros_like(x)
    b_grads = {name: [] for name in ("b_q", "b_k", "b_v")}
    g_scale = 0.0
    for h, (q, k, v) in enumerate(zip(qs, ks, vs, strict=True)):
        a = _weights(q, k, allowed, None if bias is None else _f(bias)[..., h, :, :], s_)
        o = a @ v
        grads["w_o"][..., h, :, :] = np.swapaxes(o, -1, -2) @ g_y
        g_o = g_y @ np.swapaxes(w["w_o"][..., h, :, :], -1, -2)  # [..., T, d_v]
        g_v = np.swapaxes(a, -1, -2) @ g_o
        g_a = g_o @ np.swapaxes(v, -1, -2)  # [..., T, T]
        jac = np.einsum("...ij,jk->...ijk", a, np.eye(a.shape[-1])) - a[..., :, :, None] * a[..., :, None, :]
        g_s = np.einsum("...ijk,...ik->...ij", jac, g_a)
        g_q = s_ * g_s @ k
        g_k = s_ * np.swapaxes(g_s, -1, -2) @ q
        g_scale = g_scale + np.sum(g_s * (q @ np.swapaxes(k, -1, -2)), axis=(-1, -2))
        for name, g in (("q", g_q), ("k", g_k), ("v", g_v)):
            grads[f"w_{name}"][..., h, :, :] = xt @ g
            g_x = g_x + g @ np.swapaxes(w[f"w_{name}"][..., h, :, :], -1, -2)
            b_grads[f"b_{name}"].append(np.sum(g, axis=-2))
        if heads_bias is not None:
            heads_bias.append(g_s)
    out = dict(grads, x=g_x, scale=g_scale)
    for name, parts in b_grads.items():
        if p.get(name) is not None:
            out[name] = np.stack(parts, axis=-2)
    if p.get("b_o") is not None:
        out["b_o"] = np.sum(g_y, axis=-2)
    if heads_bias is not None:
        out["bias"] = np.stack(heads_bias, axis=-3)
    return out


# ---------------------------------------------------------------------------------- the partition function

def principal_directions(phi: ArrayLike) -> np.ndarray:
    """The unit eigenvectors of ΦᵀΦ (the columns of eigh's eigenvector matrix), both signs. [..., V, d] ->
    [..., 2d, d]"""
    phi = _f(phi)
    _, vecs = np.linalg.eigh(np.swapaxes(phi, -1, -2) @ phi)
    rows = np.swapaxes(vecs, -1, -2)
    return np.concatenate([rows, -rows], axis=-2)


def log_partition_along(phi: ArrayLike, directions: ArrayLike) -> np.ndarray:
    """log Z(c) = log Σ_w exp(φ_wᵀc) for each direction. phi [..., V, d], directions [..., m, d] -> [..., m]"""
    return logsumexp(_f(directions) @ np.swapaxes(_f(phi), -1, -2))


def partition_isotropy(phi: ArrayLike) -> np.ndarray:
    """I(Φ) = min_c Z(c) / max_c Z(c) over the principal directions, both signs. [..., V, d] -> [...]"""
    log_z = log_partition_along(phi, principal_directions(phi))
    return np.exp(np.min(log_z, axis=-1) - np.max(log_z, axis=-1))


def gaussian_log_partition(mu: ArrayLike, cov: ArrayLike, directions: ArrayLike, vocab: int) -> np.ndarray:
    """log E[Z(c)] = log V + μᵀc + ½cᵀΣc for rows ~ N(μ, Σ). mu [..., d], cov [..., d, d], directions
    [..., m, d] -> [..., m]"""
    c = _f(directions)
    linear = (c @ _f(mu)[..., :, None])[..., 0]
    return math.log(vocab) + linear + 0.5 * np.einsum("...md,...de,...me->...m", c, _f(cov), c)


def affine_fit_residual(y: ArrayLike, c: ArrayLike) -> np.ndarray:
    """Residuals of the least-squares affine fit of each column of y on c, by QR of [1, c].
    y [..., m, k], c [..., m, d] -> [..., m, k]"""
    c = _f(c)
    design = np.concatenate([np.ones(c.shape[:-1] + (1,)), c], axis=-1)
    q, _ = np.linalg.qr(design)
    y = _f(y)
    return y - q @ (np.swapaxes(q, -1, -2) @ y)

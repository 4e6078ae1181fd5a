"""T1: softmax shift invariance (T1a), non-identifiability (T1b), the Fisher matrix and the KL expansion (T1c).

Every row compares a value of `isojax.head` with an independent route (a reference formula written out here,
or autodiff), besides the invariances the statements are about.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from isojax import head
from isojax.theory.harness import CheckRow, Timings, anisotropic_head, eps, normal, row, run_instances, uniform

__all__ = ["naive_probs", "reference_log_softmax", "reference_centred", "reference_kl", "fisher_literal",
           "t1a_shift", "t1b_nonidentifiability", "t1c_fisher", "check_t1a", "check_t1b", "check_t1c"]


def naive_probs(phi: ArrayLike, h: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """exp(z) / Σ exp(z) without the max shift: the textbook softmax that overflows (T1a's contrast). -> [..., V]"""
    e = jnp.exp(head.logits(phi, h, b))
    return e / e.sum(axis=-1, keepdims=True)


def reference_log_softmax(z: ArrayLike) -> jax.Array:
    """log softmax written out: z - m - log Σ_w exp(z_w - m), m = max z (the reference for head). [..., V]"""
    m = jnp.max(z, axis=-1, keepdims=True)
    return z - m - jnp.log(jnp.sum(jnp.exp(z - m), axis=-1, keepdims=True))


def reference_centred(phi: ArrayLike) -> jax.Array:
    """(I - 11ᵀ/V) Φ, the centred head as a projection (the reference for head.centred_head). [V, d]"""
    v = phi.shape[0]
    proj = jnp.eye(v, dtype=phi.dtype) - jnp.full((v, v), 1.0 / v, phi.dtype)
    return proj @ phi


def reference_kl(log_p: ArrayLike, log_q: ArrayLike) -> jax.Array:
    """KL(p ‖ q) = Σ_w p_w (log p_w - log q_w), p_w = 0 terms dropped (the reference for head). [..., V] -> [...]"""
    p = jnp.exp(log_p)
    return jnp.sum(jnp.where(p > 0, p * (log_p - log_q), 0.0), axis=-1)


def fisher_literal(phi: ArrayLike, h: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """Φᵀ(diag p - p pᵀ)Φ exactly as T1c writes it (the reference for `head.fisher`). -> [d, d]"""
    p = head.probs(phi, h, b)
    return phi.T @ (jnp.diag(p) - jnp.outer(p, p)) @ phi


# --------------------------------------------------------------------------------------------- T1a

def t1a_shift(phi: ArrayLike, h: ArrayLike, b: ArrayLike, a: ArrayLike, *, log_probs: Callable = head.log_probs,
              probs: Callable = head.probs, log_partition: Callable = head.log_partition) -> dict[str, jax.Array]:
    """T1a for one instance: the change of log_softmax, softmax and logsumexp - a under z -> z + a1, and each
    value against `reference_log_softmax`, in units of eps·(|a| + |z|_∞ + 1), the rounding scale of z + a1."""
    z = head.logits(phi, h, b)
    scale = eps() * (jnp.abs(a) + jnp.max(jnp.abs(z)) + 1.0)
    ref = reference_log_softmax(z)
    ref_lse = jnp.max(z) + jnp.log(jnp.sum(jnp.exp(z - jnp.max(z))))
    return {
        "log_softmax": jnp.max(jnp.abs(log_probs(phi, h, b + a) - log_probs(phi, h, b))) / scale,
        "softmax": jnp.max(jnp.abs(probs(phi, h, b + a) - probs(phi, h, b))) / scale,
        "logsumexp": jnp.abs(log_partition(phi, h, b + a) - a - log_partition(phi, h, b)) / scale,
        "log_softmax_ref": jnp.max(jnp.abs(log_probs(phi, h, b) - ref)) / scale,
        "softmax_ref": jnp.max(jnp.abs(probs(phi, h, b) - jnp.exp(ref))) / scale,
        "logsumexp_ref": jnp.abs(log_partition(phi, h, b) - ref_lse) / scale,
        "naive_finite": jnp.all(jnp.isfinite(naive_probs(phi, h, b + a))),
    }


def _make_t1a(vocab, dim, **impl):
    def one(k):
        ks = jax.random.split(k, 6)
        phi = normal(ks[0], (vocab, dim))
        h = normal(ks[1], (dim,)) / math.sqrt(dim)
        z_scale = 10.0 ** uniform(ks[2], (), 0.0, 3.0)
        b = z_scale * uniform(ks[3], (vocab,), -1.0, 1.0)
        a = jnp.sign(uniform(ks[4], (), -1.0, 1.0)) * 10.0 ** uniform(ks[5], (), -3.0, 4.0)
        return t1a_shift(phi, h, b, a, **impl)
    return one


T1A_CONFIGS = [dict(vocab=2, dim=4), dict(vocab=17, dim=8), dict(vocab=256, dim=16)]


def check_t1a(key: jax.Array, n: int = 1000, timings: Timings | None = None, configs: list[dict] | None = None,
              **impl) -> list[CheckRow]:
    """T1a: softmax, log_softmax and logsumexp under shifts |a| ≤ 1e4 of logits |z| ≤ 1e3."""
    res = run_instances("T1a", _make_t1a, key, n, configs or T1A_CONFIGS, timings or Timings(), impl)
    note = f"naive exp(z)/Σexp(z) is non-finite in {100 * (1 - res['naive_finite'].mean()):.0f}% of these"
    u = "eps·(|a|+|z|∞+1)"
    return [
        row("T1a", "log_softmax(z+a1) = log_softmax(z)", u, res["log_softmax"], 24.0),
        row("T1a", "softmax(z+a1) = softmax(z)", u, res["softmax"], 4.0, note),
        row("T1a", "logsumexp(z+a1) = logsumexp(z) + a", u, res["logsumexp"], 8.0),
        row("T1a", "log_probs = z - m - log Σexp(z - m) (reference)", u, res["log_softmax_ref"], 2.0),
        row("T1a", "probs = exp(reference log_softmax)", u, res["softmax_ref"], 3.0),
        row("T1a", "log_partition = m + log Σexp(z - m) (reference)", u, res["logsumexp_ref"], 2.0),
    ]


# --------------------------------------------------------------------------------------------- T1b

def t1b_nonidentifiability(phi: ArrayLike, h: ArrayLike, lam_null: ArrayLike, lam_any: ArrayLike, *,
                           log_probs: Callable = head.log_probs, logits: Callable = head.logits,
                           centred_head: Callable = head.centred_head) -> dict[str, jax.Array]:
    """T1b for one instance. lam_null ∈ null(Φ_c) (from an SVD of Φ - mean, not from isojax); lam_any arbitrary.
    Scaled residuals of: p(·|h+λ) = p(·|h); logits(h+λ) - logits(h) ∈ span(1); the identity
    centre(log p(·|h+λ) - log p(·|h)) = Φ_c λ, which gives the 'only if' direction (a change of log p vanishes
    exactly when Φ_c λ does); and Φ_c against `reference_centred`."""
    e = eps()
    lp = log_probs(phi, h)
    size = jnp.max(jnp.abs(phi @ h))
    scale_null = size + jnp.linalg.norm(phi) * jnp.linalg.norm(lam_null)
    scale_any = size + jnp.linalg.norm(phi) * jnp.linalg.norm(lam_any)
    moved = logits(phi, h + lam_null) - logits(phi, h)
    delta = log_probs(phi, h + lam_any) - lp
    phi_c = centred_head(phi)
    return {
        "invariant": jnp.max(jnp.abs(log_probs(phi, h + lam_null) - lp)) / (e * scale_null),
        "span_one": jnp.max(jnp.abs(moved - moved.mean())) / (e * scale_null),
        "identity": jnp.max(jnp.abs(delta - delta.mean() - phi_c @ lam_any)) / (e * scale_any),
        "centred": jnp.max(jnp.abs(phi_c - reference_centred(phi))) / (e * jnp.max(jnp.abs(phi))),
    }


def _make_t1b(vocab, dim, rank, **impl):
    null_dim = dim - rank

    def one(k):
        ks = jax.random.split(k, 6)
        mean = 2.0 * normal(ks[0], (dim,))
        low = normal(ks[1], (vocab, rank)) @ normal(ks[2], (rank, dim)) / math.sqrt(dim)
        phi = mean + low
        _, _, vt = jnp.linalg.svd(phi - phi.mean(axis=0), full_matrices=True)
        lam_null = 3.0 * vt[dim - null_dim:].T @ normal(ks[3], (null_dim,))
        h = normal(ks[4], (dim,))
        return t1b_nonidentifiability(phi, h, lam_null, normal(ks[5], (dim,)), **impl)
    return one


# rank of Φ_c: min(V - 1, rank of the low-rank part); the null space of Φ_c has dim - rank dimensions.
T1B_CONFIGS = [dict(vocab=4, dim=8, rank=3), dict(vocab=16, dim=24, rank=15), dict(vocab=64, dim=16, rank=10)]


def check_t1b(key: jax.Array, n: int = 1000, timings: Timings | None = None, configs: list[dict] | None = None,
              **impl) -> list[CheckRow]:
    """T1b on heads whose centred part has a known null space (V ≤ d, or a low-rank head with V > d)."""
    res = run_instances("T1b", _make_t1b, key, n, configs or T1B_CONFIGS, timings or Timings(), impl)
    u = "eps·(|Φh|∞+‖Φ‖‖λ‖)"
    return [
        row("T1b", "p(·|h+λ) = p(·|h) for λ ∈ null(Φ_c)", u, res["invariant"], 4.0),
        row("T1b", "logits(h+λ) - logits(h) ∈ span(1) for λ ∈ null(Φ_c)", u, res["span_one"], 4.0),
        row("T1b", "centred_head = (I - 11ᵀ/V)Φ (reference)", "eps·|Φ|∞", res["centred"], 24.0),
        row("T1b", "centre(Δ log p) = Φ_c λ for any λ (iff)", u, res["identity"], 4.0),
    ]


# --------------------------------------------------------------------------------------------- T1c

def t1c_fisher(phi: ArrayLike, h: ArrayLike, u: ArrayLike, log_q: ArrayLike, *, fisher: Callable = head.fisher,
               log_probs: Callable = head.log_probs, kl: Callable = head.kl_divergence) -> dict[str, jax.Array]:
    """T1c for one instance: F against the autodiff Hessian of λ ↦ KL(p(·|h) ‖ p(·|h+λ)) at 0 and against its
    literal form; the expansion KL(t) = t²/2 uᵀFu + O(t³) against the bound |O(t³)| ≤ t³R³/24 (third cumulant
    ≤ range × variance ≤ R³/4, R the range of φ_wᵀu) at t = 1/(2R); and KL(p ‖ q) for an unrelated q against
    `reference_kl` (an asymmetric quantity: the direction matters)."""
    f = fisher(phi, h)
    lp = log_probs(phi, h)
    hess = jax.hessian(lambda lam: kl(lp, log_probs(phi, h + lam)))(jnp.zeros_like(h))
    proj = phi @ u
    r = proj.max() - proj.min()
    t = 0.5 / r
    remainder = kl(lp, log_probs(phi, h + t * u)) - 0.5 * t**2 * (u @ f @ u)
    # Autodiff and the literal form both build F as a difference of uncentred second moments, which rounds at
    # eps·E_p‖φ‖², not at eps·‖F‖ (large when the φ_w share a big mean vector).
    unit = eps() * jnp.exp(lp) @ jnp.sum(phi**2, axis=1)
    kl_scale = eps() * (jnp.exp(lp) @ (jnp.abs(lp) + jnp.abs(log_q)) + 1.0)
    return {
        "hessian": jnp.linalg.norm(f - hess) / unit,
        "literal": jnp.linalg.norm(f - fisher_literal(phi, h)) / unit,
        "expansion": jnp.abs(remainder) / (t**3 * r**3 / 24.0),
        "kl": jnp.abs(kl(lp, log_q) - reference_kl(lp, log_q)) / kl_scale,
    }


def _make_t1c(vocab, dim, **impl):
    def one(k):
        ks = jax.random.split(k, 4)
        phi = anisotropic_head(ks[0], vocab, dim)
        u = normal(ks[2], (dim,))
        log_q = jax.nn.log_softmax(2.0 * normal(ks[3], (vocab,)))
        return t1c_fisher(phi, 2.0 * normal(ks[1], (dim,)), u / jnp.linalg.norm(u), log_q, **impl)
    return one


T1C_CONFIGS = [dict(vocab=8, dim=4), dict(vocab=64, dim=8), dict(vocab=256, dim=16)]


def check_t1c(key: jax.Array, n: int = 1000, timings: Timings | None = None, configs: list[dict] | None = None,
              **impl) -> list[CheckRow]:
    """T1c on heads with a shared mean vector of random strength (the anisotropic case)."""
    res = run_instances("T1c", _make_t1c, key, n, configs or T1C_CONFIGS, timings or Timings(), impl)
    u = "eps·E_p‖φ‖²"
    return [
        row("T1c", "F = Φᵀ(diag p - ppᵀ)Φ", u, res["literal"], 24.0),
        row("T1c", "F = Hessian of KL (autodiff)", u, res["hessian"], 24.0),
        # exact math; the slack covers rounding in a KL of size ~1e-2
        row("T1c", "|KL(t) - t²/2 uᵀFu| / (t³R³/24) ≤ 1", "ratio", res["expansion"], 1.0 + 1e4 * eps()),
        row("T1c", "KL(p‖q) = Σ p(log p - log q) (reference)", "eps·(Σp(|log p|+|log q|)+1)", res["kl"], 2.0),
    ]

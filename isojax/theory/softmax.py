"""T1: softmax shift invariance (T1a), non-identifiability (T1b), the Fisher matrix and the KL expansion (T1c).

Every function of `isojax.head` a statement uses is called on one context and on a batch of two, under jit (one
instance at a time and vmapped) and eagerly; its values are compared with a float64 NumPy reference computed from
the instance's own Φ, h and b (`isojax/theory/reference.py`), besides the invariances the statements are about.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from isojax import _validate as V
from isojax import head
from isojax.theory import reference as R
from isojax.theory.harness import (
    CheckRow,
    Timings,
    anisotropic_head,
    call_variants,
    context_calls,
    eps,
    evaluate,
    f64,
    modes_text,
    normals,
    residuals_over,
    row,
    uniform,
)

__all__ = ["naive_probs", "T1A_CONFIGS", "T1B_CONFIGS", "T1C_CONFIGS", "check_t1a", "check_t1b", "check_t1c"]

CONTEXTS = 2  # each instance's contexts: called one at a time and as one batch [2, d]


def naive_probs(phi: ArrayLike, h: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """exp(z) / Σ exp(z) without the max shift: the textbook softmax that overflows (T1a's contrast). -> [..., V]"""
    e = jnp.exp(head.logits(phi, h, b))
    return e / e.sum(axis=-1, keepdims=True)


def _worst(*per_variant: dict) -> dict:
    return {k: np.max(np.stack([v[k] for v in per_variant]), axis=0) for k in per_variant[0]}


# --------------------------------------------------------------------------------------------- T1a

def _draw_t1a(vocab, dim):
    def one(k):
        kn, ku = jax.random.split(k)
        phi, h = normals(kn, (vocab, dim), (CONTEXTS, dim))
        u = uniform(ku, (vocab + 3,))
        b = 10.0 ** (3.0 * u[0]) * (2.0 * u[3:] - 1.0)  # |z| up to 1e3
        a = jnp.sign(u[1] - 0.5) * 10.0 ** (7.0 * u[2] - 3.0)  # |a| from 1e-3 to 1e4
        return dict(phi=phi, h=h / math.sqrt(dim), b=b, a=a, b_shift=b + a)
    return one


def _direct_t1a(cfg, impl):
    log_probs = impl.get("log_probs", head.log_probs)
    probs = impl.get("probs", head.probs)
    log_partition = impl.get("log_partition", head.log_partition)

    def f(x, eager=False):
        phi, h, b, bs = x["phi"], x["h"], x["b"], x["b_shift"]
        both = lambda fn, b_: context_calls(fn, phi, h, b_, eager=eager)
        return {"lp": both(log_probs, b), "lp_s": both(log_probs, bs), "p": both(probs, b), "p_s": both(probs, bs),
                "lz": both(log_partition, b), "lz_s": both(log_partition, bs)}
    return f


def _residuals_t1a(cfg, x, values, _, __):
    z, zs = R.logits(x["phi"], x["h"], x["b"]), R.logits(x["phi"], x["h"], x["b_shift"])  # [n, C, V]
    a = f64(x["a"])
    scale = eps() * (np.abs(a) + np.max(np.abs(z), axis=(1, 2)) + 1.0)
    unit = lambda r: np.max(r.reshape(len(scale), -1), axis=1) / scale
    ref, ref_s = R.log_softmax(z), R.log_softmax(zs)
    out = []
    for v in call_variants(values):
        c = v["lz"].shape[1]  # contexts evaluated
        z_, zs_, ref_, ref_s_ = z[:, :c], zs[:, :c], ref[:, :c], ref_s[:, :c]
        out.append({
            "log_softmax": unit(np.abs(v["lp_s"] - v["lp"])),
            "softmax": unit(np.abs(v["p_s"] - v["p"])),
            "logsumexp": unit(np.abs(v["lz_s"] - a[:, None] - v["lz"])),
            "log_softmax_ref": np.maximum(unit(np.abs(v["lp"] - ref_)), unit(np.abs(v["lp_s"] - ref_s_))),
            "softmax_ref": np.maximum(unit(np.abs(v["p"] - R.softmax(z_))), unit(np.abs(v["p_s"] - R.softmax(zs_)))),
            "logsumexp_ref": np.maximum(unit(np.abs(v["lz"] - R.logsumexp(z_))),
                                        unit(np.abs(v["lz_s"] - R.logsumexp(zs_)))),
        })
    return _worst(*out)


def _naive_finite(evs) -> float:
    """Share of instances where exp(z)/Σexp(z) in the run dtype is finite (T1a's contrast), from the reference z."""
    dtype = V.float_dtype()
    finite = []
    for ev in evs:
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(R.logits(ev.inputs["phi"], ev.inputs["h"], ev.inputs["b_shift"]).astype(dtype))
            finite.append(np.all(np.isfinite(e / e.sum(-1, keepdims=True)), axis=(1, 2)))
    return float(np.mean(np.concatenate(finite)))


# One configuration vmapped, one called eagerly (harness.evaluate); V = 64, d = 8 for the eager calls of every head
# check, so they share compiled operations.
T1A_CONFIGS = [dict(vocab=2, dim=4, _vmap=True), dict(vocab=64, dim=8, _eager=2), dict(vocab=257, dim=16)]


def check_t1a(key: jax.Array, n: int = 1000, timings: Timings | None = None, configs: list[dict] | None = None,
              **impl) -> list[CheckRow]:
    """T1a: log_probs, probs and log_partition under shifts |a| ≤ 1e4 of logits |z| ≤ 1e3, and against float64
    NumPy (reference.log_softmax, softmax, logsumexp of Φh + b), for the shifted logits too."""
    timings = timings or Timings()
    evs = evaluate("T1a", _draw_t1a, _direct_t1a, key, n, configs or T1A_CONFIGS, timings, impl,
                   hard=lambda cfg, x: np.abs(f64(x["a"])) + np.max(np.abs(f64(x["b"])), axis=1))
    res = residuals_over(evs, _residuals_t1a, timings)
    note = f"the naive exp(z)/Σexp(z) overflows on {100 * (1 - _naive_finite(evs)):.0f}% of these inputs"
    u, m = "eps·(|a|+|z|∞+1)", modes_text(evs)
    kw = dict(modes=m)
    return [
        row("T1a", "log_softmax(z+a1) = log_softmax(z)", u, res["log_softmax"], 24.0, uses=("log_probs",), **kw),
        row("T1a", "softmax(z+a1) = softmax(z)", u, res["softmax"], 4.0, note, uses=("probs",), **kw),
        row("T1a", "logsumexp(z+a1) = logsumexp(z) + a", u, res["logsumexp"], 8.0, uses=("log_partition",), **kw),
        row("T1a", "log_probs = float64 NumPy log-softmax of Φh + b", u, res["log_softmax_ref"], 8.0,
            kind="value", reference="reference.log_softmax", uses=("log_probs",), **kw),
        row("T1a", "probs = float64 NumPy softmax of Φh + b", u, res["softmax_ref"], 8.0,
            kind="value", reference="reference.softmax", uses=("probs",), **kw),
        row("T1a", "log_partition = float64 NumPy logsumexp of Φh + b", u, res["logsumexp_ref"], 8.0,
            kind="value", reference="reference.logsumexp", uses=("log_partition",), **kw),
    ]


# --------------------------------------------------------------------------------------------- T1b

def _draw_t1b(vocab, dim, rank):
    # Φ = 1mᵀ + (A B) with the columns of A B outside `rank` of them exactly 0, in an order fixed per config:
    # those columns of Φ are constant, so null(Φ_c) ⊇ their coordinate axes EXACTLY (no rounding, unlike an
    # SVD's null space, whose error made the invariance rows fail in float64 at 11 of seeds 0-99).
    null = np.random.default_rng(vocab * 1000 + dim).permutation(dim)[rank:]
    in_null = np.zeros(dim, bool)
    in_null[null] = True

    def one(k):
        mean, a, b, lam, h, lam_any = normals(k, (dim,), (vocab, rank), (rank, dim), (dim,), (CONTEXTS, dim), (dim,))
        low = a @ b / math.sqrt(dim)
        phi = 2.0 * mean + jnp.where(in_null, 0.0, low)
        lam_null = jnp.where(in_null, 3.0 * lam, 0.0)
        return dict(phi=phi, h=h, h_null=h + lam_null, h_any=h + lam_any)
    return one


def _direct_t1b(cfg, impl):
    log_probs = impl.get("log_probs", head.log_probs)
    logits = impl.get("logits", head.logits)
    centred_head = impl.get("centred_head", head.centred_head)

    def f(x, eager=False):
        phi = x["phi"]
        both = lambda fn, h: context_calls(fn, phi, h, eager=eager)
        return {"lp": both(log_probs, x["h"]), "lp_null": both(log_probs, x["h_null"]),
                "lp_any": both(log_probs, x["h_any"]), "z": both(logits, x["h"]), "z_null": both(logits, x["h_null"]),
                "centred": centred_head(phi)}
    return f


def _residuals_t1b(cfg, x, values, _, __):
    e = eps()
    phi, h = f64(x["phi"]), f64(x["h"])
    lam_null, lam_any = f64(x["h_null"]) - h, f64(x["h_any"]) - h  # what the implementation was given
    size = np.max(np.abs(R.logits(phi, h)), axis=(1, 2))
    norm_phi = np.linalg.norm(phi, axis=(1, 2))
    scale_null = e * (size + norm_phi * np.max(np.linalg.norm(lam_null, axis=-1), axis=1))
    scale_any = e * (size + norm_phi * np.max(np.linalg.norm(lam_any, axis=-1), axis=1))
    worst = lambda r: np.max(np.abs(r).reshape(len(size), -1), axis=1)
    change = R.centred(phi)[:, None] @ lam_any[..., None]  # Φ_c λ in float64, [n, C, V, 1]
    centred = f64(values["centred"]["single"] if isinstance(values["centred"], dict) else values["centred"])
    out = []
    for v in call_variants({k: w for k, w in values.items() if k != "centred"}):
        c = v["z"].shape[1]  # contexts evaluated
        moved = v["z_null"] - v["z"]
        delta = v["lp_any"] - v["lp"]
        out.append({
            "invariant": worst(v["lp_null"] - v["lp"]) / scale_null,
            "span_one": worst(moved - moved.mean(-1, keepdims=True)) / scale_null,
            "identity": worst(delta - delta.mean(-1, keepdims=True) - change[:, :c, :, 0]) / scale_any,
            "logits_ref": worst(v["z"] - R.logits(phi, h)[:, :c]) / (e * (size + 1.0)),
        })
    res = _worst(*out)
    res["centred"] = worst(centred - R.centred(phi)) / (e * np.max(np.abs(phi), axis=(1, 2)))
    return res


# rank of Φ_c: min(V - 1, rank); its null space holds the dim - rank coordinate axes whose columns are constant.
T1B_CONFIGS = [dict(vocab=4, dim=8, rank=3, _vmap=True), dict(vocab=16, dim=24, rank=15),
               dict(vocab=64, dim=8, rank=5, _eager=2)]


def check_t1b(key: jax.Array, n: int = 1000, timings: Timings | None = None, configs: list[dict] | None = None,
              **impl) -> list[CheckRow]:
    """T1b on heads whose centred part has a known, exact null space (V ≤ d, or a low-rank head with V > d)."""
    timings = timings or Timings()
    evs = evaluate("T1b", _draw_t1b, _direct_t1b, key, n, configs or T1B_CONFIGS, timings, impl)
    res = residuals_over(evs, _residuals_t1b, timings)
    u, kw = "eps·(|Φh|∞+‖Φ‖‖λ‖)", dict(modes=modes_text(evs))
    return [
        row("T1b", "p(·|h+λ) = p(·|h) for λ ∈ null(Φ_c)", u, res["invariant"], 8.0, uses=("log_probs",), **kw),
        row("T1b", "logits(h+λ) - logits(h) ∈ span(1) for λ ∈ null(Φ_c)", u, res["span_one"], 8.0,
            uses=("logits",), **kw),
        row("T1b", "centre(Δ log p) = Φ_c λ for any λ (iff)", u, res["identity"], 8.0, uses=("log_probs",), **kw),
        row("T1b", "centred_head = float64 NumPy (I - 11ᵀ/V)Φ", "eps·|Φ|∞", res["centred"], 24.0, kind="value",
            reference="reference.centred", uses=("centred_head",), **kw),
        row("T1b", "logits = float64 NumPy Φh", "eps·(|Φh|∞+1)", res["logits_ref"], 24.0, kind="value",
            reference="reference.logits", uses=("logits",), **kw),
    ]


# --------------------------------------------------------------------------------------------- T1c

def _draw_t1c(vocab, dim):
    def one(k):
        ks = jax.random.split(k, 2)
        phi = anisotropic_head(ks[0], vocab, dim)
        h, u, lp_raw, lq_raw = normals(ks[1], (CONTEXTS, dim), (dim,), (CONTEXTS, vocab), (CONTEXTS, vocab))
        u = u / jnp.linalg.norm(u)
        proj = phi @ u
        t = 0.5 / (proj.max() - proj.min())  # the step of the expansion, 1/(2R)
        return dict(phi=phi, h=2.0 * h, h_t=2.0 * h + t * u, u=u, t=t,
                    log_p=jax.nn.log_softmax(2.0 * lp_raw), log_q=jax.nn.log_softmax(2.0 * lq_raw))
    return one


def _direct_t1c(cfg, impl):
    fisher = impl.get("fisher", head.fisher)
    log_probs = impl.get("log_probs", head.log_probs)
    kl = impl.get("kl", head.kl_divergence)

    def f(x, eager=False):
        phi = x["phi"]
        lp, lp_t = log_probs(phi, x["h"]), log_probs(phi, x["h_t"])
        return {"fisher": context_calls(fisher, phi, x["h"], eager=eager),
                "kl_t": context_calls(kl, lp, lp_t, per=(0, 1), eager=eager),
                "kl": context_calls(kl, x["log_p"], x["log_q"], per=(0, 1), eager=eager)}
    return f


def _traced_t1c(cfg, impl):
    log_probs = impl.get("log_probs", head.log_probs)
    kl = impl.get("kl", head.kl_divergence)

    def f(x):
        phi, h = x["phi"], x["h"][0]
        lp = log_probs(phi, h)
        return {"hessian": jax.hessian(lambda lam: kl(lp, log_probs(phi, h + lam)))(jnp.zeros_like(h))}
    return f


def _residuals_t1c(cfg, x, values, traced, _):
    e = eps()
    phi, h = f64(x["phi"]), f64(x["h"])
    p = R.softmax(R.logits(phi, h))  # [n, C, V]
    # F is a covariance of the rows under p: it rounds at eps·E_p‖φ‖², times the rounding of the logits that p
    # comes from (eps·|z|: p_w = exp(z_w - log Z))
    z_size = np.max(np.abs(R.logits(phi, h)), axis=-1)  # [n, C]
    unit = e * np.einsum("ncv,nv->nc", p, np.sum(phi**2, axis=-1)) * (1.0 + z_size)  # [n, C]
    f_ref = R.fisher(phi, h)
    lp_in, lq_in = f64(x["log_p"]), f64(x["log_q"])
    kl_scale = e * (np.sum(np.exp(lp_in) * (np.abs(lp_in) + np.abs(lq_in)), -1) + 1.0)  # [n, C]
    u, t = f64(x["u"]), f64(x["t"])
    proj = phi @ u[..., None]
    r = np.max(proj, axis=(1, 2)) - np.min(proj, axis=(1, 2))
    out = []
    for v in call_variants(values):
        c = v["kl"].shape[1]  # contexts evaluated
        quad = np.einsum("nd,ncde,ne->nc", u, v["fisher"], u)
        remainder = v["kl_t"] - 0.5 * t[:, None] ** 2 * quad
        out.append({
            "literal": np.max(np.linalg.norm(v["fisher"] - f_ref[:, :c], axis=(-2, -1)) / unit[:, :c], axis=1),
            "expansion": np.max(np.abs(remainder), axis=1) / (t**3 * r**3 / 24.0),
            "kl": np.max(np.abs(v["kl"] - R.kl(lp_in, lq_in)[:, :c]) / kl_scale[:, :c], axis=1),
            "hessian": np.linalg.norm(v["fisher"][:, 0] - f64(traced["hessian"]), axis=(-2, -1)) / unit[:, 0],
        })
    return _worst(*out)


T1C_CONFIGS = [dict(vocab=8, dim=4, _vmap=True), dict(vocab=64, dim=8, _eager=2), dict(vocab=256, dim=16)]


def check_t1c(key: jax.Array, n: int = 1000, timings: Timings | None = None, configs: list[dict] | None = None,
              **impl) -> list[CheckRow]:
    """T1c on heads with a shared mean vector of random strength (the anisotropic case)."""
    timings = timings or Timings()
    evs = evaluate("T1c", _draw_t1c, _direct_t1c, key, n, configs or T1C_CONFIGS, timings, impl, traced=_traced_t1c)
    res = residuals_over(evs, _residuals_t1c, timings)
    u, m = "eps·E_p‖φ‖²·(1+|z|∞)", modes_text(evs)
    return [
        # exact math; the slack covers rounding in a KL of size ~1e-2
        row("T1c", "|KL(t) - t²/2 uᵀFu| / (t³R³/24) ≤ 1", "ratio", res["expansion"], 1.0 + 1e4 * eps(),
            uses=("fisher", "kl", "log_probs"), modes=m),
        row("T1c", "F = Hessian of KL (autodiff of the implementation's KL ∘ log_probs)", u, res["hessian"], 24.0,
            kind="route", reference="jax.hessian of kl(log_probs(h), log_probs(h + λ)): shares kl and log_probs; "
            "second route reference.fisher", uses=("fisher", "kl", "log_probs"), modes=modes_text(evs, eager=False)),
        row("T1c", "F = float64 NumPy Σ_w p_w (φ_w - μ)(φ_w - μ)ᵀ", u, res["literal"], 24.0, kind="value",
            reference="reference.fisher", uses=("fisher",), modes=m),
        row("T1c", "KL(p‖q) = float64 NumPy Σ p(log p - log q)", "eps·(Σp(|log p|+|log q|)+1)", res["kl"], 8.0,
            kind="value", reference="reference.kl", uses=("kl",), modes=m),
    ]

"""Broken implementations of what `isojax check` verifies, each with the row that must catch it.

`MUTATIONS` is the registry tests/test_theory_mutations.py runs; `python -m tests.theory_mutations` runs them all
and writes, for each, every row that failed to docs/checks.md (section "mutations"), so the listing is generated.
Checks run on one small configuration and few instances here, to keep the tests quick.

A broken implementation reaches a check in one of two ways: as a keyword argument of the check (the function the
check calls), or, as a real bug would, by rebinding a library function in the same process before the check runs
(`patch`), so that everything that calls it, the check's own routes included, sees the broken one. The kinds of
miss an outside audit found are each here: references that shared the head's logits or probabilities, principal
directions from the centred covariance or from rows instead of columns, a sum over only the first 4096 tokens,
an eager-only fast path, functions wrong only on a batch or only under vmap, and the attention's wrapper and
custom_vjp wiring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from isojax import attention as att
from isojax import head, isotropy, theory
from isojax._validate import float_dtype
from isojax.theory import harness

N = 48


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str  # what is broken, in words
    check: str  # the CHECKS entry it goes through
    row: str  # the `compares` of the row that must fail
    kwargs: Callable[[], dict] = dict  # the broken implementation(s), as keyword arguments of the check
    patch: Callable[[], dict] = dict  # {"module.function": broken} rebound while the check runs
    small: tuple = ()  # (name, value) pairs that replace the check's small setting (configs, vocabs)
    dtypes: tuple[str, ...] = ("float32", "float64")  # where the mistake shows (a float32 cast is right in float32)

    def applies(self) -> bool:
        return str(float_dtype()) in self.dtypes

    def run(self) -> list[theory.CheckRow]:
        with _patched(self.patch()):
            return run_small(self.check, dict(self.small), **self.kwargs())


@contextlib.contextmanager
def _patched(patch: dict):
    """Rebind module attributes for the duration, and forget every compiled check program before and after
    (they were traced with the functions that were bound then)."""
    saved = []
    try:
        for path, fn in patch.items():
            module, name = path.rsplit(".", 1)
            mod = importlib.import_module(module)
            saved.append((mod, name, getattr(mod, name)))
            setattr(mod, name, fn)
        if patch:
            harness._PROGRAMS.clear()
        yield
    finally:
        for mod, name, fn in reversed(saved):
            setattr(mod, name, fn)
        if patch:
            harness._PROGRAMS.clear()


SMALL: dict[str, dict] = {
    "T1a": dict(key=1, configs=[dict(vocab=17, dim=8, _eager=1)]),
    "T1b": dict(key=2, configs=[dict(vocab=16, dim=24, rank=15, _eager=1)]),
    "T1c": dict(key=3, configs=[dict(vocab=64, dim=8, _eager=1)]),
    "T2ab": dict(key=4, configs=[dict(vocab=32, dim=8, _eager=1)]),
    "T2c": dict(key=5, n=8, steps=100),
    "T3": dict(key=6, configs=[theory.T3_CONFIGS[5]]),  # T5 options, causal + padding, queries with no key; eager
    "T4a": dict(key=7, n=2 * N, vocabs=(256,)),
    "T4b": dict(key=8, configs=[dict(vocab=64, dim=8, contexts=64, _eager=1)]),
    "T5a": dict(key=9, configs=[dict(vocab=8, contexts=16, _eager=1)]),
}
_VMAP = lambda check: (("configs", [{**SMALL[check]["configs"][0], "_vmap": True, "_eager": 0}]),)
_LARGE_V = {"T4a": (("vocabs", (8192,)), ("n", 24)),
            "T4b": (("configs", [dict(vocab=5000, dim=8, contexts=16, _eager=1)]),),
            "T5a": (("configs", [dict(vocab=5000, contexts=4, _eager=1)]),)}


def run_small(check: str, small: dict | None = None, **kwargs) -> list[theory.CheckRow]:
    """CHECKS[check] on its small setting (SMALL, updated by `small`), with the keyword arguments given."""
    setting = {"n": N, **SMALL[check], **(small or {})}
    key = jax.random.PRNGKey(setting.pop("key"))
    return theory.CHECKS[check](key, setting.pop("n"), **setting, **kwargs)


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _wrong_under_vmap(fn: Callable, wrong: Callable) -> Callable:
    """fn, except under vmap, where a custom batching rule (written wrong) computes `wrong` on the batch."""
    @jax.custom_batching.custom_vmap
    def one(*args):
        return fn(*args)

    @one.def_vmap
    def rule(axis_size, in_batched, *args):
        args = [a if b else jnp.broadcast_to(a, (axis_size, *jnp.shape(a))) for a, b in zip(args, in_batched)]
        return wrong(*args), True

    return lambda *args: one(*args)


# ---- T1 -----------------------------------------------------------------------------------------------------

def _naive_log_probs(phi, h, b=None):
    e = jnp.exp(head.logits(phi, h, b))
    return jnp.log(e / e.sum(-1, keepdims=True))


def _no_log_z(phi, h, b=None):
    z = head.logits(phi, h, b)
    return z - z.max(-1, keepdims=True)


def _square_term(phi, h, b=None):  # shift-invariant in z, but not log p
    z = head.logits(phi, h, b)
    return head.log_probs(phi, h, b) + 1e-3 * (z - z.mean(-1, keepdims=True)) ** 2


def _eager_naive_probs(phi, h, b=None):  # a "fast path" taken only on concrete arrays: no max shift
    if _concrete(h):
        e = jnp.exp(head.logits(phi, h, b))
        return e / e.sum(-1, keepdims=True)
    return head.probs(phi, h, b)


_REAL_LOGITS = head.logits


def _logits_bias_off(phi, h, b=None):  # the bias scaled by 1.001: shift-invariant, every invariance holds
    return _REAL_LOGITS(phi, h, None if b is None else 1.001 * jnp.asarray(b))


def _logits_plus_constant(phi, h, b=None):  # z + 1e-3: log p and every invariance unchanged
    return _REAL_LOGITS(phi, h, b) + 1e-3


def _fisher_no_outer(phi, h, b=None):
    p = head.probs(phi, h, b)
    return jnp.einsum("...v,vi,vj->...ij", p, phi, phi)


def _fisher_first_context(phi, h, b=None):  # right for one h; on a batch, every F from the first context
    f = head.fisher(phi, h, b)
    return f if jnp.ndim(h) == 1 else jnp.broadcast_to(f.reshape(-1, *f.shape[-2:])[0], f.shape)


_REAL_PROBS = head.probs


def _probs_tempered(phi, h, b=None):
    return jax.nn.softmax(head.logits(phi, h, b) / 1.001, -1)


def _kl_reversed(log_p, log_q):
    q = jnp.exp(log_q)
    return jnp.sum(q * (log_q - log_p), -1)


# ---- T2 -----------------------------------------------------------------------------------------------------

def _grad_phi_first_context(phi, h, y, b=None):  # right for one h; on a batch, the first h for all
    g = head.grad_logits(phi, h, y, b)
    first = jnp.reshape(jnp.asarray(h), (-1, jnp.shape(h)[-1]))[0]
    return g[..., :, None] * first


def _grad_logits_no_bias(phi, h, y, b=None):  # forgets b: wrong against both references
    return head.grad_logits(phi, h, y, None)


def _grad_h_uncentred_tempered(phi, h, y, b=None):
    g = jax.nn.softmax(head.logits(phi, h, b) / 1.001, -1) - jax.nn.one_hot(y, phi.shape[0], dtype=phi.dtype)
    return g @ head.centred_head(phi)


def _grad_phi_tempered(phi, h, y, b=None):
    g = jax.nn.softmax(head.logits(phi, h, b) / 1.001, -1) - jax.nn.one_hot(y, phi.shape[0], dtype=phi.dtype)
    return g[..., :, None] * jnp.asarray(h)[..., None, :]


def _push_bias(amount: float) -> optax.GradientTransformation:
    """Adds `amount` to every bias update: φ̄ untouched, Σb drifts."""
    def update(updates, state, params=None):
        return {**updates, "b": updates["b"] + amount}, state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _eager_rate(rate: float, eager_rate: float) -> optax.GradientTransformation:
    """SGD at `rate`, but at `eager_rate` when called on concrete arrays (a fast path outside jit)."""
    def update(updates, state, params=None):
        lr = eager_rate if _concrete(updates["phi"]) else rate
        return jax.tree.map(lambda g: -lr * g, updates), state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


_OPT = {}  # one object per broken optimizer, built on first use


def _opt(name, build):
    return _OPT.setdefault(name, build())


# ---- T3 -----------------------------------------------------------------------------------------------------

def _attention_with(mask_fn):
    """A forward pass whose mask is mask_fn(T, causal, key_mask) instead of attention.attention_mask."""
    def forward(params, x, causal=False, key_mask=None, bias=None, scale=None):
        return att._forward(params, x, mask_fn(x.shape[0], causal, key_mask), bias, scale)
    return forward


def _strict_causal(length, causal, key_mask):  # hides the diagonal: too much
    allowed = jnp.tril(jnp.ones((length, length), bool), k=-1 if causal else 0)
    return allowed if key_mask is None else allowed & key_mask[None, :]


def _next_key_too(length, causal, key_mask):  # off by one the other way: shows key i+1 to query i
    allowed = jnp.tril(jnp.ones((length, length), bool), k=1 if causal else 0)
    return allowed if key_mask is None else allowed & key_mask[None, :]


def _padding_ignored(length, causal, key_mask):  # hides too little
    return att.attention_mask(length, causal, None)


def _eager_forward_unmasked(params, x, causal=False, key_mask=None, bias=None, scale=None):
    """A fast path taken only on concrete arrays: the mask dropped."""
    if _concrete(x):
        return att._forward(params, x, jnp.ones((x.shape[0], x.shape[0]), bool), bias, scale)
    return att.attention_forward(params, x, causal, key_mask, bias, scale)


def _forward_without_bias(params, x, causal=False, key_mask=None, bias=None, scale=None):
    return att.attention_forward(params, x, causal, key_mask, None, scale)


def _wrapper_without_padding(params, x, causal=False, key_mask=None, bias=None, scale=None):
    return att.attention_forward(params, x, causal, None, bias, scale)[0]


def _nan_attend(q, k, v, allowed, bias=None, scale=None):  # the softmax over no key: NaN for a query that sees nothing
    s = att.score_factor(scale, q.shape[-1]) * jnp.einsum("htk,hsk->hts", q, k)
    s = s if bias is None else s + bias
    a = jax.nn.softmax(jnp.where(allowed, s, -jnp.inf), axis=-1)
    return jnp.einsum("hts,hsv->htv", a, v), a


def _distance_attend(q, k, v, allowed, bias=None, scale=None):  # scores -|q - k|²: not invariant to translating K
    s = -jnp.sum((q[:, :, None, :] - k[:, None, :, :]) ** 2, -1) / math.sqrt(q.shape[-1])
    a = jax.nn.softmax(jnp.where(allowed, s, -1e30), axis=-1)
    return jnp.einsum("hts,hsv->htv", a, v), a


def _key_mean_leak(q, k, v, allowed, bias=None, scale=None):  # O moves with K + 1cᵀ, G_Q does not
    o, a = att.attend(q, k, v, allowed, bias, scale)
    return o + 1e-2 * jnp.sum(k.mean(axis=1), axis=-1)[:, None, None], a


def _transposed_g_k(params, x, cache, g_y):
    good = att.attention_backward(params, x, cache, g_y)
    g_k = jnp.einsum("hts,hsk->htk", good.scores, cache.q) * cache.scale  # G_S Q instead of G_Sᵀ Q
    return good._replace(params=good.params.replace(w_k=jnp.einsum("td,htk->hdk", x, g_k)))


def _no_rowsum_term(params, x, cache, g_y):
    good = att.attention_backward(params, x, cache, g_y)
    g_o = jnp.einsum("td,hvd->htv", g_y, params.w_o)
    return good._replace(scores=cache.a * jnp.einsum("htv,hsv->hts", g_o, cache.v))


def _scores_doubled(params, x, cache, g_y):
    good = att.attention_backward(params, x, cache, g_y)
    return good._replace(scores=2.0 * good.scores)


def _float32_backward(params, x, cache, g_y):  # a hard-coded float32 cast: fine in float32, wrong in float64
    down = lambda t: jax.tree.map(lambda a: a.astype(jnp.float32).astype(a.dtype), t)
    return att.attention_backward(down(params), down(x), down(cache), down(g_y))


def _g_v_untransposed(params, x, cache, g_y):
    good = att.attention_backward(params, x, cache, g_y)
    g_o = jnp.einsum("td,hvd->htv", g_y, params.w_o)
    g_v = jnp.einsum("hts,hsv->htv", cache.a, g_o)
    return good._replace(params=good.params.replace(w_v=jnp.einsum("td,htv->hdv", x, g_v)))


def _default_scale_backward(params, x, cache, g_y):  # forgets the cache's scale: 1/√d_k always (issue 19's bug)
    return att.attention_backward(params, x, cache._replace(scale=None), g_y)


def _key_bias_in_closed_form(params, x, cache, g_y):
    good = att.attention_backward(params, x, cache, g_y)
    return good._replace(params=good.params.replace(b_k=good.params.b_k + 1e-3))


def _qk_norm(stop_bias: bool):
    """Keys normalised to unit length (QK-norm): the key bias no longer cancels in softmax."""
    def forward(params, x, causal=False, key_mask=None, bias=None, scale=None):
        b_k = jax.lax.stop_gradient(params.b_k) if stop_bias else params.b_k
        q = att._project(x, params.w_q, params.b_q)
        k = att._project(x, params.w_k, b_k)
        k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
        v = att._project(x, params.w_v, params.b_v)
        o, a = att.attend(q, k, v, att.attention_mask(x.shape[0], causal, key_mask), bias, scale)
        y = jnp.einsum("htv,hvd->td", o, params.w_o) + params.b_o
        return y, att.AttentionCache(q, k, v, a, o, jnp.asarray(att.score_factor(scale, q.shape[-1]), x.dtype), bias)
    return forward


def _closed_form_dropping(field: str):
    """self_attention_closed_form whose custom_vjp returns a zero gradient for `field` (a wiring mistake)."""
    @jax.custom_vjp
    def cf(params, x, allowed, bias, scale):
        return att._forward(params, x, allowed, bias, scale)[0]

    def fwd(params, x, allowed, bias, scale):
        y, cache = att._forward(params, x, allowed, bias, scale)
        return y, (params, x, allowed, cache, scale)

    def bwd(res, g_y):
        params, x, allowed, cache, scale = res
        g = att.attention_backward(params, x, cache, g_y)
        g_params = g.params.replace(**{field: jnp.zeros_like(getattr(g.params, field))}) \
            if field in ("b_v", "b_q", "w_o") else g.params
        g_bias = None if g.bias is None else (jnp.zeros_like(g.bias) if field == "bias" else g.bias)
        return (g_params, g.x, jnp.zeros_like(allowed, dtype=jax.dtypes.float0), g_bias,
                None if scale is None else g.scale.astype(scale.dtype))

    cf.defvjp(fwd, bwd)

    def closed_form(params, x, causal=False, key_mask=None, bias=None, scale=None):
        s = None if scale is None else jnp.asarray(scale, x.dtype)
        return cf(params, x, att.attention_mask(x.shape[0], causal, key_mask), bias, s)
    return closed_form


# ---- T4 -----------------------------------------------------------------------------------------------------

def _isotropy_from(directions: Callable) -> Callable:
    """partition_isotropy with the principal directions computed by `directions(phi) -> [d, d] rows`."""
    def partition_isotropy(phi):
        e = directions(phi)
        lz = isotropy.log_partition_along(phi, jnp.concatenate([e, -e]))
        return jnp.exp(lz.min() - lz.max())
    return partition_isotropy


def _centred_covariance_directions(phi):  # the covariance's eigenvectors, not ΦᵀΦ's
    c = phi - phi.mean(0)
    return jnp.linalg.eigh(c.T @ c)[1].T


def _eigenvector_rows(phi):  # rows of the eigenvector matrix instead of its columns
    return jnp.linalg.eigh(phi.T @ phi)[1]


def _first_4096(fn: Callable) -> Callable:
    """fn over only the first 4096 tokens (rows of Φ)."""
    return lambda phi, *args: fn(phi[:4096], *args)


def _log_partition_first_4096(phi, h, b=None):
    return head.log_partition(phi[:4096], h, None if b is None else b[:4096])


def _expected_value_first_4096(log_p, values):
    return jnp.exp(log_p[..., :4096]) @ values[:4096]


MUTATIONS: list[Mutation] = [
    # T1a
    Mutation("log-softmax as log(exp z / Σ exp z)", "T1a", "log_softmax(z+a1) = log_softmax(z)",
             lambda: dict(log_probs=_naive_log_probs)),
    Mutation("softmax as exp z / Σ exp z (no max shift)", "T1a", "softmax(z+a1) = softmax(z)",
             lambda: dict(probs=theory.naive_probs)),
    Mutation("softmax without max shift on concrete arrays only (an eager fast path)", "T1a",
             "softmax(z+a1) = softmax(z)", lambda: dict(probs=_eager_naive_probs)),
    Mutation("logsumexp as log Σ exp z (no max shift)", "T1a", "logsumexp(z+a1) = logsumexp(z) + a",
             lambda: dict(log_partition=lambda phi, h, b=None: jnp.log(jnp.sum(jnp.exp(head.logits(phi, h, b)), -1)))),
    Mutation("log-probs z - max z (log Z dropped; shift-invariant)", "T1a",
             "log_probs = float64 NumPy log-softmax of Φh + b", lambda: dict(log_probs=_no_log_z)),
    Mutation("head.logits rebound: bias scaled by 1.001 (the old reference shared it)", "T1a",
             "log_probs = float64 NumPy log-softmax of Φh + b", patch=lambda: {"isojax.head.logits": _logits_bias_off}),
    Mutation("softmax at temperature 1.001 (shift-invariant)", "T1a", "probs = float64 NumPy softmax of Φh + b",
             lambda: dict(probs=_probs_tempered)),
    Mutation("probs right for one h, normalised over the batch under vmap", "T1a",
             "probs = float64 NumPy softmax of Φh + b",
             lambda: dict(probs=_wrong_under_vmap(head.probs, lambda phi, h, b: jax.nn.softmax(
                 jax.vmap(head.logits)(phi, h, b), axis=0))), small=_VMAP("T1a")),
    Mutation("log-mean-exp for logsumexp (log V dropped)", "T1a", "log_partition = float64 NumPy logsumexp of Φh + b",
             lambda: dict(log_partition=lambda phi, h, b=None: head.log_partition(phi, h, b) - math.log(phi.shape[0]))),
    # T1b
    Mutation("log-probs with a term in |h|²", "T1b", "p(·|h+λ) = p(·|h) for λ ∈ null(Φ_c)",
             lambda: dict(log_probs=lambda phi, h, b=None: head.log_probs(phi, h, b)
                          + 1e-3 * jnp.sum(jnp.asarray(h) ** 2, -1, keepdims=True))),
    Mutation("cosine logits Φh/|h|", "T1b", "logits(h+λ) - logits(h) ∈ span(1) for λ ∈ null(Φ_c)",
             lambda: dict(logits=lambda phi, h, b=None: head.logits(phi, h / jnp.linalg.norm(h, axis=-1,
                                                                                            keepdims=True), b))),
    Mutation("centred head = Φ (mean not removed)", "T1b", "centred_head = float64 NumPy (I - 11ᵀ/V)Φ",
             lambda: dict(centred_head=lambda phi: phi)),
    Mutation("log-probs + 1e-3(z - z̄)² (right invariance, wrong value)", "T1b",
             "centre(Δ log p) = Φ_c λ for any λ (iff)", lambda: dict(log_probs=_square_term)),
    Mutation("logits Φh + 1e-3 (a constant: every invariance holds)", "T1b", "logits = float64 NumPy Φh",
             lambda: dict(logits=_logits_plus_constant)),
    # T1c
    Mutation("Fisher without -ppᵀ", "T1c", "F = float64 NumPy Σ_w p_w (φ_w - μ)(φ_w - μ)ᵀ",
             lambda: dict(fisher=_fisher_no_outer)),
    Mutation("head.probs rebound to temperature 1.001 (the old literal F shared it)", "T1c",
             "F = float64 NumPy Σ_w p_w (φ_w - μ)(φ_w - μ)ᵀ", patch=lambda: {"isojax.head.probs": _probs_tempered}),
    Mutation("Fisher right for one h, the first context's F for a batch", "T1c",
             "F = float64 NumPy Σ_w p_w (φ_w - μ)(φ_w - μ)ᵀ", lambda: dict(fisher=_fisher_first_context)),
    Mutation("Fisher right for one h, the batch's mean F under vmap", "T1c",
             "F = float64 NumPy Σ_w p_w (φ_w - μ)(φ_w - μ)ᵀ",
             lambda: dict(fisher=_wrong_under_vmap(head.fisher, lambda phi, h: (
                 lambda f: jnp.broadcast_to(f.mean(0), f.shape))(jax.vmap(head.fisher)(phi, h)))), small=_VMAP("T1c")),
    Mutation("KL in bits", "T1c", "F = Hessian of KL (autodiff of the implementation's KL ∘ log_probs)",
             lambda: dict(kl=lambda lp, lq: head.kl_divergence(lp, lq) / math.log(2.0))),
    Mutation("KL + 10·KL^1.5 (right to second order)", "T1c", "|KL(t) - t²/2 uᵀFu| / (t³R³/24) ≤ 1",
             lambda: dict(kl=lambda lp, lq: head.kl_divergence(lp, lq) + 10.0 * head.kl_divergence(lp, lq) ** 1.5)),
    Mutation("KL(q‖p) for KL(p‖q)", "T1c", "KL(p‖q) = float64 NumPy Σ p(log p - log q)", lambda: dict(kl=_kl_reversed)),
    # T2ab
    Mutation("∇_z ℓ = p - e_y + 1e-3 (unnormalised p)", "T2ab", "1ᵀ∇_z ℓ = 0 (closed form)",
             lambda: dict(grad_logits=lambda phi, h, y, b=None: head.grad_logits(phi, h, y, b) + 1e-3)),
    Mutation("∇_z ℓ = e_y - p (wrong sign)", "T2ab", "∇_z ℓ = float64 NumPy p - e_y",
             lambda: dict(grad_logits=lambda phi, h, y, b=None: -head.grad_logits(phi, h, y, b))),
    Mutation("head.logits rebound: bias scaled by 1.001 (the old autodiff route shared it)", "T2ab",
             "∇_z ℓ = float64 NumPy p - e_y", patch=lambda: {"isojax.head.logits": _logits_bias_off}),
    Mutation("∇_z ℓ without the bias b", "T2ab", "∇_z ℓ = autodiff of a cross-entropy written apart",
             lambda: dict(grad_logits=_grad_logits_no_bias)),
    Mutation("∇_h ℓ + 0.01 φ̄", "T2ab", "grad_h unchanged by Φ -> Φ + 1cᵀ",
             lambda: dict(grad_h=lambda phi, h, y, b=None: head.grad_h(phi, h, y, b) + 1e-2 * phi.mean(0))),
    Mutation("∇_h ℓ = ½Φ_cᵀ(p - e_y) (factor dropped; invariant)", "T2ab", "∇_h ℓ = float64 NumPy Φ_cᵀ(p - e_y)",
             lambda: dict(grad_h=lambda phi, h, y, b=None: 0.5 * head.grad_h(phi, h, y, b))),
    Mutation("∇_h ℓ from p at temperature 1.001", "T2ab", "∇_h ℓ = autodiff of a cross-entropy written apart",
             lambda: dict(grad_h=_grad_h_uncentred_tempered)),
    Mutation("∇_Φ ℓ = (p + 1e-3 - e_y)hᵀ", "T2ab", "Σ_w ∇_φw ℓ = 0 (closed form)",
             lambda: dict(grad_phi=lambda phi, h, y, b=None: head.grad_phi(phi, h, y, b) + 1e-3 * jnp.asarray(h)[
                 ..., None, :])),
    Mutation("∇_Φ ℓ = -(p - e_y)hᵀ (wrong sign)", "T2ab", "∇_Φ ℓ = float64 NumPy (p - e_y)hᵀ",
             lambda: dict(grad_phi=lambda phi, h, y, b=None: -head.grad_phi(phi, h, y, b))),
    Mutation("∇_Φ ℓ right for one h, the first h for a whole batch", "T2ab", "∇_Φ ℓ = float64 NumPy (p - e_y)hᵀ",
             lambda: dict(grad_phi=_grad_phi_first_context)),
    Mutation("∇_Φ ℓ from p at temperature 1.001", "T2ab", "∇_Φ ℓ = autodiff of a cross-entropy written apart",
             lambda: dict(grad_phi=_grad_phi_tempered)),
    # T2c
    Mutation("SGD with weight decay 1e-3", "T2c", "φ̄ conserved by SGD at each of 100 steps",
             lambda: dict(optimizer=_opt("wd", lambda: optax.chain(optax.add_decayed_weights(1e-3), optax.sgd(0.1))))),
    Mutation("SGD that pushes the biases by 1e-4", "T2c", "Σb conserved by SGD at each of 100 steps",
             lambda: dict(optimizer=_opt("push", lambda: optax.chain(optax.sgd(0.1), _push_bias(1e-4))))),
    Mutation("SGD with momentum 0.9 (conserves φ̄ too)", "T2c",
             "each optimizer step = SGD step of a softmax written apart",
             lambda: dict(optimizer=_opt("momentum", lambda: optax.sgd(0.1, momentum=0.9)))),
    Mutation("SGD at rate 0.11 for 0.1", "T2c", "first and last optimizer step = float64 NumPy SGD step",
             lambda: dict(optimizer=_opt("rate", lambda: optax.sgd(0.11)))),
    Mutation("SGD at rate 0.11 on concrete arrays only (an eager fast path)", "T2c",
             "first and last optimizer step = float64 NumPy SGD step",
             lambda: dict(optimizer=_opt("eager-rate", lambda: _eager_rate(0.1, 0.11)))),
    Mutation("the contrast is SGD, not Adam", "T2c", "Adam breaks it: SGD drift / Adam drift, same run",
             lambda: dict(contrast=_opt("sgd-contrast", lambda: optax.sgd(0.1)))),
    # T3
    Mutation("causal mask shows key i+1 to query i", "T3",
             "attention_mask = float64 NumPy loop over (query, key) pairs",
             lambda: dict(mask=_next_key_too)),
    Mutation("forward hides the diagonal (strict causal)", "T3", "pairs with ∂y_i/∂x_j ≠ 0 via K, V = the mask",
             lambda: dict(forward=_attention_with(_strict_causal))),
    Mutation("forward shows key i+1 to query i", "T3", "pairs with ∂y_i/∂x_j ≠ 0 via K, V = the mask",
             lambda: dict(forward=_attention_with(_next_key_too))),
    Mutation("forward ignores padding (hides too little)", "T3", "pairs with ∂y_i/∂x_j ≠ 0 via K, V = the mask",
             lambda: dict(forward=_attention_with(_padding_ignored))),
    Mutation("forward drops the mask on concrete arrays only (an eager fast path)", "T3",
             "forward y = float64 NumPy attention (loop over heads, queries)",
             lambda: dict(forward=_eager_forward_unmasked)),
    Mutation("forward ignores the additive score bias", "T3",
             "forward y = float64 NumPy attention (loop over heads, queries)",
             lambda: dict(forward=_forward_without_bias)),
    Mutation("self_attention (the wrapper) drops key_mask", "T3",
             "self_attention (the transformer's call) = float64 NumPy attention",
             lambda: dict(self_attention=_wrapper_without_padding)),
    Mutation("softmax over no key gives NaN", "T3", "query seeing no key: y_i = b_O, A_i = 0, zero grads",
             lambda: dict(attend=_nan_attend)),
    Mutation("QK-norm keys: b_K stops cancelling", "T3", "∂ℓ/∂b_K = 0 by autodiff",
             lambda: dict(forward=_qk_norm(False))),
    Mutation("closed-form ∂ℓ/∂b_K = Σ G_K + 1e-3", "T3", "∂ℓ/∂b_K = 0 in closed form",
             lambda: dict(backward=_key_bias_in_closed_form)),
    Mutation("QK-norm keys with b_K behind stop_gradient", "T3", "output unchanged by b_K -> b_K + δ",
             lambda: dict(forward=_qk_norm(True))),
    Mutation("G_S = A ⊙ G_A (row-sum term dropped)", "T3", "rows of G_S sum to 0",
             lambda: dict(backward=_no_rowsum_term)),
    Mutation("transposed G_K (G_S Q for G_Sᵀ Q)", "T3",
             "closed-form VJP vs jax.vjp of the forward, every parameter and x",
             lambda: dict(backward=_transposed_g_k)),
    Mutation("G_V = A G_O (A not transposed)", "T3",
             "closed-form backward = float64 NumPy gradients (every parameter, x, score bias)",
             lambda: dict(backward=_g_v_untransposed)),
    Mutation("backward uses 1/√d_k whatever scale the forward recorded", "T3",
             "closed-form backward = float64 NumPy gradients (every parameter, x, score bias)",
             lambda: dict(backward=_default_scale_backward)),
    Mutation("backward rounds to float32 whatever the dtype", "T3",
             "float64 closed form = float64 NumPy gradients (docs/theory.md: ≤ 1e-10)",
             lambda: dict(backward=_float32_backward), dtypes=("float64",)),
    Mutation("custom_vjp drops the b_V gradient", "T3",
             "custom_vjp gradients = float64 NumPy (every parameter, x, score bias)",
             lambda: dict(closed_form=_closed_form_dropping("b_v"))),
    Mutation("custom_vjp drops the score bias's gradient (T5's relative positions)", "T3",
             "T5 path (scale 1, relative-position bias): custom_vjp = float64 NumPy",
             lambda: dict(closed_form=_closed_form_dropping("bias"))),
    Mutation("distance scores -|q - k|²", "T3", "G_Q unchanged by K -> K + 1cᵀ", lambda: dict(attend=_distance_attend)),
    Mutation("output picks up the mean key", "T3", "O unchanged by K -> K + 1cᵀ", lambda: dict(attend=_key_mean_leak)),
    Mutation("G_S reported twice too large", "T3", "G_Q = s·G_S(K - 1k̄ᵀ) for any k̄",
             lambda: dict(backward=_scores_doubled)),
    # T4a
    Mutation("closed form without ½cᵀΣc", "T4a", "mean of log Z(c) - closed form ≈ 0, V=256",
             lambda: dict(closed_form=lambda mu, cov, d, vocab: math.log(vocab) + (d @ mu[..., None])[..., 0])),
    Mutation("log_partition_along as log-mean-exp", "T4a", "mean of log Z(c) - closed form ≈ 0, V=256",
             lambda: dict(log_partition_along=lambda phi, c: (
                 isotropy.log_partition_along(phi, c) - math.log(phi.shape[0])))),
    Mutation("log_partition_along at -c (sign flipped; no mean error)", "T4a", "log Z(c) vs log V + μᵀc + ½cᵀΣc, V=256",
             lambda: dict(log_partition_along=lambda phi, c: isotropy.log_partition_along(phi, -c))),
    Mutation("partition isotropy over +u only (one sign)", "T4a",
             "log partition_isotropy(Φ) vs closed form at NumPy eigh(ΦᵀΦ), V=256",
             lambda: dict(partition_isotropy=lambda phi: (lambda lz: jnp.exp(lz.min() - lz.max()))(
                 isotropy.log_partition_along(phi, isotropy.principal_directions(phi)[: phi.shape[1]])))),
    Mutation("principal directions from the centred covariance", "T4a",
             "log partition_isotropy = float64 NumPy (eigh of ΦᵀΦ, both signs)",
             lambda: dict(partition_isotropy=_isotropy_from(_centred_covariance_directions))),
    Mutation("principal directions from rows of the eigenvector matrix", "T4a",
             "log partition_isotropy = float64 NumPy (eigh of ΦᵀΦ, both signs)",
             lambda: dict(partition_isotropy=_isotropy_from(_eigenvector_rows))),
    Mutation("isotropy.principal_directions rebound to the centred covariance's (the old closed form shared it)",
             "T4a", "log partition_isotropy = float64 NumPy (eigh of ΦᵀΦ, both signs)",
             patch=lambda: {"isojax.isotropy.spectrum.principal_directions": lambda phi: (
                 lambda e: jnp.concatenate([e, -e]))(_centred_covariance_directions(phi))}),
    Mutation("log Z along c over the first 4096 tokens", "T4a", "log_partition_along = float64 NumPy logsumexp of Φc",
             lambda: dict(log_partition_along=_first_4096(isotropy.log_partition_along)), small=_LARGE_V["T4a"]),
    # T4b
    Mutation("log p = z - max z (log Z dropped)", "T4b", "RMS of affine-fit residual ≤ RMS(log Z - mean) ≤ ε_Z",
             lambda: dict(log_probs=_no_log_z)),
    Mutation("log p + 1e-3(z - z̄)² (a non-affine term)", "T4b",
             "affine-fit residual of log p(w|·) = that of -log Z, ∀w", lambda: dict(log_probs=_square_term)),
    Mutation("log Z halved", "T4b", "RMS of affine-fit residual ≤ RMS(log Z - mean) ≤ ε_Z",
             lambda: dict(log_partition=lambda phi, c, b=None: 0.5 * head.log_partition(phi, c, b))),
    Mutation("log p off by a constant 1e-2 (unnormalised)", "T4b", "log p(w|c) = float64 NumPy log-softmax of Φc",
             lambda: dict(log_probs=lambda phi, c, b=None: head.log_probs(phi, c, b) + 1e-2)),
    Mutation("log Z + log V", "T4b", "log Z(c) = float64 NumPy logsumexp of Φc",
             lambda: dict(log_partition=lambda phi, c, b=None: head.log_partition(phi, c, b) + math.log(phi.shape[0]))),
    Mutation("log Z over the first 4096 tokens", "T4b", "log Z(c) = float64 NumPy logsumexp of Φc",
             lambda: dict(log_partition=_log_partition_first_4096), small=_LARGE_V["T4b"]),
    # T5a
    Mutation("mode (argmax) forecast for the mean", "T5a", "|ŷ - y| ≤ B‖p_f - p*‖₁",
             lambda: dict(expected_value=lambda lp, v: v[jnp.argmax(lp, axis=-1)])),
    Mutation("KL in log base 10", "T5a", "E_s(ŷ - y)² ≤ 2B²ε",
             lambda: dict(kl=lambda lp, lq: head.kl_divergence(lp, lq) / math.log(10.0))),
    Mutation("KL of the next context (misaligned batch; same mean)", "T5a", "(ŷ - y)² ≤ 2B²·KL(p*‖p_f)",
             lambda: dict(kl=lambda lp, lq: jnp.roll(head.kl_divergence(lp, lq), 1, axis=-1))),
    Mutation("ŷ without the offset of the values (Σ(v - v₀)p)", "T5a", "ŷ = float64 NumPy Σ_w v_w p_w, for p_f and p*",
             lambda: dict(expected_value=lambda lp, v: head.expected_value(lp, v) - v[0])),
    Mutation("ŷ over the first 4096 tokens", "T5a", "ŷ = float64 NumPy Σ_w v_w p_w, for p_f and p*",
             lambda: dict(expected_value=_expected_value_first_4096), small=_LARGE_V["T5a"]),
    Mutation("KL + 1e-3 (smoothed)", "T5a", "KL(p*‖p_f) = float64 NumPy Σ p*(log p* - log p_f)",
             lambda: dict(kl=lambda lp, lq: head.kl_divergence(lp, lq) + 1e-3)),
]


def report() -> str:
    """Run every mutation; a markdown table of the rows each one fails, the first of them in bold."""
    lines = ["| broken implementation | check | rows that fail (first in bold) | named row fails |",
             "|---|---|---|---|"]
    for m in MUTATIONS:
        if not m.applies():
            lines.append(f"| {m.name} | {m.check} | (shows in {', '.join(m.dtypes)} only) | n/a |")
            continue
        failed = [r.compares for r in m.run() if r.applicable and not r.passed]
        shown = [f"**{c}**" if i == 0 else c for i, c in enumerate(failed)]
        lines.append(f"| {m.name} | {m.check} | {'; '.join(shown) or 'none'} | {'yes' if m.row in failed else 'NO'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root), str(root / "benchmarks")]  # check_seeds imports benchmarks/_common first
    from benchmarks.check_seeds import write_section

    text = report()
    print(text)
    write_section(f"mutations {float_dtype()}", text)

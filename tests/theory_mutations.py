"""Broken implementations of what `isojax check` verifies, each with the row that must catch it.

`MUTATIONS` is the registry tests/test_theory_mutations.py runs; `python -m tests.theory_mutations` runs them all
and writes, for each, every row that failed to docs/checks.md (section "mutations"), so the listing is generated.
Checks run on small configurations and few instances here, to keep the tests quick.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from isojax import attention as att
from isojax import head, isotropy, theory

N = 48


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str  # what is broken, in words
    check: str  # the CHECKS entry it goes through
    row: str  # the `compares` of the row that must fail (the first failing row, where the report says so)
    kwargs: Callable[[], dict]  # the broken implementation(s), as keyword arguments of the check

    def run(self) -> list[theory.CheckRow]:
        return SMALL[self.check](**self.kwargs())


_t3 = [theory.T3_CONFIGS[5]]  # causal + padding, d_v ≠ d_k, queries with no key
SMALL: dict[str, Callable[..., list]] = {
    "T1a": lambda **kw: theory.check_t1a(jax.random.PRNGKey(1), N, configs=[dict(vocab=17, dim=8)], **kw),
    "T1b": lambda **kw: theory.check_t1b(jax.random.PRNGKey(2), N, configs=[dict(vocab=16, dim=24, rank=15)], **kw),
    "T1c": lambda **kw: theory.check_t1c(jax.random.PRNGKey(3), N, configs=[dict(vocab=64, dim=8)], **kw),
    "T2ab": lambda **kw: theory.check_t2ab(jax.random.PRNGKey(4), N, configs=[dict(vocab=32, dim=8)], **kw),
    "T2c": lambda **kw: theory.check_t2c_training(jax.random.PRNGKey(5), 8, steps=100, **kw),
    "T3": lambda **kw: theory.check_t3(jax.random.PRNGKey(6), N, configs=_t3, **kw),
    "T4a": lambda **kw: theory.check_t4a(jax.random.PRNGKey(7), 2 * N, vocabs=(256,), **kw),  # the smallest V
    "T4b": lambda **kw: theory.check_t4b(jax.random.PRNGKey(8), N, configs=[dict(vocab=64, dim=8, contexts=64)], **kw),
    "T5a": lambda **kw: theory.check_t5a(jax.random.PRNGKey(9), N, configs=[dict(vocab=8, contexts=16)], **kw),
}


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


def _fisher_no_outer(phi, h, b=None):
    p = head.probs(phi, h, b)
    return phi.T @ jnp.diag(p) @ phi


def _kl_reversed(log_p, log_q):
    q = jnp.exp(log_q)
    return jnp.sum(q * (log_q - log_p), -1)


def _attention_with(mask_fn):
    """A forward pass whose mask is mask_fn(T, causal, key_mask) instead of attention.attention_mask."""
    def forward(params, x, causal=False, key_mask=None):
        return att._forward(params, x, mask_fn(x.shape[0], causal, key_mask))
    return forward


def _strict_causal(length, causal, key_mask):  # hides the diagonal: too much
    allowed = jnp.tril(jnp.ones((length, length), bool), k=-1 if causal else 0)
    return allowed if key_mask is None else allowed & key_mask[None, :]


def _next_key_too(length, causal, key_mask):  # off by one the other way: shows key i+1 to query i
    allowed = jnp.tril(jnp.ones((length, length), bool), k=1 if causal else 0)
    return allowed if key_mask is None else allowed & key_mask[None, :]


def _padding_ignored(length, causal, key_mask):  # hides too little
    return att.attention_mask(length, causal, None)


def _nan_attend(q, k, v, allowed):  # the softmax over no key: NaN for a query that sees nothing
    s = jnp.einsum("htk,hsk->hts", q, k) / math.sqrt(q.shape[-1])
    a = jax.nn.softmax(jnp.where(allowed, s, -jnp.inf), axis=-1)
    return jnp.einsum("hts,hsv->htv", a, v), a


def _distance_attend(q, k, v, allowed):  # scores -|q - k|²: not invariant to translating the keys
    s = -jnp.sum((q[:, :, None, :] - k[:, None, :, :]) ** 2, -1) / math.sqrt(q.shape[-1])
    a = jax.nn.softmax(jnp.where(allowed, s, -1e30), axis=-1)
    return jnp.einsum("hts,hsv->htv", a, v), a


def _key_mean_leak(q, k, v, allowed):  # output picks up the mean key: O moves with K + 1cᵀ, G_Q does not
    o, a = att.attend(q, k, v, allowed)
    return o + 1e-2 * jnp.sum(k.mean(axis=1), axis=-1)[:, None, None], a


def _transposed_g_k(params, x, cache, g_y):
    good = att.attention_backward(params, x, cache, g_y)
    g_s = good.scores
    g_k = jnp.einsum("hts,hsk->htk", g_s, cache.q) / math.sqrt(cache.q.shape[-1])  # G_S Q instead of G_Sᵀ Q
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
    good = att.attention_backward(down(params), down(x), down(cache), down(g_y))
    return good


def _g_v_untransposed(params, x, cache, g_y):
    good = att.attention_backward(params, x, cache, g_y)
    g_o = jnp.einsum("td,hvd->htv", g_y, params.w_o)
    g_v = jnp.einsum("hts,hsv->htv", cache.a, g_o)  # A G_O instead of Aᵀ G_O
    return good._replace(params=good.params.replace(w_v=jnp.einsum("td,htv->hdv", x, g_v)))


def _key_bias_in_closed_form(params, x, cache, g_y):
    good = att.attention_backward(params, x, cache, g_y)
    return good._replace(params=good.params.replace(b_k=good.params.b_k + 1e-3))


def _qk_norm(stop_bias: bool):
    """Keys normalised to unit length (QK-norm): the key bias no longer cancels in softmax."""
    def forward(params, x, causal=False, key_mask=None):
        b_k = jax.lax.stop_gradient(params.b_k) if stop_bias else params.b_k
        q = att._project(x, params.w_q, params.b_q)
        k = att._project(x, params.w_k, b_k)
        k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
        v = att._project(x, params.w_v, params.b_v)
        o, a = att.attend(q, k, v, att.attention_mask(x.shape[0], causal, key_mask))
        y = jnp.einsum("htv,hvd->td", o, params.w_o) + params.b_o
        return y, att.AttentionCache(q, k, v, a, o)
    return forward


# ---- T2c optimizers -------------------------------------------------------------------------------------------

def _push_bias(amount: float) -> optax.GradientTransformation:
    """Adds `amount` to every bias update: φ̄ untouched, Σb drifts."""
    def update(updates, state, params=None):
        return {**updates, "b": updates["b"] + amount}, state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


_OPT = {}  # one object per broken optimizer, built on first use


def _opt(name, build):
    return _OPT.setdefault(name, build())


MUTATIONS: list[Mutation] = [
    # T1a
    Mutation("log-softmax as log(exp z / Σ exp z)", "T1a", "log_softmax(z+a1) = log_softmax(z)",
             lambda: dict(log_probs=_naive_log_probs)),
    Mutation("softmax as exp z / Σ exp z (no max shift)", "T1a", "softmax(z+a1) = softmax(z)",
             lambda: dict(probs=theory.naive_probs)),
    Mutation("logsumexp as log Σ exp z (no max shift)", "T1a", "logsumexp(z+a1) = logsumexp(z) + a",
             lambda: dict(log_partition=lambda phi, h, b=None: jnp.log(jnp.sum(jnp.exp(head.logits(phi, h, b)), -1)))),
    Mutation("log-probs z - max z (log Z dropped; shift-invariant)", "T1a",
             "log_probs = z - m - log Σexp(z - m) (reference)", lambda: dict(log_probs=_no_log_z)),
    Mutation("softmax at temperature 1.001 (shift-invariant)", "T1a", "probs = exp(reference log_softmax)",
             lambda: dict(probs=lambda phi, h, b=None: jax.nn.softmax(head.logits(phi, h, b) / 1.001, -1))),
    Mutation("log-mean-exp for logsumexp (log V dropped)", "T1a", "log_partition = m + log Σexp(z - m) (reference)",
             lambda: dict(log_partition=lambda phi, h, b=None: head.log_partition(phi, h, b) - math.log(phi.shape[0]))),
    # T1b
    Mutation("log-probs with a term in |h|²", "T1b", "p(·|h+λ) = p(·|h) for λ ∈ null(Φ_c)",
             lambda: dict(log_probs=lambda phi, h, b=None: head.log_probs(phi, h, b) + 1e-3 * jnp.sum(h**2))),
    Mutation("cosine logits Φh/|h|", "T1b", "logits(h+λ) - logits(h) ∈ span(1) for λ ∈ null(Φ_c)",
             lambda: dict(logits=lambda phi, h, b=None: head.logits(phi, h / jnp.linalg.norm(h), b))),
    Mutation("centred head = Φ (mean not removed)", "T1b", "centred_head = (I - 11ᵀ/V)Φ (reference)",
             lambda: dict(centred_head=lambda phi: phi)),
    Mutation("log-probs + 1e-3(z - z̄)² (right invariance, wrong value)", "T1b",
             "centre(Δ log p) = Φ_c λ for any λ (iff)",
             lambda: dict(log_probs=_square_term)),
    # T1c
    Mutation("Fisher without -ppᵀ", "T1c", "F = Φᵀ(diag p - ppᵀ)Φ", lambda: dict(fisher=_fisher_no_outer)),
    Mutation("KL in bits", "T1c", "F = Hessian of KL (autodiff)",
             lambda: dict(kl=lambda lp, lq: head.kl_divergence(lp, lq) / math.log(2.0))),
    Mutation("KL + 10·KL^1.5 (right to second order)", "T1c", "|KL(t) - t²/2 uᵀFu| / (t³R³/24) ≤ 1",
             lambda: dict(kl=lambda lp, lq: head.kl_divergence(lp, lq) + 10.0 * head.kl_divergence(lp, lq) ** 1.5)),
    Mutation("KL(q‖p) for KL(p‖q)", "T1c", "KL(p‖q) = Σ p(log p - log q) (reference)", lambda: dict(kl=_kl_reversed)),
    # T2ab
    Mutation("∇_z ℓ = p - e_y + 1e-3 (unnormalised p)", "T2ab", "1ᵀ∇_z ℓ = 0 (closed form)",
             lambda: dict(grad_logits=lambda phi, h, y, b=None: head.grad_logits(phi, h, y, b) + 1e-3)),
    Mutation("∇_z ℓ = e_y - p (wrong sign)", "T2ab", "∇_z ℓ = p - e_y vs autodiff",
             lambda: dict(grad_logits=lambda phi, h, y, b=None: -head.grad_logits(phi, h, y, b))),
    Mutation("∇_h ℓ + 0.01 φ̄", "T2ab", "grad_h unchanged by Φ -> Φ + 1cᵀ",
             lambda: dict(grad_h=lambda phi, h, y, b=None: head.grad_h(phi, h, y, b) + 1e-2 * phi.mean(0))),
    Mutation("∇_h ℓ = ½Φ_cᵀ(p - e_y) (factor dropped; invariant)", "T2ab", "∇_h ℓ = Φ_cᵀ(p - e_y) vs autodiff",
             lambda: dict(grad_h=lambda phi, h, y, b=None: 0.5 * head.grad_h(phi, h, y, b))),
    Mutation("∇_Φ ℓ = (p + 1e-3 - e_y)hᵀ", "T2ab", "Σ_w ∇_φw ℓ = 0 (closed form)",
             lambda: dict(grad_phi=lambda phi, h, y, b=None: head.grad_phi(phi, h, y, b) + 1e-3 * h)),
    Mutation("∇_Φ ℓ = -(p - e_y)hᵀ (wrong sign)", "T2ab", "∇_Φ ℓ = (p - e_y)hᵀ vs autodiff",
             lambda: dict(grad_phi=lambda phi, h, y, b=None: -head.grad_phi(phi, h, y, b))),
    # T2c
    Mutation("SGD with weight decay 1e-3", "T2c", "φ̄ conserved by SGD at each of 100 steps",
             lambda: dict(optimizer=_opt("wd", lambda: optax.chain(optax.add_decayed_weights(1e-3), optax.sgd(0.1))))),
    Mutation("SGD that pushes the biases by 1e-4", "T2c", "Σb conserved by SGD at each of 100 steps",
             lambda: dict(optimizer=_opt("push", lambda: optax.chain(optax.sgd(0.1), _push_bias(1e-4))))),
    Mutation("SGD with momentum 0.9 (conserves φ̄ too)", "T2c", "each optimizer step = closed-form SGD step",
             lambda: dict(optimizer=_opt("momentum", lambda: optax.sgd(0.1, momentum=0.9)))),
    Mutation("SGD at rate 0.11 for 0.1", "T2c", "each optimizer step = closed-form SGD step",
             lambda: dict(optimizer=_opt("rate", lambda: optax.sgd(0.11)))),
    Mutation("the contrast is SGD, not Adam", "T2c", "Adam breaks it: SGD drift / Adam drift, same run",
             lambda: dict(contrast=_opt("sgd-contrast", lambda: optax.sgd(0.1)))),
    # T3
    Mutation("causal mask shows key i+1 to query i", "T3", "attention_mask = loop reference (causal, padding)",
             lambda: dict(mask=_next_key_too)),
    Mutation("forward hides the diagonal (strict causal)", "T3", "pairs with ∂y_i/∂x_j ≠ 0 via K, V = the mask",
             lambda: dict(forward=_attention_with(_strict_causal))),
    Mutation("forward shows key i+1 to query i", "T3", "pairs with ∂y_i/∂x_j ≠ 0 via K, V = the mask",
             lambda: dict(forward=_attention_with(_next_key_too))),
    Mutation("forward ignores padding (hides too little)", "T3", "pairs with ∂y_i/∂x_j ≠ 0 via K, V = the mask",
             lambda: dict(forward=_attention_with(_padding_ignored))),
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
    Mutation("transposed G_K (G_S Q for G_Sᵀ Q)", "T3", "closed-form VJP vs jax.vjp, every parameter and x",
             lambda: dict(backward=_transposed_g_k)),
    Mutation("G_V = A G_O (A not transposed)", "T3", "run-dtype closed form vs float64 jax.vjp",
             lambda: dict(backward=_g_v_untransposed)),
    Mutation("backward rounds to float32 whatever the dtype", "T3",
             "float64 closed form vs float64 jax.vjp (docs/theory.md: ≤ 1e-10)",
             lambda: dict(backward=_float32_backward)),
    Mutation("distance scores -|q - k|²", "T3", "G_Q unchanged by K -> K + 1cᵀ", lambda: dict(attend=_distance_attend)),
    Mutation("output picks up the mean key", "T3", "O unchanged by K -> K + 1cᵀ", lambda: dict(attend=_key_mean_leak)),
    Mutation("G_S reported twice too large", "T3", "G_Q = G_S(K - 1k̄ᵀ)/√d_k for any k̄",
             lambda: dict(backward=_scores_doubled)),
    # T4a
    Mutation("closed form without ½cᵀΣc", "T4a", "mean of log Z(c) - closed form ≈ 0, V=256",
             lambda: dict(closed_form=lambda mu, cov, d, vocab: math.log(vocab) + d @ mu)),
    Mutation("log_partition_along as log-mean-exp", "T4a", "mean of log Z(c) - closed form ≈ 0, V=256",
             lambda: dict(log_partition_along=lambda phi, c: (
                 isotropy.log_partition_along(phi, c) - math.log(phi.shape[0])))),
    Mutation("log_partition_along at -c (sign flipped; no mean error)", "T4a", "log Z(c) vs log V + μᵀc + ½cᵀΣc, V=256",
             lambda: dict(log_partition_along=lambda phi, c: isotropy.log_partition_along(phi, -c))),
    Mutation("partition isotropy over +u only (one sign)", "T4a", "log partition_isotropy(Φ) vs closed form, V=256",
             lambda: dict(partition_isotropy=lambda phi: (lambda lz: jnp.exp(lz.min() - lz.max()))(
                 isotropy.log_partition_along(phi, isotropy.principal_directions(phi)[: phi.shape[1]])))),
    # T4b
    Mutation("log p = z - max z (log Z dropped)", "T4b", "RMS of affine-fit residual ≤ RMS(log Z - mean) ≤ ε_Z",
             lambda: dict(log_probs=_no_log_z)),
    Mutation("log p + 1e-3(z - z̄)² (a non-affine term)", "T4b",
             "affine-fit residual of log p(w|·) = that of -log Z, ∀w",
             lambda: dict(log_probs=_square_term)),
    Mutation("log Z halved", "T4b", "RMS of affine-fit residual ≤ RMS(log Z - mean) ≤ ε_Z",
             lambda: dict(log_partition=lambda phi, c, b=None: 0.5 * head.log_partition(phi, c, b))),
    Mutation("log p off by a constant 1e-2 (unnormalised)", "T4b", "log p(w|c) = φ_wᵀc - log Z(c) (reference)",
             lambda: dict(log_probs=lambda phi, c, b=None: head.log_probs(phi, c, b) + 1e-2)),
    Mutation("log Z + log V", "T4b", "log Z(c) = m + log Σexp(z - m) (reference)",
             lambda: dict(log_partition=lambda phi, c, b=None: head.log_partition(phi, c, b) + math.log(phi.shape[0]))),
    # T5a
    Mutation("mode (argmax) forecast for the mean", "T5a", "|ŷ - y| ≤ B‖p_f - p*‖₁",
             lambda: dict(expected_value=lambda lp, v: v[jnp.argmax(lp, axis=-1)])),
    Mutation("KL in log base 10", "T5a", "E_s(ŷ - y)² ≤ 2B²ε",
             lambda: dict(kl=lambda lp, lq: head.kl_divergence(lp, lq) / math.log(10.0))),
    Mutation("KL of the next context (misaligned batch; same mean)", "T5a", "(ŷ - y)² ≤ 2B²·KL(p*‖p_f)",
             lambda: dict(kl=lambda lp, lq: jnp.roll(head.kl_divergence(lp, lq), 1, axis=-1))),
    Mutation("ŷ without the offset of the values (Σ(v - v₀)p)", "T5a", "ŷ = Σ_w v_w p_w (reference), for p_f and p*",
             lambda: dict(expected_value=lambda lp, v: head.expected_value(lp, v) - v[0])),
    Mutation("KL + 1e-3 (smoothed)", "T5a", "KL(p*‖p_f) = Σ p*(log p* - log p_f) (reference)",
             lambda: dict(kl=lambda lp, lq: head.kl_divergence(lp, lq) + 1e-3)),
]


def report() -> str:
    """Run every mutation; a markdown table of the rows each one fails, the first of them in bold."""
    lines = ["| broken implementation | check | rows that fail (first in bold) | named row fails |",
             "|---|---|---|---|"]
    for m in MUTATIONS:
        failed = [r.compares for r in m.run() if not r.passed]
        shown = [f"**{c}**" if i == 0 else c for i, c in enumerate(failed)]
        lines.append(f"| {m.name} | {m.check} | {'; '.join(shown) or 'none'} | {'yes' if m.row in failed else 'NO'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.check_seeds import write_section
    from isojax._validate import float_dtype

    text = report()
    print(text)
    write_section(f"mutations {float_dtype()}", text)

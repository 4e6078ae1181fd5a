"""T5a: the performance guarantee |ŷ - y| ≤ B‖p_f - p*‖₁ ≤ B·sqrt(2 KL(p* ‖ p_f)), and its mean-square form,
on random and near-tight instances; ŷ and KL against their reference formulas."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from isojax import _validate as V
from isojax import head
from isojax.theory.harness import CheckRow, Timings, eps, normal, row, run_instances, uniform
from isojax.theory.softmax import reference_kl

__all__ = ["reference_expected_value", "t5a_bound", "check_t5a"]


def reference_expected_value(log_p: ArrayLike, values: ArrayLike) -> jax.Array:
    """Σ_w v_w p_w written as a sum of products (the reference for head.expected_value). [..., V], [V] -> [...]"""
    return jnp.sum(jnp.exp(log_p) * values, axis=-1)


def t5a_bound(log_p_star: ArrayLike, log_p_f: ArrayLike, values: ArrayLike, *,
              expected_value: Callable = head.expected_value,
              kl: Callable = head.kl_divergence) -> dict[str, jax.Array]:
    """T5a for a batch of contexts (log_p_star, log_p_f: [S, V], values: [V]). For each inequality lhs ≤ rhs —
    |ŷ - y| ≤ B‖p_f - p*‖₁, |ŷ - y| ≤ B·sqrt(2 KL(p*‖p_f)), sqrt(E_s(ŷ - y)²) ≤ B·sqrt(2ε) — the excess
    max(lhs - rhs, 0) in units of its rounding scale (ŷ and y round at eps·max|v|, a KL near 0 at eps·Σp|log p|,
    which the square root amplifies); the ratio lhs/rhs to show how tight it is; and ŷ and KL(p*‖p_f) against
    `reference_expected_value` and `reference_kl`."""
    e = eps()
    b = 0.5 * (values.max() - values.min())
    y_hat, y = expected_value(log_p_f, values), expected_value(log_p_star, values)
    err = y_hat - y
    l1 = jnp.abs(jnp.exp(log_p_f) - jnp.exp(log_p_star)).sum(-1)
    div = kl(log_p_star, log_p_f)
    p_star = jnp.exp(log_p_star)
    kl_rounding = 8 * e * jnp.sum(jnp.where(p_star > 0, p_star * (jnp.abs(log_p_star) + jnp.abs(log_p_f)), 0.0), -1)
    unit = 8 * e * jnp.max(jnp.abs(values))
    tiny = jnp.finfo(values.dtype).tiny
    pinsker_rhs = b * jnp.sqrt(2 * jnp.maximum(div, 0.0))
    mean_lhs, mean_rhs = jnp.sqrt(jnp.mean(err**2)), b * jnp.sqrt(2 * jnp.maximum(jnp.mean(div), 0.0))
    return {
        "l1": jnp.max(jnp.maximum(jnp.abs(err) - b * l1, 0.0) / unit),
        "pinsker": jnp.max(jnp.maximum(jnp.abs(err) - pinsker_rhs, 0.0) / (unit + b * jnp.sqrt(2 * kl_rounding))),
        "mean": jnp.maximum(mean_lhs - mean_rhs, 0.0) / (unit + b * jnp.sqrt(2 * jnp.mean(kl_rounding))),
        "ratio": jnp.max(jnp.abs(err) / jnp.maximum(pinsker_rhs, tiny)),
        "value_mean": jnp.max(jnp.abs(jnp.stack([y_hat - reference_expected_value(log_p_f, values),
                                                 y - reference_expected_value(log_p_star, values)]))) / (unit / 8),
        "value_kl": jnp.max(jnp.abs(div - reference_kl(log_p_star, log_p_f)) / (kl_rounding / 8 + e)),
    }


def _make_t5a(vocab, contexts, **impl):
    def one(k):
        ks = jax.random.split(k, 6)
        values = jnp.sort(normal(ks[0], (vocab,))) * 10.0 ** uniform(ks[1], (), -1.0, 1.0)
        logits = normal(ks[2], (contexts, vocab)) * 10.0 ** uniform(ks[3], (), -1.0, 1.0)
        noise = normal(ks[4], (contexts, vocab)) * 10.0 ** uniform(ks[5], (contexts, 1), -2.0, 0.5)
        random_pair = (jax.nn.log_softmax(logits), jax.nn.log_softmax(logits + noise))
        # Near-tight: p* = (½+δ, 0, ..., 0, ½-δ) on the extreme values, p_f = (½, 0, ..., 0, ½).
        delta = 10.0 ** uniform(ks[5], (contexts, 1), -2.0, -0.5)
        ends = jnp.zeros((vocab,), bool).at[0].set(True).at[-1].set(True)
        first = jnp.arange(vocab) == 0
        p_star = jnp.where(ends, jnp.where(first, 0.5 + delta, 0.5 - delta), 0.0)
        p_f = jnp.where(ends, 0.5, 0.0) * jnp.ones((contexts, 1), V.float_dtype())
        tight = t5a_bound(jnp.log(p_star), jnp.log(p_f), values, **impl)
        loose = t5a_bound(*random_pair, values, **impl)
        return {f"{name}_{kind}": val for kind, r in (("random", loose), ("tight", tight)) for name, val in r.items()}
    return one


T5A_CONFIGS = [dict(vocab=2, contexts=16), dict(vocab=8, contexts=16), dict(vocab=64, contexts=16)]


def check_t5a(key: jax.Array, n: int = 1000, timings: Timings | None = None, configs: list[dict] | None = None,
              **impl) -> list[CheckRow]:
    """T5a on random and near-tight instances (two tokens at the extremes with masses ½ ± δ)."""
    res = run_instances("T5a", _make_t5a, key, n, configs or T5A_CONFIGS, timings or Timings(), impl)
    both = lambda name: np.maximum(res[f"{name}_random"], res[f"{name}_tight"])
    tight = (f"|ŷ - y| / (B·sqrt(2KL)): up to {np.max(res['ratio_tight']):.4f} on the near-tight family, "
             f"median {np.median(res['ratio_random']):.2g} on random pairs")
    return [
        row("T5a", "|ŷ - y| ≤ B‖p_f - p*‖₁", "excess/rounding", both("l1"), 1.0),
        row("T5a", "E_s(ŷ - y)² ≤ 2B²ε", "excess/rounding", both("mean"), 1.0),
        row("T5a", "(ŷ - y)² ≤ 2B²·KL(p*‖p_f)", "excess/rounding", both("pinsker"), 1.0, tight),
        row("T5a", "ŷ = Σ_w v_w p_w (reference), for p_f and p*", "eps·|v|∞", both("value_mean"), 24.0),
        row("T5a", "KL(p*‖p_f) = Σ p*(log p* - log p_f) (reference)", "eps·(Σp*|log|+1)", both("value_kl"), 2.0),
    ]

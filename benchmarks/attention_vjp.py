"""Closed-form attention VJP (isojax.attention.attention_vjp) against jax.vjp of the same forward.

Run: python benchmarks/attention_vjp.py   (prints a markdown table for BENCHMARKS.md)
Both sides are jit-compiled, compute the output and every gradient, and are timed in the same process.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)
import jax
import jax.numpy as jnp
from _common import best_time, machine

from isojax import attention as att

SIZES = [  # (batch, T, d_model, heads)
    (64, 32, 64, 4),
    (16, 128, 128, 8),
    (8, 256, 256, 8),
    (4, 512, 384, 12),
]


def main() -> None:
    print(f"machine: {machine()}\n")
    print("| batch × T × d_model, heads | causal | jax.vjp (ms) | closed form (ms) "
          "| speed ratio (jax.vjp / closed) | rel. diff of all gradients |")
    print("|---|---|---|---|---|---|")
    for batch, length, d_model, heads in SIZES:
        ks = jax.random.split(jax.random.PRNGKey(0), 3)
        params = att.init_attention(ks[0], d_model, heads)
        x = jax.random.normal(ks[1], (batch, length, d_model))
        g_y = jax.random.normal(ks[2], (batch, length, d_model))
        for causal in (False, True):
            def autodiff(p, xs, gs):
                def one(x_, g_):
                    y, vjp = jax.vjp(lambda p_, xx: att.self_attention(p_, xx, causal), p, x_)
                    return y, vjp(g_)
                return jax.vmap(one, in_axes=(0, 0))(xs, gs)

            def closed(p, xs, gs):
                def one(x_, g_):
                    y, grads = att.attention_vjp(p, x_, g_, causal)
                    return y, (grads.params, grads.x)
                return jax.vmap(one)(xs, gs)

            auto_fn, closed_fn = jax.jit(autodiff), jax.jit(closed)
            t_auto = best_time(auto_fn, params, x, g_y)
            t_closed = best_time(closed_fn, params, x, g_y)
            a, c = auto_fn(params, x, g_y), closed_fn(params, x, g_y)
            flat = lambda tree: jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(tree)])
            diff = float(jnp.linalg.norm(flat(a[1]) - flat(c[1])) / jnp.linalg.norm(flat(a[1])))
            print(f"| {batch} × {length} × {d_model}, {heads} | {causal} | {1e3 * t_auto:.2f} | {1e3 * t_closed:.2f} "
                  f"| {t_auto / t_closed:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()

"""Partition isotropy and IsoScore over a batch of clouds: achieved FLOP/s next to a plain large matmul.

Run: python benchmarks/metric_sweep.py
FLOPs counted are the matmuls only (a lower bound on the work): IsoScore as its centred Gram matrix, 2nd²
(it needs only tr Σ and ‖Σ‖_F, no eigen-decomposition); partition isotropy as the Gram matrix 2nd² plus the
projections onto the d eigenvectors, 2·n·d·d (the opposite signs reuse them). The [d, d] eigh is not counted.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)
import jax
import jax.numpy as jnp
from _common import best_time, machine

from isojax import distributions, isotropy


def main() -> None:
    print(f"machine: {machine()}\n")
    batch, n, d = 64, 2048, 128
    keys = jax.random.split(jax.random.PRNGKey(0), batch)
    knobs = jnp.linspace(0.0, 2.0, batch)
    clouds = jax.vmap(lambda k, a: distributions.cone(k, n, d, a))(keys, knobs)
    def both(x):
        score = isotropy.isoscore(x)
        return isotropy.partition_isotropy(isotropy.after(x, score)), score

    # as isojax.sweep runs cells on CPU (lax.map: one cloud after another), and batched (vmap)
    t_map = best_time(jax.jit(lambda c: jax.lax.map(both, c)), clouds, repeats=5)
    t_vmap = best_time(jax.jit(jax.vmap(both)), clouds, repeats=5)
    flops_metrics = batch * (2 * n * d * d + 2 * n * d * d + 2 * n * d * d)

    size = 2048
    a = jax.random.normal(jax.random.PRNGKey(1), (size, size))
    matmul = jax.jit(lambda m: m @ m)
    t_mm = best_time(matmul, a, repeats=5)
    flops_mm = 2 * size**3
    rate_mm = flops_mm / t_mm
    print("| workload | time (ms) | GFLOP counted | GFLOP/s | fraction of matmul rate |")
    print("|---|---|---|---|---|")
    print(f"| matmul {size}×{size}×{size} | {1e3 * t_mm:.1f} | {flops_mm / 1e9:.2f} | {rate_mm / 1e9:.1f} | 1.00 |")
    for how, t in (("lax.map", t_map), ("vmap", t_vmap)):
        rate = flops_metrics / t
        print(f"| partition isotropy + IsoScore, {batch} clouds of {n}×{d} ({how}) | {1e3 * t:.1f} "
              f"| {flops_metrics / 1e9:.2f} | {rate / 1e9:.1f} | {rate / rate_mm:.2f} |")


if __name__ == "__main__":
    main()

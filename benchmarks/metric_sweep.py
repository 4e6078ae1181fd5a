"""Partition isotropy and IsoScore over a batch of clouds: achieved FLOP/s next to a plain large matmul.

Run: python benchmarks/metric_sweep.py
FLOPs counted are the matmuls only (a lower bound on the work): IsoScore's covariance spectrum via the SVD
of the centred cloud is counted as its Gram matrix, 2nd²; partition isotropy as the Gram matrix 2nd² plus
the projections onto ±eigenvectors, 2·n·d·2d. Eigen-decompositions of [d, d] are not counted.
"""

from __future__ import annotations

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

    both = jax.jit(jax.vmap(both))
    t_metrics = best_time(both, clouds, repeats=5)
    flops_metrics = batch * (2 * n * d * d + 2 * n * d * d + 2 * n * d * 2 * d)

    size = 2048
    a = jax.random.normal(jax.random.PRNGKey(1), (size, size))
    matmul = jax.jit(lambda m: m @ m)
    t_mm = best_time(matmul, a, repeats=5)
    flops_mm = 2 * size**3
    rate_metrics, rate_mm = flops_metrics / t_metrics, flops_mm / t_mm
    print("| workload | time (ms) | GFLOP counted | GFLOP/s | fraction of matmul rate |")
    print("|---|---|---|---|---|")
    print(f"| matmul {size}×{size}×{size} | {1e3 * t_mm:.1f} | {flops_mm / 1e9:.2f} | {rate_mm / 1e9:.1f} | 1.00 |")
    print(f"| partition isotropy + IsoScore, {batch} clouds of {n}×{d} | {1e3 * t_metrics:.1f} "
          f"| {flops_metrics / 1e9:.2f} | {rate_metrics / 1e9:.1f} | {rate_metrics / rate_mm:.2f} |")


if __name__ == "__main__":
    main()

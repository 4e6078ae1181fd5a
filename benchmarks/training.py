"""Training throughput (tokens/s) of the quick-mode numeric LM, and its wall time to train.

Run: python benchmarks/training.py
"""

from __future__ import annotations

import time

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)
import jax
import jax.numpy as jnp
from _common import machine

from isojax.data import corpus
from isojax.models import recipes, training


def main() -> None:
    print(f"machine: {machine()}\n")
    data = corpus.build("gp:seasonality_24", "bins", jax.random.PRNGKey(0), seq_len=64, count=16)
    print("| model | steps × batch × T | compile + train (s) | train only (s) | tokens/s |")
    print("|---|---|---|---|---|")
    for arch, spec in recipes.ARCHITECTURES.items():
        config = recipes.model_config(arch, data.vocab, 64)
        tcfg = training.TrainConfig(steps=100)
        start = time.perf_counter()
        training.train(jax.random.PRNGKey(1), config, jnp.asarray(data.sequences), tcfg, progress=False)
        first = time.perf_counter() - start
        start = time.perf_counter()  # same shapes again: the step is cached, so this is training alone
        training.train(jax.random.PRNGKey(2), config, jnp.asarray(data.sequences), tcfg, progress=False)
        second = time.perf_counter() - start
        tokens = tcfg.steps * tcfg.batch * 64
        print(f"| {arch} ({spec['layers']} layers, d = {spec['d_model']}) | {tcfg.steps} × {tcfg.batch} × 64 "
              f"| {first:.1f} | {second:.1f} | {tokens / second:,.0f} |")


if __name__ == "__main__":
    main()

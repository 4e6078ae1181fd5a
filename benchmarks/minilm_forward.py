"""MiniLM forward throughput (sequences/s): isojax's encoder vs the PyTorch reference, same run if torch is there.

Run: python benchmarks/minilm_forward.py   (pip install torch transformers for the reference column)
"""

from __future__ import annotations

import time

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)
import jax
import jax.numpy as jnp
import numpy as np
from _common import best_time, machine

from isojax import pretrained
from isojax import transformer as tf


def main() -> None:
    print(f"machine: {machine()}\n")
    params, config = pretrained.load_minilm()
    batch, length = 32, 64
    ids = np.random.default_rng(0).integers(1000, 30000, size=(batch, length)).astype(np.int32)
    mask = np.ones((batch, length), bool)
    fwd = jax.jit(jax.vmap(lambda t, m: tf.forward(params, t, config, key_mask=m)[0][-1]))
    t_ours = best_time(fwd, jnp.asarray(ids), jnp.asarray(mask), repeats=5)
    line = f"| {batch} × {length} tokens | {batch / t_ours:.1f} |"
    try:
        import torch
        from transformers import BertModel
        model = BertModel.from_pretrained(str(pretrained.model_dir())).eval()
        x = torch.tensor(ids, dtype=torch.long)
        with torch.no_grad():
            model(input_ids=x)
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                model(input_ids=x)
                best = min(best, time.perf_counter() - start)
        line += f" {batch / best:.1f} | {best / t_ours:.2f} |"
    except ImportError:
        line += " (torch not installed) | |"
    print("| batch | isojax (seq/s) | PyTorch reference (seq/s) | speed ratio (torch time / isojax time) |")
    print("|---|---|---|---|")
    print(line)


if __name__ == "__main__":
    main()

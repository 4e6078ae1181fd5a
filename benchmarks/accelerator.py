"""Every headline timing on whatever device JAX sees (GPU, TPU or CPU), written as one JSON file.

Run: python benchmarks/accelerator.py [--tiny] [--out accelerator.json]
Times: the closed-form attention VJP against jax.vjp, clustered cosine of one 2,000 x 768 layer, the metric
sweep (partition isotropy + IsoScore) in cells/s and as a fraction of the plain matmul FLOP rate, training
tokens/s of the small decoder, and the wall time of `isojax check` in a subprocess. Under 5 minutes at full
size on a GPU; `--tiny` runs everything at toy sizes in seconds (used by the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)
import jax
import jax.numpy as jnp
from _common import best_time

from isojax import attention as att
from isojax import distributions, isotropy
from isojax.data import corpus
from isojax.models import recipes
from isojax.models import training as training_

FULL = {"attention": (8, 256, 256, 8), "cloud": (2000, 768), "sweep": (64, 2048, 128), "matmul": 4096,
        "train": (100, 32, 64, (1, 16, 128, 1024) if jax.default_backend() != "cpu" else (1, 4)), "check": []}
TINY = {"attention": (2, 8, 16, 2), "cloud": (120, 16), "sweep": (4, 64, 8), "matmul": 128,
        "train": (3, 4, 16, (1, 2)), "check": ["--only", "T1a", "--instances", "8"]}


def device() -> dict:
    """Which device, backend and library versions the numbers come from."""
    from importlib import metadata
    d = jax.devices()[0]
    versions = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {"device_kind": str(d.device_kind), "backend": jax.default_backend(), "device_count": jax.device_count(),
            "platform": d.platform, "versions": versions,
            "dtype": "float64" if jax.config.jax_enable_x64 else "float32"}


def attention(size, repeats: int) -> dict:
    batch, length, d_model, heads = size
    ks = jax.random.split(jax.random.PRNGKey(0), 3)
    params = att.init_attention(ks[0], d_model, heads)
    x = jax.random.normal(ks[1], (batch, length, d_model))
    g_y = jax.random.normal(ks[2], (batch, length, d_model))

    def autodiff(p, xs, gs):
        def one(x_, g_):
            y, vjp = jax.vjp(lambda p_, xx: att.self_attention(p_, xx, True), p, x_)
            return y, vjp(g_)
        return jax.vmap(one)(xs, gs)

    def closed(p, xs, gs):
        def one(x_, g_):
            y, grads = att.attention_vjp(p, x_, g_, True)
            return y, (grads.params, grads.x)
        return jax.vmap(one)(xs, gs)

    t_auto = best_time(jax.jit(autodiff), params, x, g_y, repeats=repeats)
    t_closed = best_time(jax.jit(closed), params, x, g_y, repeats=repeats)
    return {"shape": {"batch": batch, "T": length, "d_model": d_model, "heads": heads, "causal": True},
            "jax_vjp_ms": 1e3 * t_auto, "closed_form_ms": 1e3 * t_closed, "speed_ratio": t_auto / t_closed}


def clustered(size, repeats: int) -> dict:
    n, d = size
    x = distributions.sample("mixture", jax.random.PRNGKey(0), n, d, 1.0)
    def fn():
        return isotropy.clustered_cosine(x, jax.random.PRNGKey(1), k_max=min(16, n - 1))
    t = best_time(fn, repeats=repeats)
    res = fn()
    return {"shape": [n, d], "ms": 1e3 * t, "best_k": int(res.best_k), "score": float(res.score)}


def metric_sweep(size, matmul: int, repeats: int) -> dict:
    batch, n, d = size
    keys = jax.random.split(jax.random.PRNGKey(0), batch)
    clouds = jax.vmap(lambda k, a: distributions.cone(k, n, d, a))(keys, jnp.linspace(0.0, 2.0, batch))

    def both(x):
        score = isotropy.isoscore(x)
        return isotropy.partition_isotropy(isotropy.after(x, score)), score

    # batched cells on accelerators (vmap), one after another on CPU (lax.map), as isojax.sweep would
    batched = jax.default_backend() != "cpu"
    fn = jax.jit(jax.vmap(both)) if batched else jax.jit(lambda c: jax.lax.map(both, c))
    t = best_time(fn, clouds, repeats=repeats)
    a = jax.random.normal(jax.random.PRNGKey(1), (matmul, matmul))
    t_mm = best_time(jax.jit(lambda m: m @ m), a, repeats=repeats)
    flops = batch * 3 * 2 * n * d * d  # two Gram matrices and the projections; eigh not counted
    rate, rate_mm = flops / t, 2 * matmul**3 / t_mm
    return {"clouds": [batch, n, d], "cells_per_s": batch / t, "gflop_per_s": rate / 1e9,
            "matmul": matmul, "matmul_gflop_per_s": rate_mm / 1e9, "fraction_of_matmul": rate / rate_mm,
            "cells": "vmap" if batched else "lax.map"}


def training(size) -> dict:
    """One model's training steps, then ensembles of R runs (R up to 1024 on an accelerator): runs per second and
    run-steps per second of `train_many`, so a lent device answers at once how many models an hour it trains."""
    steps, batch, length, lanes = size
    data = corpus.build("gp:seasonality_24", "bins", jax.random.PRNGKey(0), seq_len=length, count=max(batch, 4))
    config = recipes.model_config("decoder", data.vocab, length)
    tcfg = training_.TrainConfig(steps=steps, batch=batch)
    out = {"model": "decoder, 2 layers, d = 64", "steps": steps, "batch": batch, "T": length, "ensembles": []}
    for r in lanes:
        engine = training_.Engine("vmap", r)
        make = lambda seed: [training_.Run(jax.random.PRNGKey(seed + i), data.sequences) for i in range(r)]
        training_.train_many(make(0), config, tcfg, engine=engine, progress=False)  # compiles
        start = time.perf_counter()
        training_.train_many(make(10_000), config, tcfg, engine=engine, progress=False)
        seconds = time.perf_counter() - start
        out["ensembles"].append({"runs": r, "lanes": r, "seconds": seconds, "runs_per_s": r / seconds,
                                 "run_steps_per_s": r * steps / seconds,
                                 "tokens_per_s": r * steps * batch * length / seconds})
    return out


def check(extra: list[str]) -> dict:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "isojax.cli", "check", "--json", *extra], capture_output=True,
                          text=True, env=env, timeout=600)
    seconds = time.perf_counter() - start
    passed = None
    if proc.returncode in (0, 1):
        passed = bool(json.loads(proc.stdout)["passed"])
    return {"args": ["check", "--json", *extra], "seconds": seconds, "exit_status": proc.returncode, "passed": passed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes: everything in seconds")
    parser.add_argument("--out", default="accelerator.json", help="JSON file to write (default accelerator.json)")
    args = parser.parse_args(argv)
    sizes, repeats = (TINY, 2) if args.tiny else (FULL, 5)
    start = time.perf_counter()
    result = {"device": device(), "tiny": args.tiny,
              "attention_vjp": attention(sizes["attention"], repeats),
              "clustered_cosine": clustered(sizes["cloud"], repeats),
              "metric_sweep": metric_sweep(sizes["sweep"], sizes["matmul"], repeats),
              "training": training(sizes["train"]),
              "check": check(sizes["check"])}
    result["total_seconds"] = time.perf_counter() - start
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

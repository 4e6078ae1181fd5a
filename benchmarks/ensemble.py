"""Training many models at once: run-steps per second of the ensemble engines against the first round's
one-at-a-time loop (a jitted step called from Python), and the FLOP rate against two matmuls measured in the
same process: a model-shaped one (2048 × 64 × 128) and 2048³. Also the compile cost: the first training call
of an architecture (seconds and programs compiled, counted from jax_log_compiles) and a later run of the same
architecture (programs compiled: should be 0).

Run: python benchmarks/ensemble.py [--steps 40] [--lanes 1 4 16 64] [--archs decoder encoder decoder-deep-wide]
FLOPs per step come from XLA's cost analysis of one run's compiled step.
"""

from __future__ import annotations

import argparse
import logging
import time

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import machine

from isojax import transformer as tf
from isojax.data import corpus
from isojax.models import recipes, training


class _CompileCounter(logging.Handler):
    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        self.count += record.getMessage().startswith("Compiling")


def matmul_rate(m: int, k: int, n: int, repeats: int = 20) -> float:
    """GFLOP/s of an [m, k] @ [k, n] float32 matmul, best of `repeats`."""
    a = jnp.ones((m, k), jnp.float32)
    b = jnp.ones((k, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    best = min(_timed(lambda: f(a, b).block_until_ready()) for _ in range(repeats))
    return 2.0 * m * k * n / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_flops(config, tcfg, sequences) -> float:
    """FLOPs of one training step of one run, from XLA's cost analysis of the compiled step."""
    opt = training._optimizer(tcfg)
    params = jax.eval_shape(lambda: tf.init(jax.random.PRNGKey(0), config))
    state = jax.eval_shape(opt.init, params)

    def step(params, state, batch, key):
        loss, grads = jax.value_and_grad(training._loss)(params, batch, key, 0.0, config, tcfg, None)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    batch = jax.ShapeDtypeStruct((tcfg.batch, sequences.shape[1]), jnp.int32)
    cost = jax.jit(step).lower(params, state, batch, jax.random.PRNGKey(0)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def loop_seconds_per_step(config, tcfg, sequences, steps: int) -> float:
    """The first round's loop: a jitted step called from Python once per step (the reference)."""
    opt = training._optimizer(tcfg)
    params = tf.init(jax.random.PRNGKey(0), config)
    state = opt.init(params)
    k_loop = jax.random.PRNGKey(1)

    @jax.jit
    def step(params, state, i):
        k_batch, k_mask = jax.random.split(jax.random.fold_in(k_loop, i))
        idx = jax.random.randint(k_batch, (tcfg.batch,), 0, sequences.shape[0])
        loss, grads = jax.value_and_grad(training._loss)(params, jnp.asarray(sequences)[idx], k_mask, 0.0, config,
                                                         tcfg, None)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params, state, loss = step(params, state, np.int32(0))  # compile
    loss.block_until_ready()
    start = time.perf_counter()
    for i in range(steps):
        params, state, loss = step(params, state, np.int32(i))
    loss.block_until_ready()
    return (time.perf_counter() - start) / steps


def engine_seconds_per_run_step(config, tcfg, sequences, engine, runs: int) -> float:
    """Seconds per run-step of `runs` runs trained together (after a warm-up call that compiles)."""
    make = lambda seed: [training.Run(jax.random.PRNGKey(seed + i), sequences) for i in range(runs)]
    training.train_many(make(0), config, tcfg, engine=engine, progress=False)  # compile
    start = time.perf_counter()
    training.train_many(make(1000), config, tcfg, engine=engine, progress=False)
    return (time.perf_counter() - start) / (runs * tcfg.steps)


def compile_cost(arch: str, data) -> tuple[float, int, int]:
    """(seconds of the first train call, programs compiled by it, programs compiled by a second run) for a
    fresh architecture config (a vocabulary no other call used, so nothing is cached)."""
    config = recipes.model_config(arch, data.vocab + 7, 64)  # its own config: no compiled program to reuse
    tcfg = training.TrainConfig(steps=2)
    counter = _CompileCounter()
    logger = logging.getLogger("jax")
    logger.addHandler(counter)
    jax.config.update("jax_log_compiles", True)
    try:
        seconds = _timed(lambda: training.train_many([training.Run(jax.random.PRNGKey(0), data.sequences)], config,
                                                     tcfg, progress=False))
        first = counter.count
        training.train_many([training.Run(jax.random.PRNGKey(1), data.sequences)], config, tcfg, progress=False)
        second = counter.count - first
    finally:
        jax.config.update("jax_log_compiles", False)
        logger.removeHandler(counter)
    return seconds, first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lanes", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--archs", nargs="+", default=list(recipes.ARCHITECTURES))
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    data = corpus.build("gp:seasonality_24", "bins", jax.random.PRNGKey(0), seq_len=64, count=16)
    small, big = matmul_rate(2048, 64, 128), matmul_rate(2048, 2048, 2048, repeats=5)
    print(f"matmul 2048×64×128: {small:.1f} GFLOP/s; 2048³: {big:.1f} GFLOP/s\n")
    print("| model | engine | runs | ms per run-step | GFLOP/s | / model-shaped matmul | x one-at-a-time loop |")
    print("|---|---|---|---|---|---|---|")
    tcfg = training.TrainConfig(steps=args.steps)
    for arch in args.archs:
        config = recipes.model_config(arch, data.vocab, 64)
        flops = step_flops(config, tcfg, data.sequences)
        loop = loop_seconds_per_step(config, tcfg, data.sequences, args.steps)

        def row(label, runs, seconds):
            rate = flops / seconds / 1e9
            print(f"| {arch} | {label} | {runs} | {seconds * 1e3:.1f} | {rate:.1f} | {rate / small:.2f} | "
                  f"{loop / seconds:.2f} |", flush=True)

        row("first round's loop", 1, loop)
        row("scan", 1, engine_seconds_per_run_step(config, tcfg, data.sequences, training.SERIAL, 1))
        for lanes in args.lanes:
            row(f"vmap {lanes} lanes", lanes, engine_seconds_per_run_step(config, tcfg, data.sequences,
                                                                        training.Engine("vmap", lanes), lanes))
    print("\n| model | first call (s) | programs compiled | programs a second run compiles |")
    print("|---|---|---|---|")
    for arch in args.archs:
        seconds, first, second = compile_cost(arch, data)
        print(f"| {arch} | {seconds:.1f} | {first} | {second} |", flush=True)


if __name__ == "__main__":
    main()

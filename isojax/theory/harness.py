"""The machinery every check shares: rows, the per-instance runner, timings, and small random draws.

A check draws instances from an explicit key, evaluates a one-instance function `one(key) -> dict of
scalars` over them with `lax.map` inside ONE compiled program per check (all of its shape configurations
together), and turns each residual into a `CheckRow`. Compiled programs are cached by (check, configs,
implementations, instance count, dtype), so a second seed reuses them (`benchmarks/check_seeds.py`).
Timings are returned in a `Timings` object owned by the caller, never stored in module state.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.typing import ArrayLike

from isojax import _validate as V

__all__ = ["CheckRow", "CheckReport", "Timings", "row", "run_instances", "run_program", "FAST_COMPILE", "eps", "normal",
           "normals", "uniform", "rel", "anisotropic_head", "exact_row"]


@dataclasses.dataclass(frozen=True)
class CheckRow:
    """One row of `isojax check`: what is compared, in which units, the worst residual over the instances,
    the tolerance, and the verdict. `margin = tolerance / max_residual` (inf when the residual is exactly 0,
    0 when it is inf or NaN): how far from failing the row was."""

    statement: str
    compares: str
    max_residual: float
    tolerance: float
    instances: int
    passed: bool
    note: str = ""
    units: str = ""
    margin: float = dataclasses.field(init=False)

    def __post_init__(self):
        r, t = self.max_residual, self.tolerance
        margin = 0.0 if not math.isfinite(r) else math.inf if r == 0 else t / r
        object.__setattr__(self, "margin", float(margin))


@dataclasses.dataclass
class Timings:
    """Seconds spent compiling (tracing + XLA) and running the compiled checks, accumulated by the runner."""

    compile: float = 0.0
    run: float = 0.0


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """What `run_checks` returns: the rows (iterate the report, or `.rows`), the seconds spent compiling and
    running, and the same per check (`by_check[name].compile`, `.run`)."""

    rows: tuple[CheckRow, ...]
    compile_seconds: float
    run_seconds: float
    by_check: dict[str, Timings] = dataclasses.field(default_factory=dict)

    def __iter__(self) -> Iterator[CheckRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> CheckRow:
        return self.rows[i]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)


def row(statement: str, compares: str, units: str, residuals: npt.ArrayLike, tolerance: float,
        note: str = "") -> CheckRow:
    """A row from per-instance residuals: NaN or inf anywhere makes the worst residual inf (a failure)."""
    r = np.asarray(residuals, dtype=np.float64).ravel()
    worst = float(np.max(np.where(np.isfinite(r), r, np.inf))) if r.size else math.inf
    return CheckRow(statement, compares, worst, float(tolerance), int(r.size), bool(worst <= tolerance), note, units)


def exact_row(statement: str, compares: str, units: str, residuals: npt.ArrayLike, note: str = "") -> CheckRow:
    """A row whose statement holds exactly (a count of mismatches): tolerance 0."""
    return row(statement, compares, units, residuals, 0.0, note)


_PROGRAMS: dict = {}  # compiled executables by (name, configs, implementations, sizes, dtype): a cache only

# The checks' programs are many, small and run once, so compiling them is most of `isojax check`: LLVM's
# optimisation passes are half of that and buy nothing here. These options compile a check's program without
# them; checks whose programs run long (`optimise=True`: T2c's 1000 training steps, T4a's large heads) keep
# XLA's default. The level changes the rounding of some operations (a different instruction selection), never
# what is computed: both sides of every comparison are compiled with the same options (most come from one
# program; T3a's float64 rows compare two), and docs/checks.md's margins over seeds 0-99 were measured with them.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def run_program(name: str, fn: Callable, args: Any, cache_key: Hashable, timings: Timings,
                optimise: bool = False) -> Any:
    """Compile `fn(*args)` once per (name, cache_key, argument shapes, x64 mode) and run it, adding each phase's
    seconds to `timings`; compiled with `FAST_COMPILE` unless `optimise`. -> fn's outputs as numpy arrays."""
    shapes = tuple((a.shape, str(a.dtype)) for a in jax.tree.leaves(args))
    full_key = (name, cache_key, shapes, bool(jax.config.jax_enable_x64))
    compiled = _PROGRAMS.get(full_key)
    if compiled is None:
        start = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile(None if optimise else FAST_COMPILE)
        timings.compile += time.perf_counter() - start
        _PROGRAMS[full_key] = compiled
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    timings.run += time.perf_counter() - start
    return jax.tree.map(np.asarray, out)


def _hashable(obj):
    if isinstance(obj, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return tuple(_hashable(v) for v in obj)
    return obj


def run_instances(name: str, make: Callable, key: jax.Array, n: int, configs: list[dict], timings: Timings,
                  impl: dict | None = None, optimise: bool = False) -> dict[str, np.ndarray]:
    """Evaluate `make(**cfg, **impl)(key) -> dict of scalars` on n instances spread evenly over the configs,
    all configs in one compiled program. -> {name: [instances]} (configs concatenated in order).

    Instances run one after another (`lax.map` without a batch): the vectorised body compiles about three times
    slower, and compiling, not running, is what `isojax check` spends its time on."""
    impl = impl or {}
    per = -(-n // len(configs))
    keys = [jax.random.split(jax.random.fold_in(key, i), per) for i in range(len(configs))]
    fns = [make(**cfg, **impl) for cfg in configs]

    def program(*key_sets):
        return [jax.lax.map(fn, ks) for fn, ks in zip(fns, key_sets, strict=True)]

    cache_key = (make.__module__, make.__qualname__, _hashable(configs), _hashable(impl), per)
    outs = run_program(name, program, keys, cache_key, timings, optimise)
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def eps() -> float:
    """Machine epsilon of the default float dtype (the unit of most tolerances)."""
    return float(jnp.finfo(V.float_dtype()).eps)


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard normal draws of the given shape in the default float dtype."""
    return jax.random.normal(key, shape, V.float_dtype())


def uniform(key: jax.Array, shape: tuple[int, ...] = (), lo: ArrayLike = 0.0, hi: ArrayLike = 1.0) -> jax.Array:
    """Uniform draws on [lo, hi) of the given shape in the default float dtype."""
    return jax.random.uniform(key, shape, V.float_dtype(), lo, hi)


def normals(key: jax.Array, *shapes: tuple[int, ...]) -> list[jax.Array]:
    """Standard normal arrays of the given shapes, cut from ONE draw of their total size: each `jax.random` call
    inlines its own threefry hash into the compiled check, and compiling those hashes, not running them, was
    a third of `isojax check`'s time (a dozen calls per instance cost ~1 s of XLA compilation, one call ~0.2 s)."""
    sizes = [math.prod(shape) for shape in shapes]
    flat = normal(key, (sum(sizes),))
    starts = np.cumsum([0, *sizes])
    return [flat[a:b].reshape(shape) for a, b, shape in zip(starts[:-1], starts[1:], shapes, strict=True)]


def rel(a: ArrayLike, b: ArrayLike) -> jax.Array:
    """‖a - b‖ / ‖b‖ (Frobenius), with a floor so that b = 0 does not divide by zero."""
    return jnp.linalg.norm((a - b).ravel()) / jnp.maximum(jnp.linalg.norm(b.ravel()), jnp.finfo(b.dtype).tiny)


def anisotropic_head(key: jax.Array, vocab: int, dim: int, cone: float = 3.0) -> jax.Array:
    """Random head [vocab, dim] with a shared mean vector of random strength: the anisotropy T1c and T2 are
    about."""
    k1, k2, k3 = jax.random.split(key, 3)
    common = normal(k1, (dim,)) * uniform(k2, (), 0.0, cone) / math.sqrt(dim)
    return common + normal(k3, (vocab, dim)) / math.sqrt(dim)

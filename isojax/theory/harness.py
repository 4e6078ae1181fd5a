"""The machinery every check shares: rows, the runner that evaluates an implementation in every way it is called,
timings, and small random draws.

A check has three parts. `draw(**cfg)(key) -> inputs` makes one random instance (JAX, in one compiled program);
`direct(cfg, impl)(inputs) -> values` calls the implementation under test and nothing else (no arithmetic of its
own, so it costs little to run eagerly), each function on a single input and on a batch where it takes one;
`traced(cfg, impl)(inputs) -> values`, optional, holds the routes that must trace the implementation (autodiff
through it). `evaluate` runs them under `jit`, one compiled program per check for all of its shape
configurations: a configuration marked "_vmap" vmapped over its instances, the others one at a time
(`lax.map`); and eagerly, on concrete arrays, for the "_eager" instances of a configuration, so a fast path
taken only outside a trace is called the way a user calls it.

The residuals are then computed on the host in float64 NumPy from the instance's inputs and the values
(`isojax/theory/reference.py` holds the NumPy references they are compared with); a row's residual for an
instance is its worst over the modes it was evaluated in. Compiled programs are cached by (check, configs,
implementations, instance counts, dtype), so a second seed reuses them (`benchmarks/check_seeds.py`). Timings
are returned in a `Timings` object owned by the caller, never stored in module state.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
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

__all__ = ["CheckRow", "CheckReport", "Timings", "Evaluated", "row", "exact_row", "evaluate", "split_count",
           "run_program", "FAST_COMPILE", "EAGER", "eps", "normal", "normals", "uniform", "anisotropic_head",
           "f64", "worst_over_modes", "residuals_over", "modes_text", "context_calls", "call_variants"]

KINDS = ("value", "route", "statement")


@dataclasses.dataclass(frozen=True)
class CheckRow:
    """One row of `isojax check`: what is compared, in which units, the worst residual over the instances,
    the tolerance, and the verdict. `margin = tolerance / max_residual` (inf when the residual is exactly 0,
    0 when it is inf or NaN): how far from failing the row was.

    kind: "value" (the implementation's value against an independent float64 NumPy reference, named in
    `reference`), "route" (against a second route that is not NumPy, e.g. autodiff of a loss written in
    `isojax/theory/routes.py`, named in `reference`) or "statement" (an invariance, an exact set equality or an
    inequality of the theorem). uses: the implementation functions the row looks at (an `--impl` object that
    gives none of them makes the row not applicable). modes: how the implementation was called. scope: why
    `instances` differs from the number asked for, when it does. applicable: False when the row tests none of
    the functions an `--impl` object gave (it is then shown, not counted)."""

    statement: str
    compares: str
    max_residual: float
    tolerance: float
    instances: int
    passed: bool
    note: str = ""
    units: str = ""
    kind: str = "statement"
    reference: str = ""
    uses: tuple[str, ...] = ()
    modes: str = ""
    scope: str = ""
    applicable: bool = True
    margin: float = dataclasses.field(init=False)

    def __post_init__(self):
        r, t = self.max_residual, self.tolerance
        margin = 0.0 if not math.isfinite(r) else math.inf if r == 0 else t / r
        object.__setattr__(self, "margin", float(margin))


@dataclasses.dataclass
class Timings:
    """Seconds spent compiling (tracing + XLA) and running the compiled checks, accumulated by the runner;
    `eager` counts the eager calls (op-by-op compilation included), `host` the float64 NumPy references."""

    compile: float = 0.0
    run: float = 0.0
    eager: float = 0.0
    host: float = 0.0


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """What `run_checks` returns: the rows (iterate the report, or `.rows`), the seconds spent compiling and
    running, and the same per check (`by_check[name].compile`, `.run`). `requested`: the instances asked for;
    `impl`: the name of the implementation checked ("isojax" for the library's own)."""

    rows: tuple[CheckRow, ...]
    compile_seconds: float
    run_seconds: float
    by_check: dict[str, Timings] = dataclasses.field(default_factory=dict)
    requested: int = 0
    impl: str = "isojax"

    def __iter__(self) -> Iterator[CheckRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> CheckRow:
        return self.rows[i]

    @property
    def passed(self) -> bool:
        """Every applicable row passed."""
        return all(r.passed for r in self.rows if r.applicable)


def row(statement: str, compares: str, units: str, residuals: npt.ArrayLike, tolerance: float, note: str = "",
        *, kind: str = "statement", reference: str = "", uses: tuple[str, ...] = (), modes: str = "",
        scope: str = "") -> CheckRow:
    """A row from per-instance residuals: NaN or inf anywhere makes the worst residual inf (a failure)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    r = np.asarray(residuals, dtype=np.float64).ravel()
    worst = float(np.max(np.where(np.isfinite(r), r, np.inf))) if r.size else math.inf
    return CheckRow(statement, compares, worst, float(tolerance), int(r.size), bool(worst <= tolerance), note, units,
                    kind, reference, tuple(uses), modes, scope)


def exact_row(statement: str, compares: str, units: str, residuals: npt.ArrayLike, note: str = "",
              **kw) -> CheckRow:
    """A row whose statement holds exactly (a count of mismatches): tolerance 0."""
    return row(statement, compares, units, residuals, 0.0, note, **kw)


_PROGRAMS: dict = {}  # compiled executables by (name, configs, implementations, sizes, dtype): a cache only

# The checks' programs are many, small and run once, so compiling them is most of `isojax check`: LLVM's
# optimisation passes are half of that and buy nothing here. These options compile a check's program without
# them; checks whose programs run long (`optimise=True`: T2c's 1000 training steps, T4a's large heads) keep
# XLA's default. The level changes the rounding of some operations (a different instruction selection), never
# what is computed, and docs/checks.md's margins over seeds 0-99 were measured with them.
FAST_COMPILE = {"xla_backend_optimization_level": 0}

EAGER = 2  # instances of one configuration that each check also evaluates eagerly


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


def split_count(n: int, shares: list[float] | int) -> list[int]:
    """n instances over configurations in proportion to their shares (an int: that many equal shares), each at
    least 1 when n allows: the counts sum to n exactly."""
    shares = [1.0] * shares if isinstance(shares, int) else [float(s) for s in shares]
    exact = [n * s / sum(shares) for s in shares]
    counts = [int(math.floor(e)) for e in exact]
    for i in sorted(range(len(shares)), key=lambda i: counts[i] - exact[i])[:n - sum(counts)]:
        counts[i] += 1
    while n >= len(counts) and min(counts) == 0:  # a tiny share still gets one instance
        counts[counts.index(max(counts))] -= 1
        counts[counts.index(0)] += 1
    return counts


@dataclasses.dataclass
class Evaluated:
    """One configuration's instances: inputs and values as numpy arrays with a leading instance axis.
    direct: {"jit": values of every instance (one at a time, or vmapped when `vmapped`), "eager": values of the
    instances `eager_idx` or None}; traced: the traced routes' values of every instance (None when the check has
    none)."""

    cfg: dict
    inputs: Any
    direct: dict[str, Any]
    traced: Any
    eager_idx: np.ndarray
    vmapped: bool
    count: int


def _take(tree, idx):
    return jax.tree.map(lambda a: a[idx], tree)


def _harness_keys(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def evaluate(name: str, draw: Callable, direct: Callable, key: jax.Array, n: int, configs: list[dict],
             timings: Timings, impl: dict | None = None, traced: Callable | None = None,
             hard: Callable | None = None, optimise: bool = False) -> list[Evaluated]:
    """Draw n instances over the configs (counts from `split_count` and each config's "_share", default 1) and
    evaluate the implementation on them under jit, one compiled program for all configs: the instances of a
    config with "_vmap" vmapped, the others one at a time (`lax.map`); and eagerly on "_eager" instances of a
    config (default 0; those `hard(cfg, inputs) -> [count]` scores highest, else the first). -> one Evaluated
    per config.

    Every check vmaps one configuration and calls one eagerly, not all: a vmapped body compiles about three times
    slower than a mapped one, and each eager call compiles its operations one by one, while compiling, not
    running, is what `isojax check` spends its time on. `draw(**cfg)(key)`, `direct(cfg, impl)(inputs)` and
    `traced(cfg, impl)(inputs)` as in the module docstring; the config keys starting with "_" are not passed to
    `draw`."""
    impl = impl or {}
    counts = split_count(n, [cfg.get("_share", 1.0) for cfg in configs])
    keys = [jax.random.split(jax.random.fold_in(key, i), max(c, 1)) for i, c in enumerate(counts)]
    draws = [draw(**_harness_keys(cfg)) for cfg in configs]
    directs = [direct(cfg, impl) for cfg in configs]
    traceds = [traced(cfg, impl) if traced else None for cfg in configs]

    def program(*key_sets):
        outs = []
        for cfg, d, f, t, ks in zip(configs, draws, directs, traceds, key_sets, strict=True):
            inputs = jax.lax.map(d, ks)
            run = jax.vmap if cfg.get("_vmap") else lambda fn: lambda xs: jax.lax.map(fn, xs)
            out = {"inputs": inputs, "jit": run(f)(inputs)}
            if t is not None:
                out["traced"] = run(t)(inputs)
            outs.append(out)
        return outs

    cache_key = (draw.__module__, draw.__qualname__, _hashable(configs), _hashable(impl), tuple(counts))
    outs = run_program(name, program, keys, cache_key, timings, optimise)
    result = []
    for cfg, f, out, count in zip(configs, directs, outs, counts, strict=True):
        inputs = out["inputs"]
        scores = np.asarray(hard(cfg, inputs), np.float64) if hard else -np.arange(count, dtype=np.float64)
        idx = np.sort(np.argsort(-scores, kind="stable")[:min(cfg.get("_eager", 0), count)])
        start = time.perf_counter()
        # a direct function with an `eager` argument calls less when eager (e.g. no batched call: each eager call
        # compiles its operations one by one)
        call = functools.partial(f, eager=True) if "eager" in inspect.signature(f).parameters else f
        eager_values = [call(jax.tree.map(jnp.asarray, _take(inputs, i))) for i in idx]
        eager_values = jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *eager_values) \
            if len(idx) else None
        timings.eager += time.perf_counter() - start
        result.append(Evaluated(cfg, inputs, {"jit": out["jit"], "eager": eager_values}, out.get("traced"), idx,
                                bool(cfg.get("_vmap")), count))
    return result


def worst_over_modes(ev: Evaluated, residuals: Callable, prepare: Callable | None = None,
                     timings: Timings | None = None) -> dict[str, np.ndarray]:
    """Per-instance residuals of one configuration, each the worst over the modes: `residuals(cfg, inputs,
    direct values, traced values, prepared) -> {name: [instances]}` (NumPy, float64) runs on the jit values and
    on the eager ones (with the jit traced values of the same instances); `prepare(cfg, inputs)`, computed once,
    holds what does not depend on the mode (the float64 references), with a leading instance axis."""
    with np.errstate(all="ignore"):  # a broken implementation's inf and NaN make inf residuals, not warnings
        return _worst_over_modes(ev, residuals, prepare, timings)


def _worst_over_modes(ev, residuals, prepare, timings):
    start = time.perf_counter()
    nan_inf = lambda v: np.where(np.isnan(v), np.inf, np.asarray(v, np.float64))  # NaN anywhere is a failure
    ref = prepare(ev.cfg, ev.inputs) if prepare else None
    out = {k: nan_inf(v) for k, v in residuals(ev.cfg, ev.inputs, ev.direct["jit"], ev.traced, ref).items()}
    if ev.direct["eager"] is not None:
        idx = ev.eager_idx
        sub = lambda tree: None if tree is None else _take(tree, idx)
        for k, v in residuals(ev.cfg, sub(ev.inputs), ev.direct["eager"], sub(ev.traced), sub(ref)).items():
            out[k][idx] = np.maximum(out[k][idx], nan_inf(v))
    if timings is not None:
        timings.host += time.perf_counter() - start
    return out


def residuals_over(evs: list[Evaluated], residuals: Callable, timings: Timings | None = None,
                   prepare: Callable | None = None) -> dict[str, np.ndarray]:
    """`worst_over_modes` of every configuration, concatenated in the order of the configs. -> {name: [n]}"""
    parts = [worst_over_modes(ev, residuals, prepare, timings) for ev in evs]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def modes_text(evs: list[Evaluated], eager: bool = True) -> str:
    """How the implementation was called, e.g. "jit 750 one at a time + 250 vmapped; eager 2" (eager=False:
    rows whose values come from autodiff through the implementation, which traces it even outside jit)."""
    mapped = sum(ev.count for ev in evs if not ev.vmapped)
    vmapped = sum(ev.count for ev in evs if ev.vmapped)
    text = "jit " + " + ".join([f"{mapped} one at a time"] * bool(mapped) + [f"{vmapped} vmapped"] * bool(vmapped))
    n_eager = sum(len(ev.eager_idx) for ev in evs)
    return text + (f"; eager {n_eager}" if eager and n_eager else "")


def eps() -> float:
    """Machine epsilon of the default float dtype (the unit of most tolerances)."""
    return float(jnp.finfo(V.float_dtype()).eps)


def f64(x: ArrayLike) -> np.ndarray:
    """x as a float64 numpy array (what the NumPy references and the residuals compute in)."""
    return np.asarray(x, dtype=np.float64)


def _stacked(values):
    """Values of the single-context calls (a list over contexts, each [n, ...]) -> [n, C, ...]."""
    return np.stack([f64(v) for v in values], axis=1) if isinstance(values, list) else f64(values)


def context_calls(fn: Callable, *args, per: tuple[int, ...] = (1,), eager: bool = False) -> dict:
    """fn on the first context alone and on the batch of all: {"single": [fn(ctx 0)], "batched": fn(all)}; eager:
    the single call only (each eager call compiles its operations one by one). `per`: the positions of the
    arguments whose first axis is the contexts (default: h, after phi)."""
    single = {"single": [fn(*[a[0] if j in per else a for j, a in enumerate(args)])]}
    return single if eager else {**single, "batched": fn(*args)}


def call_variants(values: dict) -> list[dict]:
    """{name: {"single": ..., "batched": ...}} -> [{name: [n, C, ...]} for the single calls, ... for the batch
    (when there is one)]. C may be fewer than the instance's contexts (eager calls): compare with `[:, :C]`."""
    return [{k: _stacked(v[variant]) for k, v in values.items()} for variant in ("single", "batched")
            if variant in next(iter(values.values()))]


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


def anisotropic_head(key: jax.Array, vocab: int, dim: int, cone: float = 3.0) -> jax.Array:
    """Random head [vocab, dim] with a shared mean vector of random strength: the anisotropy T1c and T2 are
    about."""
    k1, k2, k3 = jax.random.split(key, 3)
    common = normal(k1, (dim,)) * uniform(k2, (), 0.0, cone) / math.sqrt(dim)
    return common + normal(k3, (vocab, dim)) / math.sqrt(dim)

"""One check per statement of docs/theory.md (T1a–T5a): the implementation's values against float64 NumPy
references that share no function with it, and the statements' invariances and inequalities, over random
instances, with the implementation called eagerly, under jit, one instance at a time and vmapped.

Each `check_*` draws instances from an explicit key, evaluates them in one compiled program per check, and
returns `CheckRow`s (statement, what is compared, units, worst residual, tolerance, margin, instances, pass, and
which route and implementation functions the row uses). The implementations under test are keyword arguments, so
a test can pass a deliberately broken one through the same check and see it fail
(tests/test_theory_mutations.py), and `run_checks(..., impl=obj)` checks a user's own functions
(docs/tutorials/own_attention.md). Residuals are scaled by their rounding scale (multiples of the float
epsilon); each tolerance is set from the worst residual over seeds 0-99 in float32 AND float64 (docs/checks.md,
benchmarks/check_seeds.py).

Modules: `harness` (rows, runner, timings), `reference` (the float64 NumPy references), `routes` (second routes
in JAX: a cross-entropy and an SGD step written apart), `softmax` (T1), `head_gradients` (T2), `self_attention`
(T3), `partition` (T4a, T4b), `guarantee` (T5a).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax

from isojax.runs import keys as _keys
from isojax.theory import reference, routes
from isojax.theory.guarantee import T5A_CONFIGS, check_t5a
from isojax.theory.harness import CheckReport, CheckRow, Timings
from isojax.theory.head_gradients import (
    T2_CONFIGS,
    check_t2ab,
    check_t2c_training,
    head_instance,
    mean_embedding_drift,
    sgd_conservation,
    t2_head_gradients,
)
from isojax.theory.partition import (
    T4A_MAX_VAR,
    T4B_CONFIGS,
    check_t4a,
    check_t4b,
    gaussian_log_partition,
    t4a_sigma,
)
from isojax.theory.self_attention import SCORES, T3_CONFIGS, check_t3, mask_pattern, score_bias, t3_attention
from isojax.theory.softmax import T1A_CONFIGS, T1B_CONFIGS, T1C_CONFIGS, check_t1a, check_t1b, check_t1c, naive_probs
from isojax.theory.table import format_report, report_json

__all__ = ["CHECKS", "LABELS", "IMPL_FUNCTIONS", "run_checks", "load_impl", "impl_kwargs", "format_report",
           "report_json", "CheckRow", "CheckReport",
           "Timings", "reference", "routes", "naive_probs", "mask_pattern", "score_bias", "SCORES",
           "gaussian_log_partition", "T4A_MAX_VAR", "t4a_sigma", "T1A_CONFIGS", "T1B_CONFIGS", "T1C_CONFIGS",
           "T2_CONFIGS", "T3_CONFIGS", "T4B_CONFIGS", "T5A_CONFIGS", "t2_head_gradients", "head_instance",
           "mean_embedding_drift", "sgd_conservation", "t3_attention", "check_t1a", "check_t1b", "check_t1c",
           "check_t2ab", "check_t2c_training", "check_t3", "check_t4a", "check_t4b", "check_t5a"]

CHECKS: dict[str, Callable[..., list[CheckRow]]] = {
    "T1a": check_t1a,
    "T1b": check_t1b,
    "T1c": check_t1c,
    "T2ab": check_t2ab,
    "T2c": check_t2c_training,
    "T3": check_t3,
    "T4a": check_t4a,
    "T5a": check_t5a,
    "T4b": check_t4b,
}
# The statement labels the rows print that are not check names, and the checks whose rows carry them: `--only`
# takes either (a check name: all its rows; a label: the rows with that label).
LABELS: dict[str, tuple[str, ...]] = {"T2a": ("T2ab",), "T2b": ("T2ab",), "T2c": ("T2ab", "T2c"), "T3a": ("T3",),
                                      "T3b": ("T3",), "T3c": ("T3",)}
# The implementation functions each check takes (its keyword arguments); an `impl` object gives some of them.
IMPL_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "T1a": ("log_probs", "probs", "log_partition"),
    "T1b": ("log_probs", "logits", "centred_head"),
    "T1c": ("fisher", "log_probs", "kl"),
    "T2ab": ("grad_logits", "grad_h", "grad_phi"),
    "T2c": ("optimizer", "contrast"),
    "T3": ("forward", "backward", "attend", "mask", "self_attention", "closed_form"),
    "T4a": ("log_partition_along", "partition_isotropy"),
    "T5a": ("expected_value", "kl"),
    "T4b": ("log_probs", "log_partition"),
}
# isojax's own names for the same functions, so `--impl isojax.head` or `--impl isojax.attention` works
_ALIASES = {"kl": "kl_divergence", "forward": "attention_forward", "backward": "attention_backward",
            "mask": "attention_mask", "closed_form": "self_attention_closed_form"}
_OPTIONS = ("forward", "attend", "self_attention", "closed_form")  # T3 functions that take bias= and scale=
_SLOWEST_TO_COMPILE = ("T3", "T2c")  # started first when the checks run on several threads


def load_impl(spec: str) -> Any:
    """The object `--impl` names: "module:object", "module" (the module itself) or "path/to/file.py:object";
    a module is imported as Python would from the current folder. Raises ValueError saying what is missing."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ValueError(f"--impl {spec!r}: expected module:object or path/to/file.py:object")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise ValueError(f"--impl {spec!r}: no such file {module_name!r}")
            loader = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"--impl {spec!r}: could not import {module_name!r}: {err}") from None
    if not attr:
        return module
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"--impl {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _takes_options(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "bias" in params and "scale" in params


def _dropping_options(fn: Callable) -> Callable:
    """A user's T3 function with its score options built in, called the way the check calls isojax's."""
    def call(*args, bias=None, scale=None):
        return fn(*args)
    call.__wrapped__ = fn
    return call


def impl_kwargs(obj: Any, check: str) -> dict:
    """The keyword arguments of CHECKS[check] that `obj` gives: its attributes named in IMPL_FUNCTIONS[check]
    (or isojax's own name for them, e.g. kl_divergence for kl). For T3, "options" too: the statement's score
    scale and bias, from `obj.score_scale` (a number, a callable d_k -> number, or None: 1/√d_k) and
    `obj.score_bias` (a callable (heads, length) -> [H, T, T], or None); when obj declares neither and its
    attention functions take `bias` and `scale` (isojax's convention), the check runs its own score options
    through them instead. -> {} when obj gives none of the check's functions."""
    given = {}
    for name in IMPL_FUNCTIONS[check]:
        fn = getattr(obj, name, None)
        if fn is None and name in _ALIASES:
            fn = getattr(obj, _ALIASES[name], None)
        if fn is None:
            continue
        if name not in ("optimizer", "contrast") and not callable(fn):
            raise ValueError(f"the implementation's {name} must be a function, got {type(fn).__name__}")
        given[name] = fn
    if check == "T3" and given:
        declared = hasattr(obj, "score_scale") or hasattr(obj, "score_bias")
        if declared or not all(_takes_options(given[name]) for name in _OPTIONS if name in given):
            scale = getattr(obj, "score_scale", None)
            if scale is not None and not callable(scale) and not isinstance(scale, (int, float)):
                raise ValueError(f"score_scale must be a number, a function of d_k or None, got {scale!r}")
            bias = getattr(obj, "score_bias", None)
            if bias is not None and not callable(bias):
                raise ValueError(f"score_bias must be a function (heads, length) -> [H, T, T] or None, got {bias!r}")
            given = {k: _dropping_options(fn) if k in _OPTIONS and not _takes_options(fn) else fn
                     for k, fn in given.items()}
            given["options"] = {"scale": scale, "bias": bias}
    return given


def _plan(only: list[str] | None) -> dict[str, set[str] | None]:
    """{check: the statement labels of its rows to keep (None: all)} for `only` (check names or row labels)."""
    if not only:
        return {name: None for name in CHECKS}
    unknown = [name for name in only if name not in CHECKS and name not in LABELS]
    if unknown:
        raise ValueError(f"only names unknown checks {unknown}; choose from {sorted(set(CHECKS) | set(LABELS))}")
    plan: dict[str, set[str] | None] = {}
    for name in only:
        if name in CHECKS:
            plan[name] = None
    for name in only:
        for check in LABELS.get(name, ()):
            if plan.get(check, set()) is not None:
                plan.setdefault(check, set()).add(name)
    return {name: plan[name] for name in CHECKS if name in plan}


def run_checks(key: jax.Array, n: int = 1000, only: list[str] | None = None, threads: int | None = None,
               impl: Any = None) -> CheckReport:
    """Every statement's check over n instances each -> CheckReport: iterate it for the rows (in the order of
    CHECKS); .compile_seconds and .run_seconds for the time spent, summed over checks.

    only: check names (T1a T1b T1c T2ab T2c T3 T4a T4b T5a) or the labels the rows print (T2a, T3a, ...: that
    statement's rows). Each check's key is `keys.named_key(key, its name)`, so no check depends on which others
    run or in which order. impl: an object (or a `load_impl` spec string) giving some of the functions of
    IMPL_FUNCTIONS; the checks it gives functions for run on them (isojax's for the rest), each of their rows
    that tests none of them is shown not applicable, and the other checks are one not-applicable row each.

    The checks run on `threads` threads (default: one per core, at most 4, when XLA runs with single-threaded
    Eigen, as `runs.runtime.configure_xla()` sets it for every entry point; else 1), the slowest to compile
    first: each is traced in Python, but XLA compiles with the GIL released, so one check compiles while another
    traces or runs. The rows are the same as one after another: each check has its own key and programs."""
    plan = _plan(only)
    impl_name = "isojax" if impl is None else impl if isinstance(impl, str) else getattr(
        impl, "__name__", type(impl).__name__)
    if isinstance(impl, str):
        impl = load_impl(impl)
    given = {name: impl_kwargs(impl, name) for name in plan} if impl is not None else {name: {} for name in plan}
    if impl is not None and not any(given.values()):
        wanted = sorted({f for name in plan for f in IMPL_FUNCTIONS[name]})
        raise ValueError(f"impl {impl_name!r} gives none of the functions the checks {list(plan)} take: {wanted}")
    # several checks at once only with single-threaded Eigen (runs.runtime.EIGEN_FLAG): XLA's multi-threaded pool
    # can wedge when a batched LAPACK call runs beside other parallel work
    single_eigen = "xla_cpu_multi_thread_eigen=false" in os.environ.get("XLA_FLAGS", "")
    threads = threads or (min(os.cpu_count() or 1, 4) if single_eigen else 1)
    runnable = [name for name in plan if impl is None or given[name]]
    by_check: dict[str, Timings] = {name: Timings() for name in runnable}

    def one(name: str) -> list[CheckRow]:
        check = CHECKS[name]
        sub = _keys.named_key(key, name)
        # a check without a timings argument (e.g. one a test substitutes) is called without it
        takes_timings = "timings" in inspect.signature(check).parameters
        kwargs = dict(given[name], **({"timings": by_check[name]} if takes_timings else {}))
        return check(sub, n, **kwargs)

    order = sorted(runnable, key=lambda name: name not in _SLOWEST_TO_COMPILE)
    if threads == 1:
        done = {name: one(name) for name in order}
    else:
        with ThreadPoolExecutor(threads) as pool:
            done = dict(zip(order, pool.map(one, order), strict=True))
    rows = []
    for name, labels in plan.items():
        if name not in done:
            wanted = ", ".join(IMPL_FUNCTIONS[name])
            rows.append(CheckRow(name, f"not applicable: {impl_name} gives none of {wanted}", float("nan"), 0.0, 0,
                                 True, applicable=False))
            continue
        for r in done[name]:
            if labels is not None and r.statement not in labels:
                continue
            if impl is not None and r.uses and not set(r.uses) & set(given[name]):
                r = dataclasses.replace(r, applicable=False)
            rows.append(r)
    compile_s = sum(t.compile for t in by_check.values())
    run_s = sum(t.run for t in by_check.values())
    return CheckReport(tuple(rows), compile_s, run_s, by_check, n, impl_name)

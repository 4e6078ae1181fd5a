"""One check per statement of docs/theory.md (T1a–T5a): the implementation's values against independent routes,
and the statements' invariances and inequalities, over random instances.

Each `check_*` draws instances from an explicit key, evaluates them in one compiled program per check, and
returns `CheckRow`s (statement, what is compared, units, worst residual, tolerance, margin, instances, pass).
The implementations under test are keyword arguments, so a test can pass a deliberately broken one through the
same check and see it fail (tests/test_theory_mutations.py). Residuals are scaled by their rounding scale
(multiples of the float epsilon), so one set of tolerances serves float32 and float64; each tolerance is at
most ~30x the worst residual seen over seeds 0-99 (docs/checks.md, benchmarks/check_seeds.py).

Modules: `harness` (rows, runner, timings), `softmax` (T1), `head_gradients` (T2), `self_attention` (T3),
`partition` (T4a, T4b), `guarantee` (T5a).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import jax

from isojax.theory.guarantee import check_t5a, reference_expected_value, t5a_bound
from isojax.theory.harness import CheckReport, CheckRow, Timings
from isojax.theory.head_gradients import (
    check_t2ab,
    check_t2c_training,
    head_instance,
    mean_embedding_drift,
    sgd_conservation,
    t2_head_gradients,
)
from isojax.theory.partition import (
    T4A_MAX_VAR,
    affine_fit_residual,
    check_t4a,
    check_t4b,
    gaussian_log_partition,
    t4a_partition,
    t4a_sigma,
    t4b_affine,
)
from isojax.theory.self_attention import T3_CONFIGS, check_t3, mask_pattern, reference_mask, t3_attention, t3_float64
from isojax.theory.softmax import (
    check_t1a,
    check_t1b,
    check_t1c,
    fisher_literal,
    naive_probs,
    reference_centred,
    reference_kl,
    reference_log_softmax,
    t1a_shift,
    t1b_nonidentifiability,
    t1c_fisher,
)

__all__ = ["CHECKS", "run_checks", "CheckRow", "CheckReport", "Timings",
           "naive_probs", "reference_log_softmax", "reference_centred", "reference_kl", "fisher_literal",
           "reference_expected_value", "reference_mask", "mask_pattern", "affine_fit_residual",
           "gaussian_log_partition", "T4A_MAX_VAR", "t4a_sigma", "T3_CONFIGS",
           "t1a_shift", "t1b_nonidentifiability", "t1c_fisher", "t2_head_gradients", "head_instance",
           "mean_embedding_drift", "sgd_conservation", "t3_attention", "t3_float64", "t4a_partition", "t4b_affine",
           "t5a_bound", "check_t1a", "check_t1b", "check_t1c", "check_t2ab", "check_t2c_training", "check_t3",
           "check_t4a", "check_t4b", "check_t5a"]

CHECKS: dict[str, Callable[..., list[CheckRow]]] = {
    "T1a": check_t1a,
    "T1b": check_t1b,
    "T1c": check_t1c,
    "T2ab": check_t2ab,
    "T2c": check_t2c_training,
    "T3": check_t3,
    "T4a": check_t4a,
    "T5a": check_t5a,
    "T4b": check_t4b,  # after T5a, so the per-check keys (fold_in by position) of the others are unchanged
}
_SLOWEST_TO_COMPILE = ("T3", "T2c")  # started first when the checks run on several threads


def run_checks(key: jax.Array, n: int = 1000, only: list[str] | None = None,
               threads: int | None = None) -> CheckReport:
    """Every statement's check over n instances each (per-check keys from fold_in, so order does not matter).
    -> CheckReport: iterate it for the rows (in the order of CHECKS); .compile_seconds and .run_seconds for the
    time spent, summed over checks.

    The checks run on `threads` threads (default: one per core, at most 4, when isojax's single-threaded Eigen
    setting is in effect, else 1), the slowest to compile first: each is traced in Python, but XLA compiles
    with the GIL released, so one check compiles while another traces or runs (41 s instead of 53 s on 2
    cores). The rows are the same as one after another: each check has its own key and programs, and T3's
    float64 route sets x64 in a thread-local context."""
    names = only or list(CHECKS)
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        raise ValueError(f"only names unknown checks {unknown}; choose from {list(CHECKS)}")
    # several checks at once only with isojax's single-threaded Eigen (isojax/__init__.py): XLA's multi-threaded
    # pool can wedge when a batched LAPACK call runs beside other parallel work
    single_eigen = "xla_cpu_multi_thread_eigen=false" in os.environ.get("XLA_FLAGS", "")
    threads = threads or (min(os.cpu_count() or 1, 4) if single_eigen else 1)
    by_check: dict[str, Timings] = {name: Timings() for name in CHECKS if name in names}
    position = {name: i for i, name in enumerate(CHECKS)}

    def one(name: str) -> list[CheckRow]:
        check = CHECKS[name]
        sub = jax.random.fold_in(key, position[name])
        # a check without a timings argument (e.g. one a test substitutes) is called without it
        takes_timings = "timings" in inspect.signature(check).parameters
        return check(sub, n, timings=by_check[name]) if takes_timings else check(sub, n)

    order = sorted(by_check, key=lambda name: name not in _SLOWEST_TO_COMPILE)
    if threads == 1:
        done = {name: one(name) for name in order}
    else:
        with ThreadPoolExecutor(threads) as pool:
            done = dict(zip(order, pool.map(one, order), strict=True))
    rows = [row for name in by_check for row in done[name]]
    compile_s = sum(t.compile for t in by_check.values())
    run_s = sum(t.run for t in by_check.values())
    return CheckReport(tuple(rows), compile_s, run_s, by_check)

"""Every theorem check passes on the real implementation; rows, margins, reports and the regressions the audit
found. (Broken implementations, one per row: tests/test_theory_mutations.py.)"""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from isojax import attention as att
from isojax import isotropy, theory
from isojax.theory import harness
from tests.conftest import dtype

KEY = jax.random.PRNGKey(42)
N = 64


def _passes(rows):
    bad = [r for r in rows if not r.passed]
    assert not bad, bad
    return True


@pytest.mark.parametrize("name", ["T1a", "T1b", "T1c", "T2ab", "T4b", "T5a"])
def test_check_passes(name):
    rows = theory.CHECKS[name](KEY, N)
    _passes(rows)
    assert all(r.units and r.instances >= N for r in rows)


def test_t3_passes_on_every_configuration():
    _passes(theory.check_t3(KEY, 6 * 16))


def test_t2c_sgd_conserves_mean_embedding_at_every_step():
    rows = theory.check_t2c_training(KEY, n=16, steps=300)
    _passes(rows)
    assert "Adam" in rows[0].note


def test_t4a_passes_and_error_shrinks_with_vocabulary():
    vocabs = (256, 1024, 4096, 16384)
    rows = theory.check_t4a(KEY, n=4 * 48, vocabs=vocabs)
    _passes(rows)
    # residuals are in units of σ_V ∝ 1/√V; in log units the error falls with V, a 64x larger V at least 3x
    log_z_err = [r.max_residual * theory.t4a_sigma(v)
                 for r, v in zip([r for r in rows if r.compares.startswith("log Z")], vocabs)]
    assert log_z_err[-1] < log_z_err[0] / 3
    # the tolerance on log I is below the smallest predicted |log I| at every V: the row can tell I from 1
    for r, v in zip([r for r in rows if "isotropy" in r.compares], vocabs):
        smallest = float(r.note.split("≥ ")[1].split(" ")[0])
        assert r.tolerance * theory.t4a_sigma(v) < smallest


def test_row_margin_and_nonfinite_residuals():
    assert theory.CheckRow("T", "c", 2.0, 8.0, 1, True).margin == 4.0
    assert theory.CheckRow("T", "c", 0.0, 0.0, 1, True).margin == math.inf
    row = theory.harness.row("T", "c", "u", [1.0, np.nan], 10.0)
    assert row.max_residual == math.inf and not row.passed and row.margin == 0.0


def test_run_checks_returns_rows_and_timings():
    report = theory.run_checks(KEY, 8, ["T1a", "T5a"])
    assert isinstance(report, theory.CheckReport) and report.passed
    assert {r.statement for r in report} == {"T1a", "T5a"} and len(report) == len(report.rows)
    assert report.compile_seconds >= 0 and report.run_seconds > 0


def test_run_checks_on_threads_gives_the_rows_of_one_thread(monkeypatch):
    # T3 switches to float64 for its second program while the other checks run: a stand-in that does the same
    # (cheaper to compile than T3) must not change the dtype the others draw in, nor the order of the rows
    def float64_route(key, n, timings=None):
        with jax.enable_x64(True):
            time.sleep(0.3)
            inside = jnp.zeros(1).dtype
        return [harness.exact_row("X", "float64 inside the context", "", [float(inside != jnp.float64)])]

    def default_dtype(key, n, timings=None):
        time.sleep(0.1)  # starts while float64_route holds its context
        draw = jax.random.normal(key, (n,))
        return [harness.exact_row("D", "default dtype outside it", "", [float(draw.dtype != dtype())]),
                harness.row("D", "the draw itself", "", [float(jnp.sum(draw))], math.inf)]

    checks = {"T3": float64_route, "T1a": theory.CHECKS["T1a"], "D": default_dtype, "T5a": theory.CHECKS["T5a"]}
    monkeypatch.setattr(theory, "CHECKS", checks)
    serial = theory.run_checks(KEY, 12, threads=1)
    threaded = theory.run_checks(KEY, 12, threads=3)
    assert threaded.passed and serial.passed
    assert [(r.statement, r.compares, r.max_residual, r.instances) for r in threaded] == \
        [(r.statement, r.compares, r.max_residual, r.instances) for r in serial]
    assert [r.statement for r in threaded][0] == "X"  # rows in the order of CHECKS, not of finishing


def test_run_checks_rejects_unknown_names():
    with pytest.raises(ValueError, match="only names unknown checks"):
        theory.run_checks(KEY, 4, ["T9"])


def _single_key_instance():
    ks = jax.random.split(jax.random.PRNGKey(0), 3)
    params = att.init_attention(ks[0], 8, 2, 4, 3)
    x = jax.random.normal(ks[1], (5, 8), params.w_q.dtype)
    g_y = jax.random.normal(ks[2], (5, 8), params.w_q.dtype)
    return params, x, g_y


def test_g_s_row_sum_is_finite_when_every_query_sees_one_key():
    # the audit's false failure: max|G_S| = 0 when each padded row sees a single key gave residual inf
    params, x, g_y = _single_key_instance()
    key_mask = jnp.array([True, False, False, False, False])
    out = theory.t3_attention(params, x, g_y, False, key_mask)
    assert float(out["t3a_rows"]) == 0.0
    assert all(np.isfinite(float(v)) for v in out.values())


def test_t3_blind_queries_and_masks_on_a_hand_made_instance():
    params, x, g_y = _single_key_instance()
    key_mask = jnp.array([False, True, False, True, True])  # causal: query 0 sees no key
    out = theory.t3_attention(params, x, g_y, True, key_mask)
    assert float(out["t3_blind"]) == 0.0
    assert int(out["t3_mask_set"]) == 0 and int(out["t3_mask_jacobian"]) == 0
    reference = np.array(theory.reference_mask(5, True, key_mask))
    assert not reference[0].any() and reference[4].tolist() == [False, True, False, True, True]


def test_t4a_closed_form_matches_isotropy_on_a_large_isotropic_head():
    phi = 0.3 * jax.random.normal(KEY, (20000, 4))
    assert float(isotropy.partition_isotropy(phi)) > 0.95
    pred = theory.gaussian_log_partition(jnp.zeros(4), 0.09 * jnp.eye(4), jnp.eye(4), 20000)
    np.testing.assert_allclose(isotropy.log_partition_along(phi, jnp.eye(4)), pred, atol=0.02)

"""Every theorem check passes on the real implementation; the references share no function with isojax; rows,
margins, reports, labels, keys by name, user implementations, and the regressions the audits found. (Broken
implementations, one per row: tests/test_theory_mutations.py.)"""

import ast
import math
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from isojax import attention as att
from isojax import head, isotropy, theory
from isojax.runs import keys
from isojax.theory import harness
from isojax.theory import reference as R
from tests import user_attention
from tests.conftest import ROOT, X64, dtype
from tests.theory_mutations import SMALL, run_small

KEY = jax.random.PRNGKey(42)
N = 64


def _passes(rows):
    bad = [r for r in rows if r.applicable and not r.passed]
    assert not bad, bad
    return True


@pytest.mark.parametrize("name", ["T1a", "T1b", "T1c", "T2ab", "T4b", "T5a"])
def test_check_passes(name):
    rows = theory.CHECKS[name](KEY, N)
    _passes(rows)
    assert all(r.units and r.modes and r.instances >= 1 for r in rows)
    # the implementation ran under jit one instance at a time, vmapped, and eagerly
    assert all("one at a time" in r.modes and "vmapped" in r.modes for r in rows)
    assert any("eager" in r.modes for r in rows)


def test_t3_passes_on_every_configuration_and_score_option():
    rows = theory.check_t3(KEY, 6 * 8)
    _passes(rows)
    assert {cfg.get("scores", "default") for cfg in theory.T3_CONFIGS} == set(theory.SCORES)
    t5 = next(r for r in rows if r.compares.startswith("T5 path"))
    assert t5.instances == 16 and t5.passed
    f64 = next(r for r in rows if r.compares.startswith("float64 closed form"))
    assert f64.applicable == X64


def test_t2c_sgd_conserves_mean_embedding_at_every_step():
    rows = theory.check_t2c_training(KEY, n=16, steps=300)
    _passes(rows)
    assert "Adam" in rows[0].note and "eager" in rows[0].modes


def test_t4a_passes_and_error_shrinks_with_vocabulary():
    vocabs = (256, 1024, 4096, 16384)
    rows = theory.check_t4a(KEY, n=4 * 48, vocabs=vocabs)
    _passes(rows)
    # residuals are in units of σ_V ∝ 1/√V; in log units the error falls with V, a 64x larger V at least 3x
    log_z_err = [r.max_residual * theory.t4a_sigma(v)
                 for r, v in zip([r for r in rows if r.compares.startswith("log Z")], vocabs)]
    assert log_z_err[-1] < log_z_err[0] / 3
    # the tolerance on log I is below the smallest predicted |log I| at every V: the row can tell I from 1
    for r, v in zip([r for r in rows if "vs closed form at NumPy" in r.compares], vocabs):
        smallest = float(r.note.split("≥ ")[1].split(" ")[0])
        assert r.tolerance * theory.t4a_sigma(v) < smallest
    assert all(r.scope for r in rows)  # every row says which of the instances it ran on


# ---- the references share no function with isojax --------------------------------------------------------

_FORBIDDEN_NAMES = {"__import__", "importlib", "eval", "exec", "compile", "globals", "sys", "builtins"}


def _imports(source: str) -> tuple[set[str], set[str]]:
    """(top-level modules imported, suspicious names used) by a module's source."""
    tree = ast.parse(source)
    modules, names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0] or "." * node.level)
        elif isinstance(node, ast.Name) and node.id in _FORBIDDEN_NAMES:
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in {"modules", "__dict__"}:
            names.add(node.attr)
    return modules, names


def _allowed(source: str, modules: set[str]) -> bool:
    found, names = _imports(source)
    return found <= modules and not names


def test_the_walker_catches_a_reference_that_reaches_isojax():
    # the test of the test: each of these would let a reference call what it verifies
    for bad in ("import isojax", "from isojax import head", "from jax import numpy", "import jax.numpy as jnp",
                "h = __import__('isojax')", "import importlib", "from . import harness",
                "import sys\nsys.modules['isojax']"):
        assert not _allowed(bad, {"__future__", "math", "numpy"}), bad
    assert _allowed("import math\nimport numpy as np", {"__future__", "math", "numpy"})


def test_references_import_numpy_only_and_routes_import_nothing_of_isojax():
    assert _allowed((ROOT / "isojax/theory/reference.py").read_text(), {"__future__", "math", "numpy"})
    assert _allowed((ROOT / "isojax/theory/routes.py").read_text(), {"__future__", "jax"})


def _all_rows():
    return [r for check in SMALL for r in run_small(check)]


@pytest.mark.float32_only  # the rows' structure (kinds, references, routes), not a value: the float32 pass walks it
def test_every_value_row_names_a_numpy_reference_and_every_route_row_its_route():
    rows = _all_rows()
    assert {r.kind for r in rows} == {"value", "route", "statement"}
    for r in rows:
        if r.kind == "value":
            # the reference is a function of isojax/theory/reference.py (NumPy only, above)
            assert r.reference.startswith("reference."), r
            assert callable(getattr(R, r.reference.removeprefix("reference."))), r
        elif r.kind == "route":
            # a route written apart (routes.py, no isojax), or one that says what it shares and names its second
            # route, a NumPy reference
            if "routes." not in r.reference:
                assert "shares" in r.reference, r
                second = r.reference.split("second route ")[1].rstrip(")")
                assert callable(getattr(R, second.removeprefix("reference."))), r
        assert r.uses, r  # which implementation functions the row looks at


def test_references_do_not_call_the_library(monkeypatch):
    # a runtime guard beside the syntax walk: with every head and attention function broken, the references
    # still give the textbook values
    boom = lambda *a, **k: (_ for _ in ()).throw(AssertionError("a reference called isojax"))
    for module in (head, att, isotropy):
        for name in module.__all__:
            if callable(getattr(module, name)):
                monkeypatch.setattr(module, name, boom)
    z = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(R.softmax(z), np.exp(z) / np.exp(z).sum(), rtol=1e-15)
    np.testing.assert_allclose(R.logsumexp(np.array([1000.0, 1000.0])), 1000.0 + math.log(2.0), rtol=1e-15)
    p = {"w_q": np.ones((1, 2, 2)), "w_k": np.ones((1, 2, 2)), "w_v": np.eye(2)[None], "w_o": np.eye(2)[None]}
    y = R.attention(p, np.eye(2), np.tril(np.ones((2, 2), bool)))
    np.testing.assert_allclose(y[0], [1.0, 0.0])  # query 0 sees only key 0: y_0 = x_0 W_V W_O


def test_numpy_attention_and_its_gradients_agree_with_autodiff_in_float64():
    with jax.enable_x64(True):
        ks = jax.random.split(jax.random.PRNGKey(3), 4)
        params = att.init_attention(ks[0], 6, 2, 3, 4, dtype=jnp.float64)
        x = jax.random.normal(ks[1], (5, 6), jnp.float64)
        g_y = jax.random.normal(ks[2], (5, 6), jnp.float64)
        bias = jax.random.normal(ks[3], (2, 5, 5), jnp.float64)
        key_mask = jnp.array([True, False, True, True, True])
        for scale in (None, 1.0):
            fwd = lambda p, x_, b: att.self_attention(p, x_, True, key_mask, b, scale)
            y, vjp = jax.vjp(fwd, params, x, bias)
            g_p, g_x, g_b = vjp(g_y)
            p_np = {k: np.asarray(getattr(params, k)) for k in theory.self_attention.FIELDS}
            allowed = R.mask(5, True, np.asarray(key_mask))
            np.testing.assert_allclose(R.attention(p_np, np.asarray(x), allowed, np.asarray(bias), scale), y,
                                       rtol=1e-12, atol=1e-13)
            grads = R.attention_grads(p_np, np.asarray(x), np.asarray(g_y), allowed, np.asarray(bias), scale)
            for k in theory.self_attention.FIELDS:
                np.testing.assert_allclose(grads[k], getattr(g_p, k), rtol=1e-10, atol=1e-12, err_msg=k)
            np.testing.assert_allclose(grads["x"], g_x, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(grads["bias"], g_b, rtol=1e-10, atol=1e-12)


def test_numpy_attention_gradient_against_finite_differences():
    # NumPy alone, no JAX at all: the chain rule of attention_grads against central differences of attention
    rng = np.random.default_rng(0)
    p = {"w_q": rng.normal(size=(2, 4, 3)), "w_k": rng.normal(size=(2, 4, 3)), "w_v": rng.normal(size=(2, 4, 2)),
         "w_o": rng.normal(size=(2, 2, 4)), "b_q": rng.normal(size=(2, 3)), "b_k": rng.normal(size=(2, 3)),
         "b_v": rng.normal(size=(2, 2)), "b_o": rng.normal(size=4)}
    x, g_y = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    allowed = R.mask(5, True, np.array([True, True, False, True, True]))
    grads = R.attention_grads(p, x, g_y, allowed, None, 0.7)
    loss = lambda p_, x_: float(np.sum(R.attention(p_, x_, allowed, None, 0.7) * g_y))
    for name in ("w_q", "w_k", "b_v", "x"):
        direction = rng.normal(size=x.shape if name == "x" else p[name].shape)
        h = 1e-6
        shifted = lambda s: loss({**p, name: p[name] + s * direction} if name != "x" else p,
                                 x + s * direction if name == "x" else x)
        numeric = (shifted(h) - shifted(-h)) / (2 * h)
        assert abs(numeric - np.sum(grads[name] * direction)) <= 1e-6 * max(1.0, abs(numeric)), name


def test_numpy_head_references_against_their_definitions():
    rng = np.random.default_rng(1)
    phi, h, b = rng.normal(size=(7, 3)), rng.normal(size=(2, 3)), rng.normal(size=7)
    z = h @ phi.T + b
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    np.testing.assert_allclose(R.logits(phi, h, b), z, rtol=1e-14)
    np.testing.assert_allclose(R.log_softmax(z), np.log(p), rtol=1e-13)
    for c in range(2):  # the covariance of φ under p, by NumPy's own weighted covariance
        np.testing.assert_allclose(R.fisher(phi, h, b)[c], np.cov(phi.T, aweights=p[c], bias=True), rtol=1e-12)
    np.testing.assert_allclose(R.centred(phi), phi - phi.mean(0), atol=1e-14)
    e_y = np.eye(7)[[1, 4]]
    np.testing.assert_allclose(R.grad_h(phi, h, np.array([1, 4]), b), (p - e_y) @ phi, atol=1e-13)
    np.testing.assert_allclose(R.partition_isotropy(np.vstack([np.eye(3), -np.eye(3)])), 1.0)  # Z(±e_i) all equal
    directions = R.principal_directions(np.diag([3.0, 1.0]))
    np.testing.assert_allclose(np.abs(directions[:2]), np.eye(2)[::-1], atol=1e-15)  # columns, smallest first


# ---- rows, reports, labels, keys ---------------------------------------------------------------------------

def test_row_margin_and_nonfinite_residuals():
    assert theory.CheckRow("T", "c", 2.0, 8.0, 1, True).margin == 4.0
    assert theory.CheckRow("T", "c", 0.0, 0.0, 1, True).margin == math.inf
    row = harness.row("T", "c", "u", [1.0, np.nan], 10.0)
    assert row.max_residual == math.inf and not row.passed and row.margin == 0.0
    with pytest.raises(ValueError, match="kind must be one of"):
        harness.row("T", "c", "u", [1.0], 1.0, kind="guess")


def test_instances_are_split_exactly_over_the_configurations():
    assert harness.split_count(1000, 3) == [334, 333, 333]
    assert sum(harness.split_count(1000, [1, 1, 1, 0.15])) == 1000
    assert min(harness.split_count(7, [1, 0.001])) == 1
    rows = theory.check_t1a(KEY, 10)
    assert all(r.instances == 10 for r in rows)


@pytest.mark.float32_only  # the report's plumbing, not a value
def test_run_checks_returns_rows_and_timings():
    report = theory.run_checks(KEY, 8, ["T1a", "T5a"])
    assert isinstance(report, theory.CheckReport) and report.passed and report.requested == 8
    assert {r.statement for r in report} == {"T1a", "T5a"} and len(report) == len(report.rows)
    assert report.compile_seconds >= 0 and report.run_seconds > 0


def test_each_check_key_comes_from_its_name_not_its_position():
    alone = theory.run_checks(KEY, 8, ["T5a"])
    with_others = theory.run_checks(KEY, 8, ["T1b", "T5a"])
    residuals = lambda rep: [(r.compares, r.max_residual) for r in rep if r.statement == "T5a"]
    assert residuals(alone) == residuals(with_others)
    direct = theory.check_t5a(keys.named_key(KEY, "T5a"), 8)
    assert residuals(alone) == [(r.compares, r.max_residual) for r in direct]


@pytest.mark.float32_only  # --only's labels, not a value
def test_only_takes_every_label_the_table_prints():
    report = theory.run_checks(KEY, 8, ["T2a", "T2b"])  # labels of rows of the T2ab check
    assert {r.statement for r in report} == {"T2a", "T2b"}
    assert theory._plan(["T2c"]) == {"T2ab": {"T2c"}, "T2c": None}  # the T2c check, and T2ab's T2c rows
    assert theory._plan(["T3a", "T3"]) == {"T3": None}
    # every label a row carries is one --only takes
    labels = {f"T{n}{s}" for n, s in [(1, "a"), (1, "b"), (1, "c"), (2, "a"), (2, "b"), (2, "c"), (3, ""), (3, "a"),
                                      (3, "b"), (3, "c"), (4, "a"), (4, "b"), (5, "a")]}
    assert labels <= set(theory.CHECKS) | set(theory.LABELS)
    assert {r.statement for r in report} <= labels


@pytest.mark.float32_only  # the float64 switch it guards happens only in a float32 run
def test_run_checks_on_threads_gives_the_rows_of_one_thread(monkeypatch):
    # T3 switches to float64 (once) while the other checks run: a stand-in that does the same (cheaper to
    # compile than T3) must not change the dtype the others draw in, nor the order of the rows
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


@pytest.mark.float32_only  # the table's text, not a value
def test_format_report_reads_without_the_docs():
    report = theory.run_checks(KEY, 4 * 48, ["T4a", "T5a"], impl=None)
    text = theory.format_report(report, "float32")
    header = text.splitlines()[0]
    assert "units" in header and "instances" in header
    assert "σ_V" in text and "excess/" in text  # the units of the rows
    assert "instances other than the 192 asked for" in text and "V=256: 48 of the 192" in text  # why T4a ran on 48
    assert "notes (information, not verdicts)" in text
    assert text.rstrip().endswith("pass in float32")


# ---- the implementation under test, from the user -----------------------------------------------------------

def test_load_impl_forms_and_errors(tmp_path, monkeypatch):
    assert theory.load_impl("isojax.head") is head
    assert theory.load_impl("tests.user_attention:alibi") is user_attention.alibi
    assert theory.load_impl(str(ROOT / "tests" / "user_attention.py") + ":inv_dk").score_scale(4) == 0.25
    (tmp_path / "mine.py").write_text("def log_probs(phi, h, b=None):\n    return 0\n")
    monkeypatch.chdir(tmp_path)
    assert theory.load_impl("mine").log_probs(None, None) == 0  # a module of the current folder, as python -m
    for spec, match in (("nothere_at_all:x", "could not import 'nothere_at_all'"),
                        ("isojax.head:nothing", "has no attribute 'nothing'"),
                        ("missing.py:x", "no such file 'missing.py'"), (":x", "expected module:object")):
        with pytest.raises(ValueError, match=match):
            theory.load_impl(spec)


def test_impl_kwargs_picks_the_functions_a_check_takes():
    assert set(theory.impl_kwargs(head, "T5a")) == {"expected_value", "kl"}  # kl_divergence, isojax's name
    assert theory.impl_kwargs(head, "T3") == {}
    t3 = theory.impl_kwargs(att, "T3")  # isojax's convention: the check's own score options go through
    assert set(t3) == set(theory.IMPL_FUNCTIONS["T3"]) and "options" not in t3
    alibi = theory.impl_kwargs(user_attention.alibi, "T3")
    assert alibi["options"]["bias"] is user_attention.alibi_bias and alibi["options"]["scale"] is None
    with pytest.raises(ValueError, match="fisher must be a function"):
        theory.impl_kwargs(types.SimpleNamespace(fisher=3), "T1c")
    with pytest.raises(ValueError, match="score_bias must be a function"):
        theory.impl_kwargs(types.SimpleNamespace(forward=att.attention_forward, score_bias=1.0), "T3")


def test_statements_without_the_users_functions_are_not_applicable():
    mine = types.SimpleNamespace(expected_value=head.expected_value)
    report = theory.run_checks(KEY, 8, ["T5a", "T1c"], impl=mine)
    t1c = [r for r in report if r.statement == "T1c"]
    assert len(t1c) == 1 and not t1c[0].applicable and "gives none of fisher, log_probs, kl" in t1c[0].compares
    t5a = {r.compares: r for r in report if r.statement == "T5a"}
    assert t5a["ŷ = float64 NumPy Σ_w v_w p_w, for p_f and p*"].applicable
    assert not t5a["KL(p*‖p_f) = float64 NumPy Σ p*(log p* - log p_f)"].applicable  # tests kl only
    assert report.passed and report.impl == "SimpleNamespace"
    with pytest.raises(ValueError, match="gives none of the functions the checks"):
        theory.run_checks(KEY, 8, ["T3"], impl=mine)  # a typo in every name is not a pass


@pytest.mark.parametrize("name, fails", [("alibi", None), ("inv_dk", None),
                                         ("broken", "closed-form backward = float64 NumPy gradients")])
def test_user_attentions_get_the_right_verdict(name, fails):
    # docs/tutorials/own_attention.md: an ALiBi and a 1/d_k attention pass with their score options as the
    # statement's parameters; a 1/d_k forward whose cache forgets its scale fails the backward's row
    kwargs = theory.impl_kwargs(getattr(user_attention, name), "T3")
    rows = theory.check_t3(KEY, 12, configs=[theory.T3_CONFIGS[3], theory.T3_CONFIGS[5]], **kwargs)
    failed = [r.compares for r in rows if not r.passed]
    if fails is None:
        assert not failed, failed
    else:
        assert any(c.startswith(fails) for c in failed), failed


def test_the_bias_of_a_t3_statement_must_not_depend_on_the_keys():
    # T3c holds for a bias that ignores the keys' content; one computed from them (here 0.1·|k_j|², which a
    # common shift of the keys changes differently for each key) is a different statement, and the row says so
    def keyed_attend(q, k, v, allowed, bias=None, scale=None):
        return att.attend(q, k, v, allowed, 0.1 * jnp.sum(k**2, -1)[:, None, :], scale)
    rows = theory.check_t3(KEY, 12, configs=[theory.T3_CONFIGS[5]], attend=keyed_attend)
    assert not next(r for r in rows if r.compares == "O unchanged by K -> K + 1cᵀ").passed


# ---- the regressions and helpers ----------------------------------------------------------------------------

def test_t1b_null_space_is_exact_so_float64_has_no_false_failure():
    # the audit's float64 false failure: λ from an SVD was in null(Φ_c) only up to rounding; the draw now makes
    # the null space exact, so p(·|h+λ) = p(·|h) rounds only in the implementation
    draw = theory.softmax._draw_t1b(16, 24, 15)
    x = jax.tree.map(np.asarray, draw(jax.random.PRNGKey(0)))
    phi, h, h_null = x["phi"], x["h"], x["h_null"]
    moved = np.any(h_null != h, axis=0)  # the coordinates λ moves
    assert moved.any() and not moved.all()
    # exactly: every column of Φ that λ moves is constant over the vocabulary, so it is 0 in Φ_c = Φ − 1φ̄ᵀ in
    # exact arithmetic and Φ_c λ = 0 (only a centring that rounds, e.g. a float64 mean of 16 equal values,
    # leaves ~1e-16 there); and λ moves no coordinate outside those columns
    assert np.all(phi[:, moved] == phi[:1, moved])
    assert np.all(h_null[:, ~moved] == h[:, ~moved])
    assert np.max(np.abs(R.centred(phi.astype(np.float64)) @ (h_null - h).astype(np.float64).T)) < 1e-12


def test_experiment_helpers_still_compute_their_quantities():
    params = att.init_attention(jax.random.PRNGKey(0), 8, 2, 4, 3)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 8), params.w_q.dtype)
    out = theory.t3_attention(params, x, x, True, None)
    assert 0 <= float(out["t3a"]) < 1e3 and 0 <= float(out["t3b_auto"]) < 1e2
    t2 = theory.t2_head_gradients(*theory.head_instance(16, 4)(jax.random.PRNGKey(2)))
    assert all(0 <= float(v) < 1e3 for v in t2.values())


def test_t4a_closed_form_matches_isotropy_on_a_large_isotropic_head():
    phi = 0.3 * jax.random.normal(KEY, (20000, 4))
    assert float(isotropy.partition_isotropy(phi)) > 0.95
    pred = theory.gaussian_log_partition(jnp.zeros(4), 0.09 * jnp.eye(4), jnp.eye(4), 20000)
    np.testing.assert_allclose(isotropy.log_partition_along(phi, jnp.eye(4)), pred, atol=0.02)
    np.testing.assert_allclose(R.gaussian_log_partition(np.zeros(4), 0.09 * np.eye(4), np.eye(4), 20000), pred,
                               rtol=1e-6)


def test_the_tutorial_shows_the_module_it_checks():
    # docs/tutorials/own_attention.md shows tests/user_attention.py in full: the two never drift apart
    text = (ROOT / "docs" / "tutorials" / "own_attention.md").read_text()
    module = Path(user_attention.__file__).read_text()
    assert f"```python\n{module}```" in text

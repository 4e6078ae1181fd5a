"""Every broken implementation in tests/theory_mutations.py fails the row named for it, and every row of
`isojax check` is named by at least one broken implementation (no row that cannot fail)."""

import jax
import pytest

from isojax import theory
from isojax._validate import float_dtype
from tests.theory_mutations import MUTATIONS, SMALL, run_small

_RUNS: dict = {}


def _rows(check: str, small: tuple = ()) -> tuple[theory.CheckRow, ...]:
    """The rows a check reports on a small setting, from a run of the real implementation (which must pass);
    one run per (check, setting) in this process."""
    key = (check, repr(small))
    if key not in _RUNS:
        rows = run_small(check, dict(small))
        bad = [r for r in rows if r.applicable and not r.passed]
        assert not bad, bad
        _RUNS[key] = tuple(rows)
    return _RUNS[key]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_broken_implementation_fails_its_row(mutation):
    rows = {r.compares: r for r in _rows(mutation.check, mutation.small)}
    assert mutation.row in rows, f"no row {mutation.row!r} in {mutation.check}"
    if not mutation.applies():
        # a mistake that shows only in another dtype (a float32 cast is right in float32): the row it names is
        # the float64 one, not applicable here, and the mutation is run where it shows (the float64 pass)
        assert not rows[mutation.row].applicable, f"{mutation.row!r} runs in {float_dtype()}"
        return
    failed = [r.compares for r in mutation.run() if r.applicable and not r.passed]
    assert mutation.row in failed, f"{mutation.name}: failing rows {failed}"


@pytest.mark.parametrize("check", sorted(SMALL))
def test_every_row_has_a_broken_implementation(check):
    named = {m.row for m in MUTATIONS if m.check == check}
    missing = [r.compares for r in _rows(check) if r.compares not in named]
    assert not missing, f"{check}: rows no broken implementation is named for: {missing}"


def test_every_check_is_covered():
    assert set(SMALL) == set(theory.CHECKS)


def test_patched_functions_are_restored():
    from isojax import head
    from isojax.theory import harness
    before = head.logits
    patched = next(m for m in MUTATIONS if m.patch())
    with pytest.raises(RuntimeError):
        with __import__("tests.theory_mutations", fromlist=["_patched"])._patched(patched.patch()):
            assert head.logits is not before and not harness._PROGRAMS
            raise RuntimeError
    assert head.logits is before


def test_run_checks_rejects_unknown_names():
    with pytest.raises(ValueError, match="only names unknown checks"):
        theory.run_checks(jax.random.PRNGKey(0), 4, ["T9"])

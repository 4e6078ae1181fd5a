"""Every broken implementation in tests/theory_mutations.py fails the row named for it, and every row of
`isojax check` is named by at least one broken implementation (no row that cannot fail)."""

import functools

import jax
import pytest

from isojax import theory
from tests.theory_mutations import MUTATIONS, SMALL


@functools.cache
def _rows(check: str) -> tuple[str, ...]:
    """The rows a check reports, from a run of the real implementation (which must pass)."""
    rows = SMALL[check]()
    bad = [r for r in rows if not r.passed]
    assert not bad, bad
    return tuple(r.compares for r in rows)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_broken_implementation_fails_its_row(mutation):
    assert mutation.row in _rows(mutation.check), f"no row {mutation.row!r} in {mutation.check}"
    failed = [r.compares for r in mutation.run() if not r.passed]
    assert mutation.row in failed, f"{mutation.name}: failing rows {failed}"


@pytest.mark.parametrize("check", sorted(SMALL))
def test_every_row_has_a_broken_implementation(check):
    named = {m.row for m in MUTATIONS if m.check == check}
    missing = [c for c in _rows(check) if c not in named]
    assert not missing, f"{check}: rows no broken implementation is named for: {missing}"


def test_every_check_is_covered():
    assert set(SMALL) == set(theory.CHECKS)


def test_run_checks_rejects_unknown_names():
    with pytest.raises(ValueError, match="only names unknown checks"):
        theory.run_checks(jax.random.PRNGKey(0), 4, ["T9"])

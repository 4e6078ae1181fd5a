"""Output paths checked before any compute (isojax.runs.outputs)."""

import os

import pytest

from isojax.runs import outputs

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only


def test_check_output_accepts_new_and_existing_files_and_creates_nothing(tmp_path):
    assert outputs.check_output(tmp_path / "a" / "b" / "t.csv", ".csv") == tmp_path / "a" / "b" / "t.csv"
    (tmp_path / "t.csv").write_text("x")
    outputs.check_output(tmp_path / "t.csv", ".csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_check_output_refusals(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(ValueError, match=r"must end in \.csv"):
        outputs.check_output(tmp_path / "t.txt", ".csv")
    with pytest.raises(ValueError, match=r"is a folder"):
        outputs.check_output(tmp_path / "d.csv", ".csv")
    with pytest.raises(ValueError, match=r"'.*f' is a file, not a folder"):
        outputs.check_output(tmp_path / "f" / "g" / "t.csv")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: permissions cannot fail")
def test_check_output_refuses_a_read_only_folder(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(ValueError, match="is not writable"):
        outputs.check_output(tmp_path / "ro" / "new" / "t.csv")

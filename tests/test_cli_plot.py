"""`isojax plot TABLE --x --y [--by] [--where] [--out]`: a sweep table drawn from the command line; every
refusal one line, exit 2, nothing written."""

import pytest

from isojax import cli
from tests.test_plots import _sweep_table

pytestmark = pytest.mark.float32_only


def test_isojax_plot_draws_a_sweep_table(tmp_path, capsys):
    out, _ = _sweep_table(tmp_path)
    assert cli.main(["plot", str(out), "--x", "knob", "--y", "m", "s", "--by", "family",
                     "--out", str(tmp_path / "figs" / "m.pdf")]) == 0, capsys.readouterr().err
    assert (tmp_path / "figs" / "m.png").stat().st_size > 1000 and (tmp_path / "figs" / "m.pdf").exists()
    assert "m.png" in capsys.readouterr().out
    assert cli.main(["plot", str(out), "--x", "knob", "--y", "m", "--where", "family=a", "n=16"]) == 0
    assert (tmp_path / "t_m_vs_knob.png").exists()


@pytest.mark.parametrize("flags, message", [
    (["--x", "knob", "--y", "missing"], "--y 'missing' is not a column of"),
    (["--x", "family", "--y", "m", "--where", "family=a"], "--x 'family' is not numeric"),
    (["--x", "knob", "--y", "m"], "column 'family' takes 2 values"),
    (["--x", "knob", "--y", "m", "--where", "family"], "--where must be COLUMN=VALUE, got 'family'"),
    (["--x", "knob", "--y", "m", "--where", "family=a", "family=b"], "--where names 'family' twice"),
    (["--x", "knob", "--y", "m", "--by", "family", "--out", "{tmp}/nowhere.png/x"], "cannot be created"),
])
def test_isojax_plot_refusals_are_one_line(tmp_path, capsys, flags, message):
    out, _ = _sweep_table(tmp_path)
    (tmp_path / "nowhere.png").write_text("a file where a folder should be")
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    assert cli.main(["plot", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("isojax plot: error: ") and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nowhere.png", "t.csv", "t.csv.json"]


def test_isojax_plot_an_empty_or_missing_table(tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("cell,knob,m\n")
    assert cli.main(["plot", str(tmp_path / "empty.csv"), "--x", "knob", "--y", "m"]) == 2
    assert "has no rows" in capsys.readouterr().err
    assert cli.main(["plot", str(tmp_path / "none.csv"), "--x", "knob", "--y", "m"]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_bytes(b"cell,knob\n0,\xff\n")
    assert cli.main(["plot", str(tmp_path / "bad.csv"), "--x", "knob", "--y", "cell"]) == 2
    assert "could not be read" in capsys.readouterr().err

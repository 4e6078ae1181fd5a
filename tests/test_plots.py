import subprocess
import sys

import matplotlib as mpl
import matplotlib.pyplot as plt
import pytest

from tests.conftest import subprocess_env

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only


def test_importing_isojax_plots_changes_no_global_state():
    code = ("import matplotlib as mpl; before = (mpl.get_backend(), dict(mpl.rcParams)); "
            "import isojax, isojax.plots; after = (mpl.get_backend(), dict(mpl.rcParams)); "
            "print(before == after)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=subprocess_env()).stdout.strip()
    assert out == "True"


def test_style_applies_inside_the_context_only(tmp_path):
    from isojax import plots

    size = mpl.rcParams["font.size"]
    with plots.style():
        assert mpl.rcParams["font.size"] == plots.STYLE["font.size"]
    assert mpl.rcParams["font.size"] == size
    fig, axes = plots.figure(2, 3)
    assert axes.shape == (2, 3)
    paths = plots.save(fig, tmp_path, "demo")
    assert [p.name for p in paths] == ["demo.png", "demo.pdf"] and all(p.stat().st_size > 0 for p in paths)
    assert not list(tmp_path.glob(".demo.tmp*"))  # written through temporary files, then renamed
    assert not plt.fignum_exists(fig.number)  # closed


def test_styled_decorator_runs_inside_the_style():
    from isojax import plots

    @plots.styled
    def size():
        return mpl.rcParams["font.size"]

    assert size() == plots.STYLE["font.size"]


# ----------------------------------------------------------------------------------------- figure sizes

def test_figure_size_follows_its_grid():
    import pytest

    from isojax import plots

    for nrows, ncols in [(1, 1), (1, 2), (2, 3), (2, 4), (3, 6), (1, 8)]:
        fig, _ = plots.figure(nrows, ncols)
        width, height = fig.get_size_inches()
        assert width / ncols >= plots.PANEL - 1e-9, (nrows, ncols)  # every panel wide enough to read
        assert height / nrows >= 0.75 * plots.PANEL - 1e-9, (nrows, ncols)
        assert width >= plots.SINGLE
        plt.close(fig)
    fig, _ = plots.figure(2, 4)
    assert tuple(fig.get_size_inches()) == pytest.approx((plots.DOUBLE, 2 * 0.75 * plots.DOUBLE / 4))
    plt.close(fig)
    fig, _ = plots.figure(1, 1)
    assert tuple(fig.get_size_inches()) == pytest.approx((plots.SINGLE, 0.75 * plots.SINGLE))
    plt.close(fig)
    fig, _ = plots.figure(1, 3, width=5.0, height=2.0)  # an explicit size is kept
    assert tuple(fig.get_size_inches()) == pytest.approx((5.0, 2.0))
    plt.close(fig)
    with pytest.raises(ValueError, match="ncols must be an integer >= 1"):
        plots.figure(1, 0)


# ----------------------------------------------------------------------------------------- plot_table

def _cell(key, family, n, knob, replicate=0):
    import jax
    x = jax.random.normal(key, (n,))
    return {"m": x.mean() + knob * (1.0 if family == "a" else 2.0), "s": x.std()}


def _sweep_table(folder, grid=None):
    from isojax.runs import sweep

    grid = grid or {"family": ["a", "b"], "n": [16], "knob": [0.0, 1.0, 2.0], "replicate": [0, 1, 2]}
    out = folder / "t.csv"
    return out, sweep.run_sweep(_cell, grid, out, seed=0, progress=False)


def test_plot_table_draws_the_mean_of_each_group_with_its_spread(tmp_path, monkeypatch):
    import numpy as np

    from isojax import plots

    out, rows = _sweep_table(tmp_path)
    drawn = {}
    save = plots.save

    def keep(fig, folder, name):
        drawn["fig"] = fig
        drawn["sizes"] = fig.get_size_inches()
        drawn["lines"] = [[(c.get_label(), tuple(c.lines[0].get_xdata()), tuple(c.lines[0].get_ydata()))
                           for c in ax.containers] for ax in fig.axes]  # each errorbar's data line
        return save(fig, folder, name)

    monkeypatch.setattr(plots, "save", keep)
    paths = plots.plot_table(out, "knob", ["m", "s"], by="family")
    assert [p.name for p in paths] == ["t_m_s_vs_knob_by_family.png", "t_m_s_vs_knob_by_family.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    for panel, column in zip(drawn["lines"], ("m", "s")):
        assert [label for label, _, _ in panel] == ["family = a", "family = b"]
        for family, (_, xs, ys) in zip(("a", "b"), panel):
            assert xs == (0.0, 1.0, 2.0)
            want = [np.mean([r[column] for r in rows if r["family"] == family and r["knob"] == k]) for k in xs]
            np.testing.assert_allclose(ys, want, rtol=1e-6)
    assert drawn["sizes"][0] / 2 >= plots.PANEL  # two panels, each readable
    # --where fixes a parameter; one panel per y
    paths = plots.plot_table(out, "knob", "m", where={"family": "b"}, out=tmp_path / "fig" / "b.png")
    assert [p.name for p in paths] == ["b.png", "b.pdf"]
    [(_, xs, ys)] = drawn["lines"][0]
    want = [np.mean([r["m"] for r in rows if r["family"] == "b" and r["knob"] == k]) for k in xs]
    np.testing.assert_allclose(ys, want, rtol=1e-6)


def test_plot_table_refuses_what_it_cannot_draw_before_drawing(tmp_path):
    import pytest

    from isojax import plots
    from isojax.runs import results

    out, _ = _sweep_table(tmp_path)
    cases = [
        (dict(x="knob", y="nope"), r"--y 'nope' is not a column of .*t\.csv'; its columns: \['cell', 'family'"),
        (dict(x="knob", y="m", by="kind"), r"--by 'kind' is not a column"),
        (dict(x="family", y="m"), r"--x 'family' is not numeric \(it holds 'a'\); numeric columns: \['cell', 'n', "),
        (dict(x="knob", y="m"), r"column 'family' takes 2 values \['a', 'b'\] in .*: choose one with --where "
                                r"family=a or draw a line for each with --by family"),
        (dict(x="knob", y="m", where={"family": "c"}), r"no row of .*t\.csv' has family=c"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            plots.plot_table(out, **kw)
    results.save_table([], tmp_path / "empty.csv", {"name": "empty"})
    with pytest.raises(ValueError, match=r"empty\.csv' has no rows"):
        plots.plot_table(tmp_path / "empty.csv", "x", "y")
    with pytest.raises(ValueError, match=r"missing\.csv': no such file"):
        plots.plot_table(tmp_path / "missing.csv", "x", "y")
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.pdf"))

import subprocess
import sys

import matplotlib as mpl
import matplotlib.pyplot as plt

from tests.conftest import subprocess_env


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

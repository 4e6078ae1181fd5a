"""Your own families and cells, seen by `isojax sweep`: `distributions.register_family`, `--import` and
`--cell` (isojax.runs.user_code), each refusal one line before anything is written."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from isojax import cli, distributions, isotropy
from isojax.runs import measures, user_code
from isojax.runs.results import read_table

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only

KEY = jax.random.PRNGKey(0)

# a researcher's file: a family registered at import, and a cell of their own
_FAMILIES = '''
import jax
import jax.numpy as jnp

from isojax import distributions


def ring(key, n, d, knob):
    """Points near a circle in the first two coordinates, thickened by noise of std e^-knob in the others."""
    k1, k2 = jax.random.split(key)
    angle = jax.random.uniform(k1, (n,), maxval=2 * jnp.pi)
    noise = jax.random.normal(k2, (n, d)) * jnp.exp(-knob)
    return noise.at[:, 0].add(jnp.cos(angle)).at[:, 1].add(jnp.sin(angle))


distributions.register_family("ring", ring, knob_range=(0.0, 20.0))
'''

_CELLS = '''
import jax

from isojax import isotropy


def spread(key, n, scale, replicate=0):
    x = scale * jax.random.normal(key, (n, 3))
    return {"isoscore": isotropy.isoscore(x), "mean_norm": jax.numpy.linalg.norm(x, axis=1).mean()}
'''


@pytest.fixture
def registry(monkeypatch):
    """The family registry as it was before the test, whatever the test registers."""
    monkeypatch.setattr(distributions, "FAMILIES", dict(distributions.FAMILIES))
    monkeypatch.setattr(distributions, "KNOB_RANGE", dict(distributions.KNOB_RANGE))
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("my_families", "my_cells"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield
    for name in ("my_families", "my_cells"):  # imported by the test: not left for the next test in this process
        sys.modules.pop(name, None)


def _ring(key, n, d, knob):
    return jax.random.normal(key, (n, d)) * jnp.exp(-knob)


def test_a_registered_family_samples_vmaps_and_checks_its_knob_and_output(registry):
    assert distributions.register_family("blob", _ring, (0.0, 5.0)) is _ring
    x = distributions.sample("blob", KEY, 30, 4, 1.0)
    assert x.shape == (30, 4)
    batch = jax.vmap(lambda k: distributions.sample("blob", KEY, 10, 3, k))(jnp.array([0.0, 2.0]))
    assert batch.shape == (2, 10, 3)
    with pytest.raises(ValueError, match=r"knob must be a finite number in \[0, 5\] for family 'blob'"):
        distributions.sample("blob", KEY, 10, 4, 6.0)
    distributions.register_family("flat", lambda key, n, d, knob: jnp.zeros((n,)), (0.0, 1.0))
    with pytest.raises(ValueError, match=r"family 'flat': its sampler returned .* shape \(10,\).*expected floats "
                                         r"of shape \[n, d\] = \[10, 4\]"):
        distributions.sample("flat", KEY, 10, 4, 0.5)
    distributions.register_family("ints", lambda key, n, d, knob: jnp.zeros((n, d), jnp.int32), (0.0, 1.0))
    with pytest.raises(ValueError, match="family 'ints': its sampler returned .* dtype int32"):
        distributions.sample("ints", KEY, 10, 4, 0.5)


@pytest.mark.parametrize("args, match", [
    (("cone", _ring, (0, 1)), "family 'cone' is built in"),
    (("two words", _ring, (0, 1)), "name must be letters"),
    (("a,b", _ring, (0, 1)), "name must be letters"),
    (("ok", "not a function", (0, 1)), "sampler must be a function"),
    (("ok", _ring, (1.0, 1.0)), "knob_range must be finite with low < high"),
    (("ok", _ring, (0.0, float("inf"))), "knob_range must be finite"),
    (("ok", _ring, 3.0), "knob_range must be two numbers"),
])
def test_register_family_refuses_bad_registrations(registry, args, match):
    before = dict(distributions.FAMILIES)
    with pytest.raises(ValueError, match=match):
        distributions.register_family(*args)
    assert distributions.FAMILIES == before


def test_a_name_is_taken_again_only_by_the_same_function(registry):
    distributions.register_family("blob", _ring, (0.0, 5.0))
    distributions.register_family("blob", _ring, (0.0, 9.0))  # a notebook cell run again
    assert distributions.KNOB_RANGE["blob"] == (0.0, 9.0)
    with pytest.raises(ValueError, match=r"family 'blob' is already registered by .*test_runs_user_code\._ring"):
        distributions.register_family("blob", lambda key, n, d, knob: _ring(key, n, d, knob), (0.0, 1.0))


def _two_measures(key, family, n, d, knob, replicate=0):
    x = distributions.sample(family, key, n, d, knob)
    return {"isoscore": isotropy.isoscore(x), "top1_variance": isotropy.top3_variance_ratio(x)[0]}


def test_isojax_sweep_imports_a_file_that_registers_a_family(registry, tmp_path, monkeypatch, capsys):
    (tmp_path / "my_families.py").write_text(_FAMILIES)
    monkeypatch.chdir(tmp_path)
    # two of the measures: every measure compiles for half a minute a family (the clustered cosine), and the
    # path of a family from --import through the sweep to sample() is the same
    monkeypatch.setattr(measures, "measures_cell", _two_measures)
    out = tmp_path / "s.csv"
    # without the import, the family is unknown: one line, nothing written
    assert cli.main(["sweep", "--families", "ring", "--knobs", "0", "3", "--n", "40", "--d", "4",
                     "--replicates", "1", "--out", str(out)]) == 2
    assert "families ['ring'] unknown" in capsys.readouterr().err and not out.exists()
    flags = ["sweep", "--import", "my_families.py", "--families", "ring", "--knobs", "0", "3",
             "--n", "40", "--d", "4", "--replicates", "1", "--out", str(out)]
    assert cli.main(flags) == 0, capsys.readouterr().err
    rows = read_table(out)
    assert [(r["family"], r["knob"]) for r in rows] == [("ring", 0.0), ("ring", 3.0)]
    ring = rows
    assert ring[1]["top1_variance"] > 0.4 > ring[0]["top1_variance"]  # a thin ring: two directions dominate
    # the sampler's code is part of the table's identity
    meta = json.loads((tmp_path / "s.csv.json").read_text())
    assert meta["config"]["families"]["ring"]["knob_range"] == [0.0, 20.0]
    before = out.read_bytes()
    (tmp_path / "my_families.py").write_text(_FAMILIES.replace("jnp.exp(-knob)", "jnp.exp(-2 * knob)"))
    sys.modules.pop("my_families")
    assert cli.main(flags) == 2
    assert "config.families" not in (err := capsys.readouterr().err) and "families.ring.sampler.code" in err
    assert out.read_bytes() == before
    # the same by module name, and a knob outside the registered range is refused before any compute
    sys.modules.pop("my_families")
    (tmp_path / "my_families.py").write_text(_FAMILIES)
    assert cli.main(["sweep", "--import", "my_families", "--families", "ring", "--knobs", "25", "--n", "40",
                     "--d", "4", "--out", str(tmp_path / "k.csv")]) == 2
    assert "knob 25.0 is outside the range [0, 20] of family 'ring'" in capsys.readouterr().err
    assert not (tmp_path / "k.csv").exists()


def test_isojax_sweep_runs_your_own_cell_from_a_config(registry, tmp_path, monkeypatch, capsys):
    (tmp_path / "my_cells.py").write_text(_CELLS)
    spec = {"cell": "my_cells.py:spread", "grid": {"n": [20, 40], "scale": [1.0, 3.0], "replicate": [0, 1]},
            "seed": 2, "out": str(tmp_path / "c.csv")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", "--config", "spec.json"]) == 0, capsys.readouterr().err
    rows = read_table(tmp_path / "c.csv")
    assert len(rows) == 8 and list(rows[0])[:4] == ["cell", "n", "scale", "replicate"]
    for r in rows:
        assert 0.0 <= r["isoscore"] <= 1.0 and r["mean_norm"] > r["scale"]  # |x| of 3 N(0, s²) coordinates
    meta = json.loads((tmp_path / "c.csv.json").read_text())
    assert meta["config"]["name"] == "spread" and meta["config"]["cell_fn"]["qualname"] == "spread"
    # by module name on the command line: the same cell, so the table is resumed, not refused
    assert cli.main(["sweep", "--config", "spec.json", "--cell", "my_cells:spread"]) == 0


@pytest.mark.parametrize("cell, grid, match", [
    ("my_cells.py:nope", {"n": [2]},
     r"--cell 'my_cells.py:nope': 'my_cells.py' has no 'nope'; it defines \['spread'\]"),
    ("missing.py:f", {"n": [2]}, r"--cell 'missing.py:f': no such .py file"),
    ("no_such_module:f", {"n": [2]}, r"no module named 'no_such_module'"),
    ("my_cells.py", {"n": [2]}, "--cell must be MODULE:NAME or FILE.py:NAME"),
    ("my_cells.py:spread", {"n": [20], "scale": [1.0], "depth": [3]},
     r"the grid has \['depth'\], which spread does not take; its parameters: \['n', 'scale', 'replicate'\]"),
    ("my_cells.py:spread", {"n": [20]}, r"the grid lacks \['scale'\], which spread needs"),
    ("broken.py:f", {"n": [2]}, r"--cell 'broken.py:f' failed to import: ZeroDivisionError: division by zero "
                                r"\(at broken.py:2\)"),
])
def test_a_cell_that_does_not_fit_is_refused_in_one_line(registry, tmp_path, monkeypatch, capsys, cell, grid, match):
    (tmp_path / "my_cells.py").write_text(_CELLS)
    (tmp_path / "broken.py").write_text("import math\nBAD = 1 / 0\n")
    (tmp_path / "spec.json").write_text(json.dumps({"cell": cell, "grid": grid, "out": str(tmp_path / "c.csv")}))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", "--config", "spec.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("isojax sweep: error: ")
    import re
    assert re.search(match, err), err
    assert not (tmp_path / "c.csv").exists()


def test_a_file_in_a_package_is_imported_under_its_package_name(registry, tmp_path):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "__init__.py").write_text("")
    (tmp_path / "lab" / "cells.py").write_text("from lab import helpers\ndef cell(key, x):\n    return helpers.f(x)\n")
    (tmp_path / "lab" / "helpers.py").write_text("def f(x):\n    return {'y': x}\n")
    fn = user_code.load_object(str(tmp_path / "lab" / "cells.py") + ":cell")
    assert fn.__module__ == "lab.cells" and fn(None, 2.0) == {"y": 2.0}
    for name in ("lab", "lab.cells", "lab.helpers"):
        sys.modules.pop(name)


def test_measures_sweep_refuses_knobs_outside_a_family_range(tmp_path):
    grid = {"family": ["power_law"], "n": [20], "d": [4], "knob": [0.0, 500.0]}
    with pytest.raises(ValueError, match=r"knob 500.0 is outside the range \[0, 100\] of family 'power_law'"):
        measures.measures_sweep(grid, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    assert np.isfinite(np.asarray(distributions.sample("power_law", KEY, 20, 4, 100.0))).all()

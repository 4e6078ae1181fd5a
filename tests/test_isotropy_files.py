"""Hidden states read from files and measured layer by layer (isojax.isotropy.files, `isojax measure`)."""

import numpy as np
import pytest

from isojax import isotropy
from isojax.isotropy import files

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only


def test_read_hidden_layouts_and_refusals(tmp_path):
    x = np.arange(24.0).reshape(2, 3, 4)
    np.save(tmp_path / "a.npy", x)
    assert list(files.read_hidden(tmp_path / "a.npy")) == ["0", "1"]
    np.savez(tmp_path / "b.npz", hidden=x[0], text_index=np.arange(3))  # embed's own output: hidden wins
    (layer,) = files.read_hidden(tmp_path / "b.npz").values()
    np.testing.assert_array_equal(layer, x[0])
    np.savez(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="holds no arrays"):
        files.read_hidden(tmp_path / "c.npz")


def test_measure_file_rows_against_the_measures_themselves(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 40, 5)) * np.array([1.0, 3.0])[:, None, None]
    x[1, :, 0] += 12.0  # the second layer: a common offset, anisotropic
    np.save(tmp_path / "h.npy", x)
    rows, written = files.measure_file(tmp_path / "h.npy", tmp_path / "m.csv", ["isoscore", "cosine"], seed=1)
    assert [set(r) >= {"layer", "isoscore", "cosine"} for r in rows] == [True, True]
    for row, layer in zip(rows, x):
        assert row["isoscore"] == pytest.approx(float(isotropy.isoscore(layer)), rel=1e-4)
        assert row["cosine"] == pytest.approx(float(isotropy.mean_cosine(layer)), rel=1e-4, abs=1e-6)
    assert rows[1]["cosine"] > rows[0]["cosine"] + 0.3
    assert sorted(p.name for p in written) == ["m.csv", "m.csv.json", "m.pdf", "m.png"]

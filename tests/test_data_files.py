"""Your own series: csv:/npy: sources, corpus.from_series and the checks every user series gets."""

import jax
import numpy as np
import pytest

from isojax.data import corpus, files, real

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only

KEY = jax.random.PRNGKey(0)


def _csv(path, header, columns):
    rows = ["," .join(str(v) for v in row) for row in zip(*columns)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_csv_every_numeric_column_or_one_by_name_or_index(tmp_path):
    t = np.arange(120.0)
    _csv(tmp_path / "s.csv", "a,label,b", [np.sin(t / 4), ["x"] * 120, t**0.5])
    series, names = files.load_series(f"csv:{tmp_path / 's.csv'}")
    assert names == [f"{tmp_path / 's.csv'}:a", f"{tmp_path / 's.csv'}:b"]  # the text column is skipped
    np.testing.assert_allclose(series[1], t**0.5)
    (b,), (name,) = files.load_series(f"csv:{tmp_path / 's.csv'}:b")
    np.testing.assert_allclose(b, t**0.5)
    (a,), _ = files.load_series(f"csv:{tmp_path / 's.csv'}:0")
    np.testing.assert_allclose(a, np.sin(t / 4), atol=1e-12)
    with pytest.raises(ValueError, match="column 'label' .* is not numeric"):
        files.load_series(f"csv:{tmp_path / 's.csv'}:label")


def test_a_path_with_a_colon_is_a_path(tmp_path):
    path = _csv(tmp_path / "odd:name.csv", "v", [np.arange(50.0)])
    (v,), (name,) = files.load_series(f"csv:{path}")
    assert name == f"{path}:v" and v[-1] == 49.0


def test_npy_one_or_several_series(tmp_path):
    np.save(tmp_path / "one.npy", np.arange(10.0))
    np.save(tmp_path / "two.npy", np.arange(20).reshape(2, 10))
    assert len(files.load_series(f"npy:{tmp_path / 'one.npy'}")[0]) == 1
    series, names = files.load_series(f"npy:{tmp_path / 'two.npy'}")
    assert names == [f"{tmp_path / 'two.npy'}[0]", f"{tmp_path / 'two.npy'}[1]"] and series[1][0] == 10.0
    assert series[0].dtype == np.float64


def test_from_series_is_the_same_corpus_as_the_built_in_route():
    """A real set given as arrays gives exactly the corpus `build` makes from its name."""
    for tokenizer in ("bins", "digits"):
        built = corpus.build("real:macrodata", tokenizer, KEY, seq_len=32)
        own = corpus.from_series(real.load("macrodata"), tokenizer, seq_len=32)
        np.testing.assert_array_equal(own.sequences, built.sequences)
        for a, b in zip(own.targets + own.contexts, built.targets + built.contexts):
            np.testing.assert_array_equal(a, b)


def test_file_source_builds_the_corpus_of_its_arrays(tmp_path):
    x = np.cumsum(np.random.default_rng(0).normal(size=(3, 200)), axis=1)
    np.save(tmp_path / "x.npy", x)
    via_file = corpus.build(f"npy:{tmp_path / 'x.npy'}", "digits", KEY, seq_len=24)
    direct = corpus.from_series(list(x), "digits", seq_len=24)
    np.testing.assert_array_equal(via_file.sequences, direct.sequences)
    assert len(direct.contexts) == 3 and all(len(t) == 16 for t in direct.targets)


@pytest.mark.parametrize("bad, message", [
    ([np.arange(100.0), np.full(100, 3.0)], r"series\[1\] is constant \(3.0 throughout\)"),
    ([np.r_[np.arange(100.0), np.nan]], r"series\[0\] has 1 non-finite values .* first at index 100"),
    ([np.r_[np.arange(100.0), np.inf, -np.inf]], r"series\[0\] has 2 non-finite values"),
    ([np.arange(100.0), np.ones((2, 50))], r"series\[1\] must be a 1-D series, got shape \(2, 50\)"),
    ([np.arange(1.0)], r"series\[0\] is too short: 1 values"),
    ([np.arange(100.0), np.arange(20.0)], r"series\[1\] is too short: its first 80% \(16 of 20 values\) gives 16 "
                                          r"tokens, fewer than seq_len=32"),
    ([], r"series must be a non-empty list"),
])
def test_from_series_refuses_bad_series_naming_them(bad, message):
    with pytest.raises(ValueError, match=message):
        corpus.from_series(bad, "bins", seq_len=32)


def test_from_series_argument_checks():
    ok = [np.sin(np.arange(200.0))]
    with pytest.raises(ValueError, match="seq_len must be an integer >= 2"):
        corpus.from_series(ok, "bins", seq_len=1)
    with pytest.raises(ValueError, match="test_fraction must be in"):
        corpus.from_series(ok, "bins", test_fraction=1.0)
    with pytest.raises(ValueError, match=r"temps\.csv:t is constant"):
        corpus.from_series([np.ones(100)], "bins", names=["temps.csv:t"])
    with pytest.raises(ValueError, match="names has 2 entries for 1 series"):
        corpus.from_series(ok, "bins", names=["a", "b"])


def test_tokenizer_spec_round_trip():
    for name in ("bins", "digits"):
        tok = corpus.make_tokenizer(name)
        assert corpus.tokenizer_from_spec(corpus.tokenizer_spec(tok)) == tok
    with pytest.raises(ValueError, match="tokenizer spec must be a dict"):
        corpus.tokenizer_from_spec({"name": "words"})
    with pytest.raises(ValueError, match="does not fit the bins tokenizer"):
        corpus.tokenizer_from_spec({"name": "bins", "colour": 1})

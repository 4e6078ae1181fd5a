"""The library functions behind the CLI: output checks, training guards, embedding, measuring saved hidden
states; and the own-series tutorial, executed block by block as a user would paste it."""

import os

import numpy as np
import pytest

from isojax import isotropy, train, workflows


def test_check_output_accepts_new_and_existing_files_and_creates_nothing(tmp_path):
    assert workflows.check_output(tmp_path / "a" / "b" / "t.csv", ".csv") == tmp_path / "a" / "b" / "t.csv"
    (tmp_path / "t.csv").write_text("x")
    workflows.check_output(tmp_path / "t.csv", ".csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_check_output_refusals(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(ValueError, match=r"must end in \.csv"):
        workflows.check_output(tmp_path / "t.txt", ".csv")
    with pytest.raises(ValueError, match=r"is a folder"):
        workflows.check_output(tmp_path / "d.csv", ".csv")
    with pytest.raises(ValueError, match=r"'.*f' is a file, not a folder"):
        workflows.check_output(tmp_path / "f" / "g" / "t.csv")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: permissions cannot fail")
def test_check_output_refuses_a_read_only_folder(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(ValueError, match="is not writable"):
        workflows.check_output(tmp_path / "ro" / "new" / "t.csv")


def test_train_model_saves_nothing_when_training_diverges(tmp_path, monkeypatch):
    real = train.train

    def diverging(*args, **kwargs):
        params, losses, saved = real(*args, **kwargs)
        return params, losses * np.nan, saved

    monkeypatch.setattr(train, "train", diverging)
    with pytest.raises(ValueError, match="training diverged.*nothing was saved"):
        workflows.train_model("gp:rbf_0.1", "bins", "decoder", 1, 8, 2, 16, 2, 0, tmp_path / "m.safetensors",
                              log=lambda s: None)
    assert list(tmp_path.iterdir()) == []


def test_train_then_embed_own_npy_series_with_the_checkpoint_tokenizer(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "s.npy", np.cumsum(rng.normal(size=(2, 300)), axis=1))
    logs = []
    out = workflows.train_model(f"npy:{tmp_path / 's.npy'}", "digits", "encoder", 1, 8, 2, 24, 3, 0,
                                tmp_path / "m.safetensors", log=logs.append)
    meta = train.load(out)[2]
    assert meta["tokenizer"] == {"name": "digits", "precision": 1, "digits": 3, "percentile": 90.0}
    assert meta["data_sha256"] == __import__("hashlib").sha256((tmp_path / "s.npy").read_bytes()).hexdigest()
    assert meta["arch"] == "encoder" and not meta["config"].causal and any("NMSE" in line for line in logs)
    hidden = workflows.embed_data(str(out), f"npy:{tmp_path / 's.npy'}", None, 3, 0, tmp_path / "h.npz")
    assert hidden.shape == (2, 3 * 24, 8)
    np.testing.assert_array_equal(np.load(tmp_path / "h.npz")["hidden"], hidden)
    with pytest.raises(ValueError, match="'bins' does not match checkpoint"):
        workflows.embed_data(str(out), "real:nile", "bins", 3, 0, tmp_path / "h2.npz")
    assert not (tmp_path / "h2.npz").exists()


def test_read_hidden_layouts_and_refusals(tmp_path):
    x = np.arange(24.0).reshape(2, 3, 4)
    np.save(tmp_path / "a.npy", x)
    assert list(workflows.read_hidden(tmp_path / "a.npy")) == ["0", "1"]
    np.savez(tmp_path / "b.npz", hidden=x[0], text_index=np.arange(3))  # embed's own output: hidden wins
    (layer,) = workflows.read_hidden(tmp_path / "b.npz").values()
    np.testing.assert_array_equal(layer, x[0])
    np.savez(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="holds no arrays"):
        workflows.read_hidden(tmp_path / "c.npz")


def test_measure_file_rows_against_the_measures_themselves(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 40, 5)) * np.array([1.0, 3.0])[:, None, None]
    x[1, :, 0] += 12.0  # the second layer: a common offset, anisotropic
    np.save(tmp_path / "h.npy", x)
    rows, written = workflows.measure_file(tmp_path / "h.npy", tmp_path / "m.csv", ["isoscore", "cosine"], seed=1)
    assert [set(r) >= {"layer", "isoscore", "cosine"} for r in rows] == [True, True]
    for row, layer in zip(rows, x):
        assert row["isoscore"] == pytest.approx(float(isotropy.isoscore(layer)), rel=1e-4)
        assert row["cosine"] == pytest.approx(float(isotropy.mean_cosine(layer)), rel=1e-4, abs=1e-6)
    assert rows[1]["cosine"] > rows[0]["cosine"] + 0.3
    assert sorted(p.name for p in written) == ["m.csv", "m.csv.json", "m.pdf", "m.png"]



"""What `isojax train` and `isojax embed --data` do (isojax.models.commands): training guards, the checkpoint's
description, embedding your own series with the checkpoint's tokenizer."""

import hashlib

import numpy as np
import pytest

from isojax import forecast as fc
from isojax.models import checkpoint, commands, ensemble, training
from isojax.runs import results

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only


def test_train_model_saves_nothing_when_training_diverges(tmp_path, monkeypatch):
    real = training.train

    def diverging(*args, **kwargs):
        params, losses, saved = real(*args, **kwargs)
        return params, losses * np.nan, saved

    monkeypatch.setattr(training, "train", diverging)
    with pytest.raises(ValueError, match="training diverged.*nothing was saved"):
        commands.train_model("gp:rbf_0.1", "bins", "decoder", 1, 8, 2, 16, 2, 0, tmp_path / "m.safetensors",
                              log=lambda s: None)
    assert list(tmp_path.iterdir()) == []


def test_train_then_embed_own_npy_series_with_the_checkpoint_tokenizer(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "s.npy", np.cumsum(rng.normal(size=(2, 300)), axis=1))
    logs = []
    out = commands.train_model(f"npy:{tmp_path / 's.npy'}", "digits", "encoder", 1, 8, 2, 24, 3, 0,
                                tmp_path / "m.safetensors", log=logs.append,
                                evaluation=ensemble.Evaluation(windows=4, samples=3, draws=100))
    meta = checkpoint.load(out)[2]
    assert meta["tokenizer"] == {"name": "digits", "precision": 1, "digits": 3, "percentile": 90.0}
    assert meta["data_sha256"] == hashlib.sha256((tmp_path / "s.npy").read_bytes()).hexdigest()
    assert meta["arch"] == "encoder" and not meta["config"].causal and any(line.startswith("nmse") for line in logs)
    rows = results.read_table(tmp_path / "m.forecast.csv")
    model = [r for r in rows if r["forecaster"].startswith("encoder")]
    assert {r["metric"] for r in model} == set(fc.METRICS) == {"mase", "smape", "nmse", "scaled_crps", "wql"}
    assert all(r["windows"] >= 2 and r["samples"] == 3 for r in model)
    hidden = commands.embed_data(str(out), f"npy:{tmp_path / 's.npy'}", None, 3, 0, tmp_path / "h.npz")
    assert hidden.shape == (2, 3 * 24, 8)
    np.testing.assert_array_equal(np.load(tmp_path / "h.npz")["hidden"], hidden)
    with pytest.raises(ValueError, match="'bins' does not match checkpoint"):
        commands.embed_data(str(out), "real:nile", "bins", 3, 0, tmp_path / "h2.npz")
    assert not (tmp_path / "h2.npz").exists()

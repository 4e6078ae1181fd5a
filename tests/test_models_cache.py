"""The train-or-load cache (isojax.models.cache) under the study's ensemble (isojax.models.ensemble): every run
its own entry; a good entry reused silently with the same numbers; a corrupt, foreign or incomplete one named
and retrained; a run's numbers independent of the runs trained beside it."""

import warnings

import jax
import numpy as np
import pytest

from isojax.models import cache, checkpoint, ensemble, training

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only

BASE = jax.random.PRNGKey(5)
RUNS = [ensemble.NumericRun("a", "gp:rbf_0.1", "bins", "decoder"),
        ensemble.NumericRun("b", "gp:rbf_0.1", "bins", "decoder", seed=1)]


def _flip_byte(path, offset_from_end):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def _run(cache_dir, runs=RUNS):
    return ensemble.train_and_evaluate(runs, BASE, 3, cache_dir, seq_len=16,
                                       evaluation=ensemble.Evaluation(windows=2, samples=2, draws=50, rows=32))[0]


def _numbers(evaluated):
    # compared by repr: bit for bit, and NaN equals NaN
    return repr([(e.forecast, e.final_loss, e.head_partition_isotropy, e.layers) for e in evaluated])


def test_model_cache_reuses_a_good_entry_and_retrains_a_bad_one(tmp_path, monkeypatch):
    first = _numbers(_run(tmp_path))
    models = sorted(tmp_path.glob("*.safetensors"))
    assert len(models) == 2  # one entry per run of the ensemble
    model = models[0]
    losses = model.with_suffix(".losses.npy")
    meta = checkpoint.load(model)[2]
    assert meta["data"] == "gp:rbf_0.1" and meta["steps"] == 3 and meta["tokenizer"]["name"] == "bins"
    assert meta["engine"] == training.layout_tag(training.default_engine()) and meta["name"] in ("a", "b")
    calls = []
    real = training.train_many
    monkeypatch.setattr(training, "train_many", lambda runs, *a, **k: calls.append(len(runs)) or real(runs, *a, **k))

    def rerun():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = _numbers(_run(tmp_path))
        assert again == first  # the experiments' numbers never change
        return [str(w.message) for w in caught if "model cache entry" in str(w.message)]

    assert rerun() == [] and calls == []  # good entries are reused, silently
    good = meta["sha256"]
    _flip_byte(model, 5)
    (message,) = rerun()
    assert model.name in message and "checksum" in message and calls == [1]  # only the bad run retrains
    assert checkpoint.load(model)[2]["sha256"] == good  # retrained alone: the same tensors, bit for bit
    losses.unlink()
    (message,) = rerun()
    assert "losses file" in message and "missing" in message and calls == [1, 1] and losses.exists()
    np.save(losses, np.load(losses) + 1.0)
    (message,) = rerun()
    assert "does not match" in message and len(calls) == 3
    # an entry written for another run (a file copied or renamed into place): consistent, but not this run's
    params, config, meta = checkpoint.load(model)
    checkpoint.save(model, params, config, {**{k: meta[k] for k in ("tokenizer", "data", "steps", "seed",
                                                                    "losses_sha256")}, "run": "0123456789abcdef"})
    (message,) = rerun()
    assert "written for run '0123456789abcdef'" in message and len(calls) == 4


def test_the_digest_names_what_changes_a_model():
    from isojax import transformer as tf

    config = tf.Config(vocab=9, d_model=8, heads=2, layers=1, mlp=16, max_len=8)
    seqs = np.zeros((3, 8), np.int32)
    spec = cache.RunSpec(BASE, seqs, config, training.TrainConfig(steps=2))
    base = cache.run_digest(spec, training.Engine("vmap", 4))
    assert cache.run_digest(spec, training.Engine("vmap", 4, chunk_steps=7)) == base  # chunking changes nothing
    for other in (cache.run_digest(spec, training.SERIAL), cache.run_digest(spec, training.Engine("vmap", 8)),
                  cache.run_digest(cache.RunSpec(BASE, seqs + 1, config, spec.tcfg), training.Engine("vmap", 4)),
                  cache.run_digest(cache.RunSpec(jax.random.PRNGKey(6), seqs, config, spec.tcfg),
                                   training.Engine("vmap", 4)),
                  cache.run_digest(cache.RunSpec(BASE, seqs, config, training.TrainConfig(steps=3)),
                                   training.Engine("vmap", 4))):
        assert other != base


def _count_evaluations(monkeypatch):
    calls = []
    real = ensemble._evaluate
    monkeypatch.setattr(ensemble, "_evaluate", lambda run, *a, **k: calls.append(run.name) or real(run, *a, **k))
    return calls


def test_evaluations_are_cached_beside_their_models_and_a_bad_entry_is_recomputed(tmp_path, monkeypatch):
    """A design interrupted after training or part-way through evaluation resumes: the second call evaluates
    nothing it has, with the same numbers; an edited, foreign or unreadable entry is named and recomputed."""
    evaluations = _count_evaluations(monkeypatch)
    first = _numbers(_run(tmp_path))
    entries = sorted(tmp_path.glob("*.eval-*.json"))
    assert len(entries) == 2 and evaluations == ["a", "b"]
    assert {e.name.split(".eval-")[0] for e in entries} == {m.stem for m in tmp_path.glob("*.safetensors")}
    evaluations.clear()
    assert _numbers(_run(tmp_path)) == first and evaluations == []  # nothing recomputed, the same numbers
    no_cache = _run(None)
    assert _numbers(no_cache) == first  # caching changes no number
    # the hidden states come back with a cached evaluation too (the PCA figure draws them)
    assert all(e.hidden.shape == f.hidden.shape and np.array_equal(e.hidden, f.hidden)
               for e, f in zip(_run(tmp_path), no_cache))
    entry = entries[0]
    text = entry.read_text()
    # a number edited by hand: the checksum no longer matches
    edited = text.replace('"final_loss": ', '"final_loss": 1', 1)
    assert edited != text
    entry.write_text(edited)
    for bad, why in ((edited, "checksum"), ("{not json", "unusable"), (text.replace(entry.name.split("eval-")[1][:16],
                                                                                  "0" * 16, 1), "written for")):
        entry.write_text(bad)
        evaluations.clear()
        with pytest.warns(UserWarning, match=why):
            again = _numbers(_run(tmp_path))
        assert again == first and len(evaluations) == 1  # only the bad entry is recomputed
    assert entry.read_text() == text  # and rewritten as it was
    # other evaluation settings are another entry, never the cached one
    evaluations.clear()
    ensemble.train_and_evaluate(RUNS, BASE, 3, tmp_path, seq_len=16,
                                evaluation=ensemble.Evaluation(windows=2, samples=3, draws=50, rows=32))
    assert evaluations == ["a", "b"] and len(list(tmp_path.glob("*.eval-*.json"))) == 4


def test_an_interrupted_ensemble_keeps_the_runs_it_finished(tmp_path, monkeypatch):
    """Runs are trained and saved a slice at a time (as many as the engine trains at once): a failure in the
    second slice leaves the first slice's models in the cache, and the next call trains only the rest, with the
    numbers one uninterrupted call gives."""
    one_lane = training.Engine("vmap", 1)
    whole = _numbers(ensemble.train_and_evaluate(RUNS, BASE, 3, None, seq_len=16, engine=one_lane,
                                                 evaluation=ensemble.Evaluation(windows=2, samples=2, draws=50,
                                                                                rows=32))[0])
    calls = []
    real = training.train_many

    def failing_second(runs, *a, **k):
        calls.append(len(runs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(runs, *a, **k)

    monkeypatch.setattr(training, "train_many", failing_second)
    lines = []
    with pytest.raises(KeyboardInterrupt):
        ensemble.train_and_evaluate(RUNS, BASE, 3, tmp_path, seq_len=16, engine=one_lane, log=lines.append,
                                    evaluation=ensemble.Evaluation(windows=2, samples=2, draws=50, rows=32))
    assert calls == [1, 1] and len(list(tmp_path.glob("*.safetensors"))) == 1
    assert lines == ["  trained 1 of 2 runs (0 loaded from the cache)"]
    monkeypatch.setattr(training, "train_many", lambda runs, *a, **k: calls.append(len(runs)) or real(runs, *a, **k))
    resumed = ensemble.train_and_evaluate(RUNS, BASE, 3, tmp_path, seq_len=16, engine=one_lane,
                                          evaluation=ensemble.Evaluation(windows=2, samples=2, draws=50, rows=32))[0]
    assert calls == [1, 1, 1] and _numbers(resumed) == whole


def test_the_evaluation_digest_names_everything_an_evaluation_depends_on(monkeypatch):
    """Change any input of an evaluation and its cache entry changes: the parameters, the settings, the key, the
    series (a value or where one series ends), isojax's code, the libraries."""
    import dataclasses as dc

    from isojax.data import corpus

    data = corpus.build("gp:rbf_0.1", "bins", BASE, seq_len=16, count=4)
    how, key = ensemble.Evaluation(windows=2), jax.random.PRNGKey(1)
    base = ensemble._evaluation_digest("p" * 16, how, key, data)
    assert ensemble._evaluation_digest("p" * 16, how, key, data) == base  # deterministic
    merged = [np.concatenate(data.series[:2])] + list(data.series[2:])  # same values, one boundary fewer
    others = [ensemble._evaluation_digest("q" * 16, how, key, data),
              ensemble._evaluation_digest("p" * 16, ensemble.Evaluation(windows=3), key, data),
              ensemble._evaluation_digest("p" * 16, how, jax.random.PRNGKey(2), data),
              ensemble._evaluation_digest("p" * 16, how, key, dc.replace(data, series=merged)),
              ensemble._evaluation_digest("p" * 16, how, key,
                                          dc.replace(data, series=[data.series[0] + 1e-9] + list(data.series[1:])))]
    monkeypatch.setattr(cache, "_CODE_DIGEST", "0" * 16)
    others.append(ensemble._evaluation_digest("p" * 16, how, key, data))
    monkeypatch.undo()
    monkeypatch.setattr(np, "__version__", "0.0")
    others.append(ensemble._evaluation_digest("p" * 16, how, key, data))
    assert len(set(others)) == len(others) and base not in others
    # the parameters' digest sees every tensor
    from isojax import transformer as tf
    params = tf.init(BASE, tf.Config(vocab=9, d_model=8, heads=2, layers=1, mlp=16, max_len=8))
    nudged = dc.replace(params, head_bias=params.head_bias.at[0].add(1e-3))
    assert cache.params_digest(params) == cache.params_digest(params)
    assert cache.params_digest(nudged) != cache.params_digest(params)


def test_a_cached_evaluation_of_the_wrong_shape_is_refused_and_recomputed(tmp_path, monkeypatch):
    """An entry whose checksum matches (rewritten through save_entry, say) but whose payload is not an
    evaluation is named and recomputed, never handed to the experiments; so is one nested past the parser."""
    first = _numbers(_run(tmp_path))
    entry = sorted(tmp_path.glob("*.eval-*.json"))[0]
    digest = entry.name.split(".eval-")[1][:-len(".json")]
    text = entry.read_text()
    evaluations = _count_evaluations(monkeypatch)
    for bad in ({"forecast": []}, {"forecast": {}, "forecast_rows": [{}], "final_loss": "low",
                                   "head_partition_isotropy": 0.1, "layers": [{"isoscore": 0.1}]},
                {"forecast": {}, "forecast_rows": [{}], "final_loss": 0.1, "head_partition_isotropy": 0.1,
                 "layers": []}):
        cache.save_entry(entry, digest, bad)
        evaluations.clear()
        with pytest.warns(UserWarning, match="unusable"):
            assert _numbers(_run(tmp_path)) == first
        assert len(evaluations) == 1 and entry.read_text() == text
    entry.write_text("[" * 100000 + "]" * 100000)
    with pytest.warns(UserWarning, match="unusable"):
        assert _numbers(_run(tmp_path)) == first

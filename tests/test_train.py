"""Training, self-describing checksummed checkpoints, the model cache and forecasting."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import isojax
from isojax import isotropy, lm, train
from isojax import transformer as tf
from isojax.data import teacher

KEY = jax.random.PRNGKey(0)
CFG = tf.Config(vocab=7, d_model=8, heads=2, layers=2, mlp=16, max_len=8, causal=False)


def test_training_beats_unigram_and_approaches_entropy_rate():
    t = teacher.make_teacher(KEY, vocab=16, dim=16, order=1)
    seqs = teacher.sample_sequences(jax.random.PRNGKey(1), t, 1024, 32)
    cfg = tf.Config(vocab=16, d_model=32, heads=2, layers=1, mlp=64, max_len=32)
    params, losses, _ = train.train(jax.random.PRNGKey(2), cfg, seqs, train.TrainConfig(steps=250, batch=32),
                                    progress=False)
    counts = np.bincount(np.asarray(seqs).ravel(), minlength=16) / seqs.size
    unigram = -np.sum(counts * np.log(counts))
    rate = float(teacher.stationary_entropy_rate(t))
    final = float(losses[-20:].mean())
    assert final < unigram - 0.5 * (unigram - rate)  # clearly below unigram
    assert final < rate + 0.15  # close to the teacher's entropy rate


def test_encoder_masked_objective_and_penalty_runs():
    seqs = jax.random.randint(KEY, (64, 12), 0, 9)
    cfg = tf.Config(vocab=10, d_model=16, heads=2, layers=2, mlp=32, max_len=16, causal=False)
    tc = train.TrainConfig(steps=5, batch=8, penalty_weight=0.5, penalty_layers=(1, 2))
    params, losses, saved = train.train(KEY, cfg, seqs, tc, penalty=lambda h: -isotropy.isoscore_star(h, 0.1),
                                        progress=False, checkpoints=(3,))
    assert np.all(np.isfinite(losses)) and 3 in saved


def test_checkpoint_round_trip_bit_for_bit(tmp_path):
    cfg = tf.Config(vocab=7, d_model=8, heads=2, layers=2, mlp=16, max_len=8, causal=False)
    params = tf.init(KEY, cfg)
    path = train.save(tmp_path / "m.safetensors", params, cfg, {"tokenizer": {"name": "bins", "bins": 64},
                                                                 "data": "real:nile", "steps": 5, "seed": 3})
    loaded, cfg2, meta = train.load(path)
    assert cfg2 == cfg and meta["config"] == cfg
    assert meta["tokenizer"] == {"name": "bins", "bins": 64} and meta["data"] == "real:nile"
    assert meta["steps"] == 5 and meta["seed"] == 3 and meta["isojax_version"] == isojax.__version__
    assert meta["format"] == train.FORMAT and len(meta["sha256"]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary file stays
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_forecasts_and_nmse():
    cfg = tf.Config(vocab=12, d_model=16, heads=2, layers=1, mlp=32, max_len=16)
    params = tf.init(KEY, cfg)
    ctx = jnp.arange(10) % 12
    samples = train.sample_forecast(KEY, params, ctx, cfg, steps=20, samples=5)  # slides past max_len
    assert samples.shape == (5, 20) and int(samples.max()) < 12
    values = jnp.concatenate([jnp.array([jnp.nan, jnp.nan]), jnp.linspace(-1, 1, 10)])
    y = float(train.conditional_mean_forecast(params, ctx, cfg, values))
    assert -1.0 <= y <= 1.0
    assert train.nmse([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert train.nmse([0.0, 0.0], [1.0, 1.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        train.nmse([1.0], [1.0, 2.0])


def test_digit_forecasts_follow_the_fixed_width_grammar():
    import re

    from isojax.data import tokens

    tok = tokens.DigitTokenizer(precision=1, digits=3)
    cfg = tf.Config(vocab=tok.vocab + 1, d_model=16, heads=2, layers=1, mlp=32, max_len=16)
    params = tf.init(KEY, cfg)  # untrained: left alone it emits any token, MASK and stray separators included
    ids, _ = tok.encode(np.array([1.5, -2.0, 3.25]))
    text = lambda rows: ["".join("0123456789-,M"[t] for t in row) for row in np.asarray(rows).tolist()]
    well_formed = re.compile(r"^(-?\d{3},)*(-?\d{0,3})?$")
    free = text(train.sample_forecast(KEY, params, ids, cfg, steps=40, samples=8))
    assert not all(well_formed.match(t) for t in free)  # the check below can fail
    ruled = text(train.sample_forecast(KEY, params, ids, cfg, steps=40, samples=8, grammar=tok.grammar()))
    assert all(well_formed.match(t) for t in ruled), ruled
    # and so every sampled path decodes to the full horizon
    path = train.forecast_series(KEY, params, cfg, tok, np.array([1.5, -2.0, 3.25, 0.5]), horizon=6, samples=4)
    assert path.shape == (6,) and np.isfinite(path).all()
    with pytest.raises(ValueError, match="grammar must be two"):
        train.sample_forecast(KEY, params, ids, cfg, steps=2, grammar=(np.ones((2, 20), bool), np.zeros((2, 20), int)))


def _saved(tmp_path, name="m.safetensors"):
    return train.save(tmp_path / name, tf.init(KEY, CFG), CFG, {"tokenizer": {"name": "bins"}, "data": "x"})


def _flip_byte(path, offset_from_end):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_checksum_covers_names_dtypes_shapes_and_bytes():
    a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    base = train.checksum(a)
    assert train.checksum({"w": a["w"].copy()}) == base
    assert train.checksum({"v": a["w"]}) != base
    assert train.checksum({"w": a["w"].reshape(3, 2)}) != base
    assert train.checksum({"w": a["w"].astype(np.float64)}) != base
    changed = a["w"].copy()
    changed[1, 2] = np.nextafter(changed[1, 2], np.float32(np.inf))
    assert train.checksum({"w": changed}) != base


def test_load_refuses_a_corrupt_checkpoint_naming_it(tmp_path):
    path = _saved(tmp_path)
    _flip_byte(path, 3)  # inside the last tensor's bytes: the file still parses
    with pytest.raises(ValueError, match=r"m\.safetensors.*fails its SHA-256 checksum"):
        train.load(path)


def test_load_refuses_truncated_missing_and_foreign_files(tmp_path):
    path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"m\.safetensors.*not a readable safetensors file"):
        train.load(path)
    with pytest.raises(ValueError, match=r"nope\.safetensors.*no such file"):
        train.load(tmp_path / "nope.safetensors")
    from safetensors.numpy import save_file
    old = tmp_path / "old.safetensors"  # the format before checkpoints described themselves
    save_file(train._flatten(tf.init(KEY, CFG)), str(old), metadata={"config": json.dumps({"vocab": 7})})
    with pytest.raises(ValueError, match=r"old\.safetensors.*lacks the metadata \['format', 'sha256'\]"):
        train.load(old)


def test_load_refuses_tensors_that_do_not_fit_the_config(tmp_path):
    """A consistent file (checksum right) whose config was swapped for another model's."""
    from safetensors.numpy import save_file
    tensors = train._flatten(tf.init(KEY, CFG))
    other = dict(vars(CFG), d_model=16, mlp=32)
    meta = {"format": train.FORMAT, "config": json.dumps(other), "sha256": train.checksum(tensors)}
    save_file(tensors, str(tmp_path / "swap.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"swap\.safetensors.*do not fit its config"):
        train.load(tmp_path / "swap.safetensors")


def test_save_refuses_reserved_metadata(tmp_path):
    with pytest.raises(ValueError, match=r"meta must not set \['sha256'\]"):
        train.save(tmp_path / "m.safetensors", tf.init(KEY, CFG), CFG, {"sha256": "0"})
    assert not list(tmp_path.iterdir())


def _cached_run(cache, steps=3):
    return lm.train_and_measure(jax.random.PRNGKey(5), "gp:rbf_0.1", "bins", "decoder", steps, seq_len=16,
                                samples=2, points=32, cache=cache)


def test_model_cache_reuses_a_good_entry_and_retrains_a_bad_one(tmp_path, monkeypatch):
    first = _cached_run(tmp_path)
    (model,) = tmp_path.glob("*.safetensors")
    losses = model.with_suffix(".losses.npy")
    meta = train.load(model)[2]
    assert meta["data"] == "gp:rbf_0.1" and meta["steps"] == 3 and meta["tokenizer"]["name"] == "bins"
    calls = []
    real_train = train.train
    monkeypatch.setattr(train, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))

    def rerun():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = _cached_run(tmp_path)
        # the experiments' numbers never change (compared by repr: bit for bit, and NaN equals NaN, e.g. the
        # clustered cosine of an untrained model's embedding layer, whose clusters are all singletons)
        assert repr(again[:2]) == repr(first[:2])
        return [str(w.message) for w in caught if "model cache entry" in str(w.message)]

    assert rerun() == [] and calls == []  # a good entry is reused, silently
    good = meta["sha256"]
    _flip_byte(model, 5)
    (message,) = rerun()
    assert model.name in message and "checksum" in message and len(calls) == 1
    assert train.load(model)[2]["sha256"] == good  # retrained and rewritten: the same tensors, bit for bit
    losses.unlink()
    (message,) = rerun()
    assert "losses file" in message and "missing" in message and len(calls) == 2 and losses.exists()
    np.save(losses, np.load(losses) + 1.0)
    (message,) = rerun()
    assert "does not match" in message and len(calls) == 3
    # an entry written for another run (a file copied or renamed into place): consistent, but not this run's
    params, config, meta = train.load(model)
    train.save(model, params, config, {**{k: meta[k] for k in ("tokenizer", "data", "steps", "seed",
                                                               "losses_sha256")}, "run": "0123456789abcdef"})
    (message,) = rerun()
    assert "written for run '0123456789abcdef'" in message and len(calls) == 4


def test_train_rejects_out_of_vocabulary_ids():
    cfg = tf.Config(vocab=11, d_model=16, heads=4, layers=3, mlp=32, max_len=8)
    with pytest.raises(ValueError, match=r"sequences has ids outside \[0, 11\)"):
        train.train(KEY, cfg, jnp.full((4, 6), 11), train.TrainConfig(steps=1), progress=False)

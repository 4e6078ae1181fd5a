"""Self-describing, checksummed checkpoints (isojax.models.checkpoint)."""

import json

import jax
import numpy as np
import pytest

import isojax
from isojax import transformer as tf
from isojax.models import checkpoint

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only

KEY = jax.random.PRNGKey(0)
CFG = tf.Config(vocab=7, d_model=8, heads=2, layers=2, mlp=16, max_len=8, causal=False)


def test_checkpoint_round_trip_bit_for_bit(tmp_path):
    cfg = tf.Config(vocab=7, d_model=8, heads=2, layers=2, mlp=16, max_len=8, causal=False)
    params = tf.init(KEY, cfg)
    path = checkpoint.save(tmp_path / "m.safetensors", params, cfg, {"tokenizer": {"name": "bins", "bins": 64},
                                                                 "data": "real:nile", "steps": 5, "seed": 3})
    loaded, cfg2, meta = checkpoint.load(path)
    assert cfg2 == cfg and meta["config"] == cfg
    assert meta["tokenizer"] == {"name": "bins", "bins": 64} and meta["data"] == "real:nile"
    assert meta["steps"] == 5 and meta["seed"] == 3 and meta["isojax_version"] == isojax.__version__
    assert meta["format"] == checkpoint.FORMAT and len(meta["sha256"]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary file stays
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _saved(tmp_path, name="m.safetensors"):
    return checkpoint.save(tmp_path / name, tf.init(KEY, CFG), CFG, {"tokenizer": {"name": "bins"}, "data": "x"})


def _flip_byte(path, offset_from_end):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_checksum_covers_names_dtypes_shapes_and_bytes():
    a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    base = checkpoint.checksum(a)
    assert checkpoint.checksum({"w": a["w"].copy()}) == base
    assert checkpoint.checksum({"v": a["w"]}) != base
    assert checkpoint.checksum({"w": a["w"].reshape(3, 2)}) != base
    assert checkpoint.checksum({"w": a["w"].astype(np.float64)}) != base
    changed = a["w"].copy()
    changed[1, 2] = np.nextafter(changed[1, 2], np.float32(np.inf))
    assert checkpoint.checksum({"w": changed}) != base
    # the metadata too: every entry but the checksum itself
    meta = {"config": '{"activation": "gelu"}', "format": checkpoint.FORMAT}
    with_meta = checkpoint.checksum(a, meta)
    assert with_meta != base and checkpoint.checksum(a, {**meta, "sha256": "x"}) == with_meta
    assert checkpoint.checksum(a, {**meta, "config": '{"activation": "relu"}'}) != with_meta
    assert checkpoint.checksum(a, {**meta, "data": "real:nile"}) != with_meta


def test_load_refuses_a_corrupt_checkpoint_naming_it(tmp_path):
    path = _saved(tmp_path)
    _flip_byte(path, 3)  # inside the last tensor's bytes: the file still parses
    with pytest.raises(ValueError, match=r"m\.safetensors.*fails its SHA-256 checksum"):
        checkpoint.load(path)


def test_load_refuses_truncated_missing_and_foreign_files(tmp_path):
    path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"m\.safetensors.*not a readable safetensors file"):
        checkpoint.load(path)
    with pytest.raises(ValueError, match=r"nope\.safetensors.*no such file"):
        checkpoint.load(tmp_path / "nope.safetensors")
    from safetensors.numpy import save_file
    old = tmp_path / "old.safetensors"  # the format before checkpoints described themselves
    save_file(checkpoint._flatten(tf.init(KEY, CFG)), str(old), metadata={"config": json.dumps({"vocab": 7})})
    with pytest.raises(ValueError, match=r"old\.safetensors.*lacks the metadata \['format', 'sha256'\]"):
        checkpoint.load(old)


def test_load_refuses_tensors_that_do_not_fit_the_config(tmp_path):
    """A consistent file (checksum right) whose config was swapped for another model's."""
    from safetensors.numpy import save_file
    tensors = checkpoint._flatten(tf.init(KEY, CFG))
    other = dict(vars(CFG), d_model=16, mlp=32)
    meta = {"format": checkpoint.FORMAT, "config": json.dumps(other)}
    meta["sha256"] = checkpoint.checksum(tensors, meta)
    save_file(tensors, str(tmp_path / "swap.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"swap\.safetensors.*do not fit its config"):
        checkpoint.load(tmp_path / "swap.safetensors")


def test_save_refuses_reserved_metadata(tmp_path):
    with pytest.raises(ValueError, match=r"meta must not set \['sha256'\]"):
        checkpoint.save(tmp_path / "m.safetensors", tf.init(KEY, CFG), CFG, {"sha256": "0"})
    assert not list(tmp_path.iterdir())

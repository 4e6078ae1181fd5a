"""Hostile input to every `isojax` command: each case must exit with its code and a one-line message naming the
problem, with no traceback, and leave the working folder exactly as it was (no output, no temporary file).
Also: corrupted, truncated, swapped and foreign checkpoints, and damaged model-cache entries."""

import json
import warnings

import jax
import numpy as np
import pytest

from isojax import cli
from isojax import transformer as tf
from isojax.data import corpus
from isojax.isotropy import files
from isojax.models import cache, checkpoint, commands
from isojax.runs import measures

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only

KEY = jax.random.PRNGKey(0)


def snapshot(folder):
    """Every path under folder with its bytes (None for folders) and modification time."""
    return {p: (None if p.is_dir() else p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def run(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as done:  # argparse's own usage errors
        code = done.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working folder with a few hostile files in it; the commands' default outputs land here too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("{grid: ")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "a_dir").mkdir()
    rows = "\n".join(f"{np.sin(i / 5):.4f},{i % 7},7,{'x' if i == 3 else i}" for i in range(200))
    (tmp_path / "series.csv").write_text("wave,saw,flat,text\n" + rows + "\n")
    gap = [f"{i % 13 + 0.5},{i}" for i in range(300)]
    gap[3] = ",3"  # an empty cell
    (tmp_path / "gap.csv").write_text("v,w\n" + "\n".join(gap) + "\n")
    (tmp_path / "dir.safetensors").mkdir()
    (tmp_path / "short.csv").write_text("v\n" + "\n".join(str(i) for i in range(10)) + "\n")
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
    np.save(tmp_path / "words.npy", np.array(["a", "b"]))
    (tmp_path / "sentences.txt").write_text("\n\n  \n")
    (tmp_path / "hidden.txt").write_text("1 2 3")
    np.save(tmp_path / "h4.npy", np.zeros((2, 3, 4, 5)))
    np.savez(tmp_path / "ragged.npz", a=np.zeros((4, 3)), b=np.zeros((4, 3, 2)))
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 truncated")
    return tmp_path


CONFIGS = {
    "unknown.json": {"grid": {"family": ["cone"], "n": [50], "d": [4], "knob": [0.0]}, "sed": 1},
    "grid_key.json": {"grid": {"family": ["cone"], "n": [50], "d": [4], "knob": [0.0], "dims": [2]}},
    "no_grid.json": {"seed": 1},
    "string_knob.json": {"grid": {"family": ["cone"], "n": [50], "d": [4], "knob": ["0.5"]}},
    "string_n.json": {"grid": {"family": ["cone"], "n": ["50"], "d": [4], "knob": [0.0]}},
    "huge_d.json": {"grid": {"family": ["cone"], "n": [50], "d": [60000], "knob": [0.0]}},
    "bool_n.json": {"grid": {"family": ["cone"], "n": [True], "d": [4], "knob": [0.0]}},
    "empty.json": {"grid": {"family": ["cone"], "n": [], "d": [4], "knob": [0.0]}},
    "bad_seed.json": {"grid": {"family": ["cone"], "n": [50], "d": [4], "knob": [0.0]}, "seed": -3},
    "bad_out.json": {"grid": {"family": ["cone"], "n": [50], "d": [4], "knob": [0.0]}, "out": 5},
    "banana.json": {"grid": {"family": ["banana"], "n": [50], "d": [4], "knob": [0.0]}},
}

CASES = [
    # (argv, exit code, a piece of the message)
    (["sweep", "--config", "missing.json"], 2, "no such file"),
    (["sweep", "--config", "bad.json"], 2, "not valid JSON"),
    (["sweep", "--config", "list.json"], 2, "must hold a JSON object"),
    (["sweep", "--config", "a_dir"], 2, "--config 'a_dir' is not a file (a folder)"),
    (["sweep", "--config", "unknown.json"], 2, "unknown keys ['sed']"),
    (["sweep", "--config", "grid_key.json"], 2, "grid has unknown keys ['dims']"),
    (["sweep", "--config", "no_grid.json"], 2, "has no 'grid'"),
    (["sweep", "--config", "string_knob.json"], 2, "grid['knob'] must hold finite numbers, got '0.5'"),
    (["sweep", "--config", "string_n.json"], 2, "--n must be an integer in [2, 20000], got '50'"),
    (["sweep", "--config", "huge_d.json"], 2, "--d must be an integer in [2, 8192], got 60000"),
    (["sweep", "--config", "bool_n.json"], 2, "--n must be an integer"),
    (["sweep", "--config", "empty.json"], 2, "grid['n'] must be a non-empty list"),
    (["sweep", "--config", "bad_seed.json"], 2, "--seed must be an integer"),
    (["sweep", "--config", "bad_out.json"], 2, "'out' must be a file path"),
    (["sweep", "--config", "banana.json"], 2, "families ['banana'] unknown"),
    (["sweep", "--d", "60000"], 2, "--d must be an integer in [2, 8192], got 60000"),
    (["sweep", "--n", "1"], 2, "--n must be an integer in [2, 20000], got 1"),
    (["sweep", "--replicates", "0"], 2, "--replicates must be an integer"),
    (["sweep", "--knobs", "nan"], 2, "--knobs must be finite numbers"),
    (["sweep", "--knobs", "half"], 2, "invalid float value: 'half'"),
    (["sweep", "--families", "banana"], 2, "families ['banana'] unknown"),
    (["sweep", "--out", "a_dir"], 2, "must end in .csv"),
    (["sweep", "--out", "a_file/s.csv"], 2, "is a file, not a folder"),
    (["train", "--steps", "0"], 2, "--steps must be an integer in [1, 10000000], got 0"),
    (["train", "--seq-len", "1"], 2, "--seq-len must be an integer in [2, 8192], got 1"),
    (["train", "--d-model", "0"], 2, "--d-model must be an integer"),
    (["train", "--heads", "0"], 2, "--heads must be an integer"),
    (["train", "--layers", "-1"], 2, "--layers must be an integer"),
    (["train", "--seed", "-1"], 2, "--seed must be an integer"),
    (["train", "--d-model", "10", "--heads", "4"], 2, "d_model=10 must be divisible by config.heads=4"),
    (["train", "--steps", "ten"], 2, "invalid int value: 'ten'"),
    (["train", "--tokenizer", "words"], 2, "invalid choice: 'words'"),
    (["train", "--data", "gaussian"], 2, "source must be 'teacher'"),
    (["train", "--data", "real:electricity"], 2, "name must be one of"),
    (["train", "--data", "gp:nope"], 2, "kernel must be one of"),
    (["train", "--data", "csv:missing.csv"], 2, "'missing.csv': no such file"),
    (["train", "--data", "csv:series.csv:temp"], 2, "has no column 'temp'"),
    (["train", "--data", "csv:series.csv:text"], 2, "column 'text' of 'series.csv' has a non-numeric cell 'x' in row"),
    (["train", "--data", "csv:series.csv"], 2, "column 'text' of 'series.csv' has a non-numeric cell 'x' in row 4"),
    (["train", "--data", "csv:series.csv:flat"], 2, "series.csv:flat is constant"),
    (["train", "--data", "csv:gap.csv"], 2, "gap.csv:v has 1 non-finite values"),
    (["train", "--data", "csv:short.csv"], 2, "short.csv:v is too short"),
    (["train", "--data", "csv:bad.json"], 2, "'bad.json' has a header but no rows"),
    (["train", "--data", "csv:a_dir"], 2, "'a_dir' is not a file"),
    (["train", "--data", "npy:cube.npy"], 2, "must hold a numeric array [n] or [series, n]"),
    (["train", "--data", "npy:words.npy"], 2, "'words.npy' holds text (<U1); only real numbers"),
    (["train", "--data", "npy:bad.json"], 2, "'bad.json' is not a readable .npy array"),
    (["train", "--out", "a_dir"], 2, "must end in .safetensors"),
    (["train", "--out", "dir.safetensors"], 2, "'dir.safetensors' is a folder"),
    (["train", "--out", "a_file/deeper/m.safetensors"], 2, "is a file, not a folder"),
    (["embed", "--model", "missing.safetensors"], 2, "checkpoint 'missing.safetensors': no such file"),
    (["embed", "--model", "a_dir"], 2, "is not a file"),
    (["embed", "--model", "bad.json"], 2, "not a readable safetensors file"),
    (["embed", "--model", "x", "--max-sequences", "0"], 2, "--max-sequences must be an integer"),
    (["embed", "--model", "x", "--out", "a_dir"], 2, "must end in .npz"),
    (["embed", "--model", "x", "--out", "h"], 2, "must end in .npz"),
    (["embed", "--model", "minilm", "--data", "gp:rbf_1"], 2, "--model minilm embeds serialized real series"),
    (["embed", "--model", "minilm", "--text", "missing.txt"], 2, "--text 'missing.txt': no such file"),
    (["embed", "--model", "minilm", "--text", "sentences.txt"], 2, "holds no sentence"),
    (["embed", "--model", "minilm", "--text", "sentences.txt", "--data", "real:nile"], 2, "not both"),
    (["embed", "--model", "minilm", "--pooling", "mean"], 2, "--pooling applies to --text and to a Chronos"),
    (["embed", "--model", "minilm", "--text", "s.txt", "--pooling", "max"], 2, "invalid choice: 'max'"),
    (["embed", "--model", "minilm", "--text", "s.txt", "--max-len", "1"], 2, "--max-len must be an integer"),
    (["measure", "missing.npy"], 2, "'missing.npy': no such file"),
    (["measure", "hidden.txt"], 2, "must be .npy, .npz or .safetensors"),
    (["measure", "h4.npy"], 2, "must be [n, d] or [layers, n, d], got shape (2, 3, 4, 5)"),
    (["measure", "ragged.npz"], 2, "every per-layer array must be [n, d]"),
    (["measure", "cut.npz"], 2, "could not be read (truncated or corrupt?)"),
    (["measure", "cube.npy", "--measures", "isoscore", "roundness"], 2, "unknown measures ['roundness']"),
    (["measure", "cube.npy", "--max-points", "2"], 2, "--max-points must be an integer"),
    (["measure", "cube.npy", "--out", "a_dir"], 2, "must end in .csv"),
    (["measure", "cube.npy", "--out", "a_file/m.csv"], 2, "is a file, not a folder"),
    (["check", "--instances", "0"], 2, "--instances must be an integer in [1, 1000000], got 0"),
    (["check", "--seed", "-5"], 2, "--seed must be an integer"),
    (["reproduce", "--only", "nope"], 2, "experiment must be one of"),
    (["reproduce", "--jobs", "0"], 2, "--jobs must be an integer in"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("argv, code, message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_user_error_is_one_line_exit_code_and_writes_nothing(work, capsys, argv, code, message):
    for name, spec in CONFIGS.items():
        (work / name).write_text(json.dumps(spec))
    before = snapshot(work)
    got, out, err = run(argv, capsys)
    assert got == code, (out, err)
    assert message in err, err
    assert err.count("\n") == 1 and err.startswith("isojax") and "Traceback" not in err, err
    assert snapshot(work) == before


def _checkpoint(folder, name="m.safetensors", tokenizer="bins"):
    tok = corpus.make_tokenizer(tokenizer)
    cfg = tf.Config(vocab=tok.vocab + 1, d_model=8, heads=2, layers=1, mlp=16, max_len=16)
    meta = {"tokenizer": corpus.tokenizer_spec(tok), "data": "real:nile", "steps": 1, "seed": 0}
    return checkpoint.save(folder / name, tf.init(KEY, cfg), cfg, meta)


def _embed(work, capsys, model, *extra):
    before = snapshot(work)
    code, _, err = run(["embed", "--model", str(model), "--data", "real:nile", "--out", "h.npz", *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert snapshot(work) == before and not (work / "h.npz").exists()
    return err


def test_embed_refuses_damaged_swapped_and_mismatched_checkpoints(work, capsys):
    path = _checkpoint(work)
    assert "'digits' does not match checkpoint" in _embed(work, capsys, path, "--tokenizer", "digits")
    damaged = work / "damaged.safetensors"
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x55
    damaged.write_bytes(bytes(data))
    assert "damaged.safetensors' fails its SHA-256 checksum" in _embed(work, capsys, damaged)
    truncated = work / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: len(data) // 2])
    assert "truncated.safetensors' is not a readable safetensors file" in _embed(work, capsys, truncated)
    empty = work / "empty.safetensors"
    empty.write_bytes(b"")
    assert "empty.safetensors' is not a readable" in _embed(work, capsys, empty)
    # swapped: one model's tensors under another's description, checksum recomputed so only the fit fails
    from safetensors.numpy import save_file
    other = _checkpoint(work / "other", tokenizer="digits")
    params, cfg, meta = checkpoint.load(other)
    tensors = checkpoint._flatten(checkpoint.load(path)[0])
    swapped = work / "swapped.safetensors"
    forged = {"format": checkpoint.FORMAT, "config": json.dumps(vars(cfg))}
    save_file(tensors, str(swapped), metadata={**forged, "sha256": checkpoint.checksum(tensors, forged)})
    assert "swapped.safetensors' holds tensors that do not fit its config" in _embed(work, capsys, swapped)
    # an old checkpoint, from before checkpoints described themselves
    old = work / "old.safetensors"
    save_file(tensors, str(old), metadata={"config": json.dumps(vars(checkpoint.load(path)[1]))})
    assert "old.safetensors' lacks the metadata" in _embed(work, capsys, old)


def test_interrupt_exits_130_with_one_line(work, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("sweep 'isotropy_measures' interrupted; 'x.csv' holds the finished cells")

    monkeypatch.setattr(measures, "measures_sweep", interrupted)
    code, _, err = run(["sweep", "--out", "x.csv"], capsys)
    assert code == 130 and err == ("isojax sweep: interrupted: sweep 'isotropy_measures' interrupted; 'x.csv' holds "
                                   "the finished cells\n")
    monkeypatch.setattr(commands, "train_model", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, _, err = run(["train"], capsys)
    assert code == 130 and err == "isojax train: interrupted\n"


def test_a_library_value_error_is_one_line(work, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("x must have rank 2 [n, d],\n  got shape (3,)")

    monkeypatch.setattr(files, "measure_file", broken)
    code, _, err = run(["measure", "cube.npy"], capsys)
    assert code == 2 and err == "isojax measure: error: x must have rank 2 [n, d], got shape (3,)\n"


def _cache_entry(folder, run="abc"):
    """A model-cache entry as train_and_measure writes one, without training: a checkpoint and its losses."""
    folder.mkdir(exist_ok=True)
    path = folder / f"{run}.safetensors"
    losses = np.linspace(2.0, 1.0, 5)
    np.save(path.with_suffix(".losses.npy"), losses)
    tok = corpus.make_tokenizer("bins")
    cfg = tf.Config(vocab=tok.vocab + 1, d_model=8, heads=2, layers=1, mlp=16, max_len=16)
    checkpoint.save(path, tf.init(KEY, cfg), cfg, {"run": run, "losses_sha256": cache._sha256(losses)})
    return path


def _unusable(path, run="abc"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache._load_cached(path, run) is None
    (warning,) = caught
    assert str(path) in str(warning.message) and "retraining" in str(warning.message)
    return str(warning.message)


def test_model_cache_names_and_skips_every_damaged_entry(tmp_path):
    path = _cache_entry(tmp_path / "c")
    params, losses = cache._load_cached(path, "abc")
    assert losses.shape == (5,)
    assert cache._load_cached(tmp_path / "c" / "none.safetensors", "none") is None  # no entry: no warning
    assert "written for run 'abc', not 'xyz'" in _unusable(path, "xyz")
    path.with_suffix(".losses.npy").unlink()
    assert "losses file" in _unusable(path) and "is missing" in _unusable(path)
    path = _cache_entry(tmp_path / "c")
    np.save(path.with_suffix(".losses.npy"), np.linspace(2.0, 1.5, 5))
    assert "does not match the checkpoint's checksum" in _unusable(path)
    path = _cache_entry(tmp_path / "c")
    path.with_suffix(".losses.npy").write_bytes(b"\x93NUMPY garbage")
    assert "cannot be read" in _unusable(path)
    path = _cache_entry(tmp_path / "c")
    path.write_bytes(path.read_bytes()[:-40])
    assert "not a readable safetensors file" in _unusable(path)

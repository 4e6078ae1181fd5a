"""Files that cannot hurt (the second hostile round): each case runs an `isojax` command (or the library call
behind it) on a hostile file and asserts the exit code, the one line it prints, and what is on disk afterwards.

- Bounded reads: declared sizes (a zip bomb, a huge .npy header or shape, absurd model sizes in a checkpoint or
  config.json, a safetensors header with offsets outside the file) are refused before anything is allocated;
  FIFOs and devices are refused at once; text inputs have a size limit.
- Checksums over everything a file says: a checkpoint's header byte, a sweep table's value, nan or swapped rows.
- Never touching what the user did not name: derived outputs, temporary files, a full disk, permissions.
- One line, exit 2, for what used to be a traceback; non-numeric and complex input refused.
Signals (SIGTERM, SIGHUP) run the command in a subprocess; everything else runs in this process, on tiny inputs.
"""

import json
import os
import re
import resource
import signal
import stat
import time
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

from isojax import cli, inputs
from isojax import transformer as tf
from isojax.data import corpus
from isojax.data import files as data_files
from isojax.forecast import metrics
from isojax.models import checkpoint
from isojax.runs import outputs, results, signals, sweep

KEY = jax.random.PRNGKey(0)
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- helpers

def snapshot(folder):
    """Every path under folder with its bytes (None for folders and special files) and mode."""
    out = {}
    for p in sorted(folder.rglob("*")):
        regular = p.is_file() and not p.is_symlink()
        out[p] = (p.read_bytes() if regular else None, p.lstat().st_mode)
    return out


def run(argv, capsys):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as done:  # argparse's own usage errors
        code = done.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    return err.count("\n") == 1 and err.startswith("isojax") and "Traceback" not in err


def npy_bytes(shape, dtype="<f4", data=b"", fortran=False, header_pad=0):
    """A .npy stream whose header declares shape/dtype, followed by `data` (possibly far less than declared)."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": fortran, "shape": tuple(shape)})
    head = buf.getvalue()
    if header_pad:  # a header that claims to be longer than numpy allows
        head = head[:8] + (len(head) - 10 + header_pad).to_bytes(2, "little") + head[10:] + b" " * header_pad
    return head + data


def write_zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)


def write_safetensors(path, header, data=b"", metadata=None):
    """A safetensors file from a raw header dict (no checks: it may lie) and raw data bytes."""
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def read_safetensors_header(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def tiny_checkpoint(folder, name="m.safetensors", tokenizer="bins"):
    tok = corpus.make_tokenizer(tokenizer)
    cfg = tf.Config(vocab=tok.vocab + 1, d_model=8, heads=2, layers=1, mlp=16, max_len=16)
    meta = {"tokenizer": corpus.tokenizer_spec(tok), "data": "real:nile", "steps": 1, "seed": 0}
    return checkpoint.save(folder / name, tf.init(KEY, cfg), cfg, meta)


def edit_metadata(path, out, change, recompute=False):
    """A copy of a checkpoint with metadata entries changed (`change(meta) -> meta`); the checksum recomputed
    if `recompute` (a consistent file that lies), else left as it was (one edited header field)."""
    header, data = read_safetensors_header(path)
    meta = change(dict(header.pop("__metadata__")))
    if recompute:
        from safetensors import safe_open
        with safe_open(str(path), framework="numpy") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta["sha256"] = checkpoint.checksum(tensors, meta)
    write_safetensors(out, header, data, meta)
    return out


def swap_text(path, out, old, new):
    """A copy of a safetensors file with one string of its header replaced (the header's length prefix
    updated, the tensors' bytes unchanged): one edited header field, the checksum left as it was."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    head = raw[8:8 + n]
    assert head.count(old) == 1, (old, head.count(old))
    head = head.replace(old, new)
    out.write_bytes(len(head).to_bytes(8, "little") + head + raw[8 + n:])
    return out


def config_json(**change):
    cfg = {"model_type": "gpt2", "vocab_size": 11, "n_embd": 8, "n_head": 2, "n_layer": 1, "n_positions": 16,
           **change}
    return json.dumps(cfg)


def hf_folder(work, name, config=None, tokenizer="{}", weights=None):
    folder = work / name
    folder.mkdir()
    (folder / "config.json").write_text(config or config_json())
    if weights is None:
        from safetensors.numpy import save_file
        save_file({"wte.weight": np.zeros((11, 8), np.float32)}, str(folder / "model.safetensors"))
    else:
        weights(folder / "model.safetensors")
    if tokenizer is not None:
        (folder / "tokenizer.json").write_text(tokenizer)
    return folder


# ----------------------------------------------------------------------------------------- the cases

def _setup_common(work):
    rng = np.random.default_rng(0)
    np.save(work / "h.npy", rng.normal(size=(2, 30, 4)).astype(np.float32))
    (work / "s.txt").write_text("one sentence\nanother one\n")
    os.mkfifo(work / "fifo.npy")
    os.mkfifo(work / "fifo.txt")
    os.mkfifo(work / "fifo.json")
    os.mkfifo(work / "fifo.csv")
    os.symlink("/dev/zero", work / "zero.npy")
    (work / "folder.npy").mkdir()
    # .npy/.npz whose headers declare what is not there
    bomb = npy_bytes((700_000, 768), data=b"\0" * 4096)
    write_zip(work / "bomb.npz", {"hidden.npy": bomb})
    (work / "bomb.npy").write_bytes(bomb)
    write_zip(work / "layers.npz", {"hidden.npy": npy_bytes((10**6, 2, 2), data=b"\0" * 64)})
    (work / "short.npy").write_bytes(npy_bytes((20, 4), data=b"\0" * 100))
    (work / "huge_header.npy").write_bytes(npy_bytes((20, 4), header_pad=20_000))
    (work / "negative.npy").write_bytes(npy_bytes((20, 4)).replace(b"(20, 4)", b"(-2, 4)"))
    np.save(work / "complex.npy", rng.normal(size=(20, 4)) + 1j)
    np.save(work / "bool.npy", rng.normal(size=(20, 4)) > 0)
    np.save(work / "words.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(work / "objects.npy", np.array([[1, None], [2, 3]], dtype=object), allow_pickle=True)
    np.save(work / "record.npy", np.zeros((5, 2), dtype=[("a", "<f4"), ("b", "<f4")]))
    np.save(work / "empty.npy", np.zeros((0, 4), np.float32))
    write_zip(work / "raw.npz", {"raw": b"just some bytes"})
    write_zip(work / "many.npz", {f"l{i}.npy": npy_bytes((3, 2), data=b"\0" * 24) for i in range(6)})
    write_zip(work / "cut_member.npz", {"hidden.npy": npy_bytes((20, 4), data=b"\0" * 40)})
    np.savez(work / "complex.npz", hidden=rng.normal(size=(20, 4)) + 2j)
    # safetensors whose headers lie
    (work / "length.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")
    write_safetensors(work / "offsets.safetensors",
                      {"h": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 10**9]}}, b"\0" * 32)
    write_safetensors(work / "span.safetensors", {"h": {"dtype": "F32", "shape": [400, 2], "data_offsets": [0, 32]}},
                      b"\0" * 32)
    write_safetensors(work / "overlap.safetensors",
                      {"a": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]},
                       "b": {"dtype": "F32", "shape": [4, 2], "data_offsets": [16, 48]}}, b"\0" * 48)
    write_safetensors(work / "bool.safetensors", {"h": {"dtype": "BOOL", "shape": [4, 2], "data_offsets": [0, 8]}},
                      b"\1" * 8)
    (work / "notjson.safetensors").write_bytes((6).to_bytes(8, "little") + b"{grid:")
    # your own series
    (work / "header_only.csv").write_text("value\n")
    rows = [f"{i},{np.sin(i / 7):.4f}" for i in range(300)]
    rows[150] = "150,oops"
    (work / "text_cell.csv").write_text("id,value\n" + "\n".join(rows) + "\n")
    (work / "complex.csv").write_text("v\n" + "\n".join(f"{i}+1j" for i in range(300)) + "\n")
    (work / "flags.csv").write_text("f\n" + "\n".join(str(i % 2 == 0) for i in range(300)) + "\n")
    (work / "series_huge.npy").write_bytes(npy_bytes((10**7, 10**4), dtype="<f8", data=b"\0" * 64))
    (work / "series_complex.npy").write_bytes(npy_bytes((2, 300), dtype="<c16", data=b"\0" * 9600))
    (work / "series_header.npy").write_bytes(npy_bytes((300,), header_pad=20_000))
    (work / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (work / "big.txt").write_text("a sentence\n" * 20_000)
    (work / "config.json").write_text(json.dumps({"grid": {"family": ["cone"], "n": [50], "d": [4], "knob": [0.0]}}))
    # Hugging Face folders
    hf_folder(work, "hf_notjson", config="{model_type: gpt2")
    hf_folder(work, "hf_vocab", config=config_json(vocab_size=10**12))
    hf_folder(work, "hf_layers", config=config_json(n_layer=10**6))
    gpt2 = hf_folder(work, "hf_tokenizer", tokenizer="this is not JSON")  # a complete model, its tokenizer broken
    for name in ("config.json", "model.safetensors"):
        (gpt2 / name).write_bytes((ROOT / "tests" / "golden" / "gpt2" / name).read_bytes())
    hf_folder(work, "hf_offsets", weights=lambda p: write_safetensors(
        p, {"wte.weight": {"dtype": "F32", "shape": [11, 8], "data_offsets": [0, 10**6]}}, b"\0" * 352))
    hf_folder(work, "hf_bool", weights=lambda p: write_safetensors(
        p, {"wte.weight": {"dtype": "BOOL", "shape": [11, 8], "data_offsets": [0, 88]}}, b"\0" * 88))
    fifo_cfg = hf_folder(work, "hf_fifo")
    (fifo_cfg / "config.json").unlink()
    os.mkfifo(fifo_cfg / "config.json")
    # checkpoints whose headers were edited, or that lie consistently
    ckpt = tiny_checkpoint(work)
    swap_text(ckpt, work / "relu.safetensors", b'\\"activation\\": \\"gelu\\"', b'\\"activation\\": \\"relu\\"')
    swap_text(ckpt, work / "causal.safetensors", b'\\"causal\\": true', b'\\"causal\\": false')
    swap_text(ckpt, work / "range.safetensors", b'\\"low\\": -5.0', b'\\"low\\": -6.0')
    swap_text(ckpt, work / "data.safetensors", b'real:nile', b'real:co2')
    edit_metadata(ckpt, work / "v1.safetensors", lambda m: {**m, "format": "isojax-checkpoint/1"}, recompute=True)
    for name, change in (("ck_layers", {"layers": 10**6}), ("ck_vocab", {"vocab": 10**12}),
                         ("ck_heads", {"heads": 10**13, "d_model": 10**13})):
        edit_metadata(ckpt, work / f"{name}.safetensors",
                      lambda m, change=change: {**m, "config": json.dumps({**json.loads(m["config"]), **change})},
                      recompute=True)
    edit_metadata(ckpt, work / "tok_bins.safetensors", lambda m: {**m, "tokenizer": json.dumps(
        {"name": "bins", "bins": 10**12, "low": -5.0, "high": 5.0})}, recompute=True)
    edit_metadata(ckpt, work / "tok_digits.safetensors", lambda m: {**m, "tokenizer": json.dumps(
        {"name": "digits", "precision": 1, "digits": 10**6, "percentile": 90.0})}, recompute=True)
    edit_metadata(ckpt, work / "tok_vocab.safetensors", lambda m: {**m, "tokenizer": json.dumps(
        {"name": "bins", "bins": 200, "low": -5.0, "high": 5.0})}, recompute=True)
    header, data = read_safetensors_header(ckpt)
    meta = header.pop("__metadata__")
    name = sorted(header)[0]
    int8 = {**header, name: {**header[name], "dtype": "I8",
                             "shape": [header[name]["data_offsets"][1] - header[name]["data_offsets"][0]]}}
    from safetensors import safe_open
    with safe_open(str(ckpt), framework="numpy") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors[name] = np.frombuffer(tensors[name].tobytes(), np.int8)
    meta_int8 = {k: v for k, v in meta.items() if k != "sha256"}
    write_safetensors(work / "int8.safetensors", int8, data,
                      {**meta_int8, "sha256": checkpoint.checksum(tensors, meta_int8)})
    write_safetensors(work / "ck_offsets.safetensors", {k: {**v, "data_offsets": [v["data_offsets"][0], 10**9]}
                                                        for k, v in header.items()}, data, meta)
    os.mkfifo(work / "fifo.safetensors")


CASES = [
    # (id, argv, exit code, a piece of the one line)
    # --- bounded reads: what a file declares is checked before anything is read or allocated
    ("bomb npz", ["measure", "bomb.npz"], 2, "layer '0' [700000, 768] of float32: its size in memory is 2,050.8 MiB, "
                                             "more than the limit layer_mb=128 MiB"),
    ("bomb npy", ["measure", "bomb.npy"], 2, "more than the limit layer_mb=128 MiB"),
    ("1e6 layers npz", ["measure", "layers.npz"], 2, "the number of layers is 1,000,000, more than the limit layers"),
    ("raised limit: truncated", ["measure", "bomb.npy", "--limit", "layer_mb=4096"], 2, "'bomb.npy' is truncated"),
    ("short npy", ["measure", "short.npy"], 2, "'short.npy' is truncated: its header declares shape (20, 4)"),
    ("short npz member", ["measure", "cut_member.npz"], 2, "array 'hidden' is truncated"),
    ("huge npy header", ["measure", "huge_header.npy"], 2, "'huge_header.npy' is not a readable .npy array"),
    ("negative shape", ["measure", "negative.npy"], 2, "'negative.npy' declares an invalid shape (-2, 4)"),
    ("complex npy", ["measure", "complex.npy"], 2, "holds complex values (complex128)"),
    ("complex npz", ["measure", "complex.npz"], 2, "array 'hidden' holds complex values"),
    ("bool npy", ["measure", "bool.npy"], 2, "holds bool values"),
    ("text npy", ["measure", "words.npy"], 2, "holds text (<U1)"),
    ("pickled npy", ["measure", "objects.npy"], 2, "holds Python objects (object)"),
    ("structured npy", ["measure", "record.npy"], 2, "holds structured values"),
    ("empty layer", ["measure", "empty.npy"], 2, "hidden['0'] is empty"),
    ("raw npz member", ["measure", "raw.npz"], 2, "member 'raw' is not an .npy array (raw bytes?)"),
    ("npz past the layers bound", ["measure", "many.npz", "--limit", "layers=5"], 2,
     "the number of arrays is 6, more than the limit layers=5"),
    ("layer bound lowered", ["measure", "h.npy", "--limit", "layer_mb=0.0001"], 2, "more than the limit layer_mb"),
    ("limit unknown", ["measure", "h.npy", "--limit", "memory=5"], 2, "--limit takes NAME=VALUE with NAME one of"),
    ("limit negative", ["measure", "h.npy", "--limit", "layer_mb=-1"], 2, "--limit layer_mb must be a positive"),
    ("limit nan", ["measure", "h.npy", "--limit", "layer_mb=nan"], 2, "--limit layer_mb must be a positive"),
    ("safetensors length", ["measure", "length.safetensors"], 2, "its header declares 1,000,000,000,000 bytes"),
    ("safetensors offsets", ["measure", "offsets.safetensors"], 2, "has data offsets [0, 1000000000] outside"),
    ("safetensors span", ["measure", "span.safetensors"], 2, "needs 3,200 bytes, its offsets span 32"),
    ("safetensors overlap", ["measure", "overlap.safetensors"], 2, "tensors 'a' and 'b' overlap"),
    ("safetensors bool", ["measure", "bool.safetensors"], 2, "tensor 'h' has dtype BOOL"),
    ("safetensors not json", ["measure", "notjson.safetensors"], 2, "is not a readable safetensors file"),
    # --- only regular files, at once
    ("fifo measured", ["measure", "fifo.npy"], 2, "file 'fifo.npy' is not a file (a FIFO)"),
    ("dev zero measured", ["measure", "zero.npy"], 2, "file 'zero.npy' is not a file (a character device)"),
    ("folder measured", ["measure", "folder.npy"], 2, "file 'folder.npy' is not a file (a folder)"),
    ("dev zero text", ["embed", "--model", "minilm", "--text", "/dev/zero"], 2,
     "--text '/dev/zero' is not a file (a character device)"),
    ("fifo text", ["embed", "--model", "minilm", "--text", "fifo.txt"], 2, "--text 'fifo.txt' is not a file (a FIFO)"),
    ("text past the bound", ["embed", "--model", "minilm", "--text", "big.txt", "--limit", "text_mb=0.1"], 2,
     "--text 'big.txt': the file is 0.2 MiB, more than the limit text_mb=0.1 MiB"),
    ("text not utf-8", ["embed", "--model", "minilm", "--text", "latin1.txt"], 2, "--text 'latin1.txt' is not UTF-8"),
    ("fifo config", ["sweep", "--config", "fifo.json"], 2, "--config 'fifo.json' is not a file (a FIFO)"),
    ("config past the bound", ["sweep", "--config", "config.json", "--limit", "text_mb=0.00001"], 2,
     "--config 'config.json': the file is 0.0 MiB, more than the limit text_mb"),
    ("fifo csv", ["train", "--data", "csv:fifo.csv"], 2, "'fifo.csv' is not a file (a FIFO)"),
    ("dev zero npy data", ["train", "--data", "npy:/dev/zero"], 2, "'/dev/zero' is not a file (a character device)"),
    ("csv past the bound", ["train", "--data", "csv:text_cell.csv", "--limit", "data_mb=0.001"], 2,
     "the file is 0.0 MiB, more than the limit data_mb"),
    ("fifo checkpoint", ["embed", "--model", "fifo.safetensors"], 2,
     "checkpoint 'fifo.safetensors' is not a file (a FIFO)"),
    ("fifo config.json", ["embed", "--model", "hf_fifo", "--text", "s.txt"], 2, "config.json' is not a file (a FIFO)"),
    # --- your own series: one line, exit 2
    ("npy series huge shape", ["train", "--data", "npy:series_huge.npy"], 2,
     "its values as float64 is 762,939.5 MiB, more than the limit data_mb"),
    ("npy series complex", ["train", "--data", "npy:series_complex.npy"], 2, "holds complex values (complex128)"),
    ("npy series huge header", ["train", "--data", "npy:series_header.npy"], 2, "is not a readable .npy array"),
    ("csv header only", ["train", "--data", "csv:header_only.csv"], 2, "'header_only.csv' has a header but no rows"),
    ("csv one text cell", ["train", "--data", "csv:text_cell.csv"], 2,
     "column 'value' of 'text_cell.csv' has a non-numeric cell 'oops' in row 151 (after the header)"),
    ("csv one text cell named", ["train", "--data", "csv:text_cell.csv:value"], 2,
     "has a non-numeric cell 'oops' in row 151"),
    ("csv complex", ["train", "--data", "csv:complex.csv"], 2, "'complex.csv' has no numeric column"),
    ("csv complex named", ["train", "--data", "csv:complex.csv:v"], 2, "column 'v' of 'complex.csv' is not numeric"),
    ("csv bool named", ["train", "--data", "csv:flags.csv:f"], 2, "column 'f' of 'flags.csv' is not numeric"),
    # --- Hugging Face folders
    ("config.json not json", ["embed", "--model", "hf_notjson", "--text", "s.txt"], 2,
     "config.json' is not valid JSON"),
    ("config.json vocab 1e12", ["embed", "--model", "hf_vocab", "--text", "s.txt"], 2,
     "parameters (vocab 1,000,000,000,000, d_model 8, layers 1), more than the limit params=2,000,000,000"),
    ("config.json layers 1e6", ["embed", "--model", "hf_layers", "--text", "s.txt"], 2,
     "the number of layers is 1,000,000, more than the limit layers=1,024"),
    ("tokenizer.json not json", ["embed", "--model", "hf_tokenizer", "--text", "s.txt"], 2,
     "tokenizer.json' is not a valid tokenizer.json"),
    ("weights offsets", ["embed", "--model", "hf_offsets", "--text", "s.txt"], 2,
     "model.safetensors' is not a readable safetensors file (truncated or corrupt?): tensor 'wte.weight' has data "
     "offsets"),
    ("weights bool", ["embed", "--model", "hf_bool", "--text", "s.txt"], 2, "tensor 'wte.weight' has dtype BOOL"),
    # --- checkpoints: the checksum covers the header, sizes are checked before anything is built
    ("gelu to relu", ["embed", "--model", "relu.safetensors"], 2, "'relu.safetensors' fails its SHA-256 checksum"),
    ("causal flipped", ["embed", "--model", "causal.safetensors"], 2, "'causal.safetensors' fails its SHA-256"),
    ("tokenizer range", ["embed", "--model", "range.safetensors"], 2, "'range.safetensors' fails its SHA-256"),
    ("data description", ["embed", "--model", "data.safetensors"], 2, "'data.safetensors' fails its SHA-256"),
    ("format 1", ["embed", "--model", "v1.safetensors"], 2, "has format 'isojax-checkpoint/1', not"),
    ("int8 tensor", ["embed", "--model", "int8.safetensors"], 2, "has dtype I8; this file may hold only F32, F64"),
    ("checkpoint offsets", ["embed", "--model", "ck_offsets.safetensors"], 2,
     "'ck_offsets.safetensors' is not a readable safetensors file (truncated or corrupt?)"),
    ("checkpoint layers 1e6", ["embed", "--model", "ck_layers.safetensors"], 2,
     "checkpoint 'ck_layers.safetensors': the number of layers is 1,000,000, more than the limit layers=1,024"),
    ("checkpoint vocab 1e12", ["embed", "--model", "ck_vocab.safetensors"], 2,
     "parameters (vocab 1,000,000,000,000, d_model 8, layers 1), more than the limit params"),
    ("checkpoint widths 1e13", ["embed", "--model", "ck_heads.safetensors"], 2,
     "config.d_model = 10,000,000,000,000 describes a model larger than the limit params"),
    ("checkpoint params raised", ["embed", "--model", "ck_vocab.safetensors", "--limit", "params=1e13"], 2,
     "holds tensors that do not fit its config"),
    ("tokenizer bins 1e12", ["embed", "--model", "tok_bins.safetensors"], 2, "need 2 <= bins <= 2^20"),
    ("tokenizer digits 1e6", ["embed", "--model", "tok_digits.safetensors"], 2, "precision <= digits <= 18"),
    ("tokenizer against vocab", ["embed", "--model", "tok_vocab.safetensors"], 2,
     "its tokenizer has 202 tokens (+1 MASK), its embedding 67 rows"),
]


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory):
    """The hostile files, made once for every case (each case checks that it changed nothing)."""
    folder = tmp_path_factory.mktemp("hostile")
    _setup_common(folder)
    return folder


@pytest.fixture
def work(hostile_folder, monkeypatch):
    monkeypatch.chdir(hostile_folder)
    return hostile_folder


@pytest.mark.float32_only  # refusals before any compute: no dtype-specific path
@pytest.mark.parametrize("argv, code, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_file_is_one_line_and_touches_nothing(work, capsys, argv, code, message):
    before = snapshot(work)
    start = time.perf_counter()
    got, out, err = run(argv, capsys)
    assert got == code, (out, err)
    assert message in err, err
    assert one_line(err), err
    assert snapshot(work) == before  # no output, no temporary file, nothing changed
    assert time.perf_counter() - start < 60  # refused before any compute (no hang, no allocation)


def test_every_case_shape_is_kept():
    """The round's cases stay here: a case removed is a refusal no longer tested."""
    assert len(CASES) >= 70 and len({c[0] for c in CASES}) == len(CASES)


# ----------------------------------------------------------------------------------------- defined results

def test_npy_layouts_that_are_legal_are_read_exactly(tmp_path):
    """Fortran order, big-endian, float16, integers and bfloat16 are read as the values they hold."""
    from isojax.isotropy import files
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 20, 4))
    np.save(tmp_path / "f.npy", np.asfortranarray(x[0]))
    np.save(tmp_path / "f3.npy", np.asfortranarray(x))
    np.save(tmp_path / "be.npy", x.astype(">f8"))
    np.save(tmp_path / "i.npy", (x * 100).astype(np.int16))
    np.savez_compressed(tmp_path / "z.npz", hidden=x.astype(np.float16))
    np.testing.assert_array_equal(files.read_hidden(tmp_path / "f.npy")["0"], x[0])
    np.testing.assert_array_equal(np.stack(list(files.read_hidden(tmp_path / "f3.npy").values())), x)
    np.testing.assert_array_equal(np.stack(list(files.read_hidden(tmp_path / "be.npy").values())), x)
    np.testing.assert_array_equal(np.stack(list(files.read_hidden(tmp_path / "i.npy").values())),
                                  (x * 100).astype(np.int16))
    np.testing.assert_array_equal(np.stack(list(files.read_hidden(tmp_path / "z.npz").values())),
                                  x.astype(np.float16))
    bf16 = (x[0].astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)  # truncated to bfloat16
    write_safetensors(tmp_path / "b.safetensors", {"h": {"dtype": "BF16", "shape": [20, 4],
                                                         "data_offsets": [0, 160]}}, bf16.tobytes())
    got = files.read_hidden(tmp_path / "b.safetensors")["0"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, (bf16.astype(np.uint32) << 16).view(np.float32))


def test_measure_reads_one_layer_at_a_time(tmp_path, monkeypatch):
    """The layers are read lazily, one after another: never two in memory at once from the reader."""
    from isojax.isotropy import files
    x = np.random.default_rng(0).normal(size=(3, 30, 4)).astype(np.float32)
    np.save(tmp_path / "h.npy", x)
    np.savez_compressed(tmp_path / "h.npz", hidden=x)
    for name in ("h.npy", "h.npz"):
        seen = []
        for layer, values in files.iter_hidden(tmp_path / name):
            seen.append(layer)
            np.testing.assert_array_equal(values, x[int(layer)])
        assert seen == ["0", "1", "2"]
    # the bound is per layer: a file three times the bound, each layer within it, is measured
    per_layer = x[0].nbytes / 2**20
    with inputs.bounds(layer_mb=per_layer * 1.01):
        rows, _ = files.measure_file(tmp_path / "h.npz", tmp_path / "m.csv", ["isoscore"])
    assert [r["layer"] for r in rows] == ["0", "1", "2"]
    with inputs.bounds(layer_mb=per_layer * 0.99), pytest.raises(ValueError, match="more than the limit layer_mb"):
        files.measure_file(tmp_path / "h.npz", tmp_path / "m2.csv", ["isoscore"])


def test_csv_drop_bad_rows_is_asked_for_and_drops_only_those_rows(tmp_path):
    rows = [f"{i},{i * 0.5}" for i in range(10)]
    rows[3], rows[6] = "3,oops", "6,"
    (tmp_path / "t.csv").write_text("id,value\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"column 'value' .* non-numeric cell 'oops' in row 4"):
        data_files.load_series(f"csv:{tmp_path / 't.csv'}")
    series, names = data_files.load_series(f"csv:{tmp_path / 't.csv'}", drop_bad_rows=True)
    keep = [i for i in range(10) if i not in (3, 6)]
    np.testing.assert_array_equal(series[0], keep)
    np.testing.assert_array_equal(series[1], [i * 0.5 for i in keep])
    assert [n.rsplit(":", 1)[1] for n in names] == ["id", "value"]
    # a column of text only (dates) is not a series: skipped, the others kept
    (tmp_path / "d.csv").write_text("date,v\n" + "\n".join(f"2020-01-{i + 1:02d},{i}" for i in range(9)) + "\n")
    series, names = data_files.load_series(f"csv:{tmp_path / 'd.csv'}")
    assert names == [f"{tmp_path / 'd.csv'}:v"]


def test_nmse_is_defined_for_huge_and_tiny_values():
    y = np.array([[1.0, 2.0, -1.0]])
    f = np.array([[1.5, 1.0, -1.0]])
    ref = metrics.nmse(f, y)
    for scale in (1e-300, 1e-200, 1e200, 1e300):
        got = metrics.nmse(f * scale, y * scale)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert np.isinf(metrics.nmse(np.array([[1e308, -1e308, 0.0]]), np.array([[-1e-300, 1e-300, 1e-300]])))
    assert np.isnan(metrics.nmse(f, np.zeros_like(y)))  # an all-zero target: undefined, as documented


# ----------------------------------------------------------------------------------------- checkpoints

def test_checkpoint_checksum_covers_every_metadata_entry_and_sizes_come_first(tmp_path, monkeypatch):
    path = tiny_checkpoint(tmp_path)
    header, _ = read_safetensors_header(path)
    for key in header["__metadata__"]:
        if key == "sha256":
            continue
        edited = edit_metadata(path, tmp_path / "e.safetensors", lambda m, key=key: {**m, key: m[key] + " "})
        with pytest.raises(ValueError, match="has format" if key == "format" else "fails its SHA-256 checksum"):
            checkpoint.load(edited)
    # an absurd size is refused before any tensor is built: tf.init is never called
    absurd = edit_metadata(path, tmp_path / "a.safetensors", lambda m: {
        **m, "config": json.dumps({**json.loads(m["config"]), "vocab": 10**12})}, recompute=True)
    calls = []
    real_init = tf.init

    def init(key, *args, **kwargs):
        calls.append(isinstance(key, jax.core.Tracer))  # abstract (shapes only) or concrete
        return real_init(key, *args, **kwargs)

    monkeypatch.setattr(tf, "init", init)
    with pytest.raises(ValueError, match="more than the limit params"):
        checkpoint.load(absurd)
    assert calls and all(calls)  # init was only traced for its shapes (jax.eval_shape): nothing was built
    checkpoint.load(path)  # the untouched file loads


def test_saved_checkpoint_follows_the_umask_and_never_touches_the_users_tmp(tmp_path):
    cfg = tf.Config(vocab=5, d_model=8, heads=2, layers=1, mlp=16, max_len=8)
    params = tf.init(KEY, cfg)
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"the user's old model")
    os.chmod(out, 0o600)
    (tmp_path / "m.safetensors.tmp").write_text("the user's own file")
    old = os.umask(0o027)
    try:
        checkpoint.save(out, params, cfg)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert (tmp_path / "m.safetensors.tmp").read_text() == "the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "m.safetensors.tmp"]
    checkpoint.load(out)


# ----------------------------------------------------------------------------------------- the sweep store

GRID = {"family": ["cone"], "n": [16], "d": [3], "knob": [0.0, 0.5, 1.0, 2.0]}


def _cell(key, family, n, d, knob):
    x = jax.random.normal(key, (n, d)) + knob
    return {"mean": x.mean(), "spread": x.std()}


def _sweep(out, seed=3, **kw):
    return sweep.run_sweep(_cell, GRID, out, seed=seed, name="hostile", progress=False, per_device=2, **kw)


def _edit_line(path, line, change):
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = change(lines[line - 1])
    path.write_text("".join(lines))


def _value_edit(text):
    fields = text.rstrip("\n").split(",")
    fields[-1] = repr(float(fields[-1]) + 1e-9)
    return ",".join(fields) + "\n"


def _nan_edit(text):
    fields = text.rstrip("\n").split(",")
    fields[-2] = "nan"
    return ",".join(fields) + "\n"


@pytest.mark.parametrize("edit", ["value", "nan", "swap", "value in progress", "moved"])
def test_an_edited_table_is_refused_naming_the_first_bad_row(tmp_path, edit):
    out = tmp_path / "t.csv"
    rows = _sweep(out)
    if edit == "value":
        _edit_line(out, 3, _value_edit)
        match = r"line 3: cell 1 does not match its digest"
    elif edit == "nan":
        _edit_line(out, 4, _nan_edit)
        match = r"line 4: cell 2 does not match its digest"
    elif edit == "swap":  # another seed's table under this table's sidecar
        other = tmp_path / "o.csv"
        _sweep(other, seed=4)
        out.write_bytes(other.read_bytes())
        match = r"line 2: cell 0 does not match its digest"
    elif edit == "moved":  # cells 1 and 2 exchange their values
        lines = out.read_text().splitlines(keepends=True)
        a, b = lines[2].split(",", 5), lines[3].split(",", 5)
        lines[2], lines[3] = ",".join(a[:5] + b[5:]), ",".join(b[:5] + a[5:])
        out.write_text("".join(lines))
        match = r"line 3: cell 1 does not match its digest"
    else:  # a table being written (its digests in t.csv.digests), one value changed
        meta = json.loads(results.sidecar_path(out).read_text())
        (tmp_path / "t.csv.digests").write_text("".join(f"{i} {d}\n" for i, d in enumerate(meta.pop("row_sha256"))))
        results.sidecar_path(out).write_text(json.dumps({**meta, "complete": False}))
        _edit_line(out, 5, _value_edit)
        match = r"line 5: cell 3 does not match its digest"
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=match):
        _sweep(out)
    assert snapshot(tmp_path) == before  # refused before anything is written, lock released
    if edit != "value in progress":
        with pytest.raises(ValueError, match=r"does not match its digest"):
            results.read_table(out)
    assert len(rows) == 4


def test_a_sweep_killed_between_digests_and_rows_resumes_exactly(tmp_path):
    reference = tmp_path / "r.csv"
    _sweep(reference)
    out = tmp_path / "t.csv"
    _sweep(out)
    meta = json.loads(results.sidecar_path(out).read_text())
    digests = meta.pop("row_sha256")
    results.sidecar_path(out).write_text(json.dumps({**meta, "complete": False}))
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:7])  # two rows and a torn third
    # the digests of the chunk that was being appended are there, and a torn digest line after them
    (tmp_path / "t.csv.digests").write_text("".join(f"{i} {d}\n" for i, d in enumerate(digests[:3])) + "3 ab")
    assert _sweep(out) == _sweep(reference)
    assert out.read_text() == reference.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.csv.json", "t.csv", "t.csv.json"]


def test_sweep_derived_files_of_the_user_are_refused_unless_forced(tmp_path):
    out = tmp_path / "t.csv"
    (tmp_path / "t.csv.json").write_text('{"mine": true}')
    with pytest.raises(ValueError, match=r"t\.csv\.json' exists and was not written by isojax"):
        _sweep(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv.json"]
    (tmp_path / "t.csv.digests").write_text("my notes\n")
    (tmp_path / "t.csv.json").unlink()
    with pytest.raises(ValueError, match=r"t\.csv\.digests' exists and was not written by isojax"):
        _sweep(out)
    assert (tmp_path / "t.csv.digests").read_text() == "my notes\n"
    (tmp_path / "t.csv.digests").unlink()
    (tmp_path / "t.csv.lock").write_text("my lock notes")
    with pytest.raises(ValueError, match=r"t\.csv\.lock' exists and is not an isojax lock file"):
        _sweep(out)
    assert (tmp_path / "t.csv.lock").read_text() == "my lock notes"
    (tmp_path / "t.csv.lock").unlink()
    (tmp_path / "t.csv.json").write_text('{"mine": true}')
    assert len(_sweep(out, force=True)) == 4  # asked for: replaced
    assert results.is_isojax_sidecar(tmp_path / "t.csv.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.csv.json"]


# ----------------------------------------------------------------------------------------- outputs

def test_measure_refuses_derived_outputs_it_did_not_write(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "h.npy", np.random.default_rng(0).normal(size=(2, 30, 4)))
    argv = ["measure", "h.npy", "--out", "report.csv", "--measures", "isoscore"]
    for name in ("report.png", "report.pdf", "report.csv.json"):
        (tmp_path / name).write_text("the user's own")
        before = snapshot(tmp_path)
        code, _, err = run(argv, capsys)
        assert code == 2 and one_line(err) and f"'report.{name.split('.', 1)[1]}' exists and was not written" in err
        assert snapshot(tmp_path) == before
        (tmp_path / name).unlink()
    code, out, err = run(argv, capsys)
    assert code == 0, err
    meta = json.loads((tmp_path / "report.csv.json").read_text())
    assert set(meta["figures"]) == {"report.png", "report.pdf"}
    code, _, err = run(argv, capsys)  # its own outputs: replaced without a word
    assert code == 0, err
    (tmp_path / "report.png").write_bytes(b"edited by the user since")
    code, _, err = run(argv, capsys)
    assert code == 2 and "'report.png' exists and was not written by isojax" in err
    assert (tmp_path / "report.png").read_bytes() == b"edited by the user since"
    code, _, err = run([*argv, "--force"], capsys)
    assert code == 0, err
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.npy", "report.csv", "report.csv.json", "report.pdf",
                                                          "report.png"]


def test_outputs_follow_the_umask(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "h.npy", np.random.default_rng(0).normal(size=(30, 4)))
    old = os.umask(0o027)
    try:
        code, _, err = run(["measure", "h.npy", "--out", "m.csv", "--measures", "isoscore"], capsys)
        outputs.write_npz(tmp_path / "e.npz", x=np.zeros(2))
    finally:
        os.umask(old)
    assert code == 0, err
    for name in ("m.csv", "m.csv.json", "m.png", "m.pdf", "e.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name


@pytest.fixture
def full_disk():
    """Writes past 64 KiB fail (EFBIG: RLIMIT_FSIZE, with SIGXFSZ ignored), as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    @__import__("contextlib").contextmanager
    def limited(limit=64 * 1024):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    try:
        yield limited
    finally:
        signal.signal(signal.SIGXFSZ, previous)


def _last_line(err):
    """The command's own line (a progress bar may share stderr, on lines of its own)."""
    lines = [line for line in re.split(r"[\r\n]", err) if line.startswith("isojax")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _quick_cell(key, family, n, d, knob, replicate=0):
    """A measures-sweep cell that compiles in no time (the sweep machinery is what these tests exercise)."""
    return {"v": knob + jax.random.normal(key)}


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, full_disk):
    from isojax.runs import measures
    monkeypatch.setattr(measures, "measures_cell", _quick_cell)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "h.npy", rng.normal(size=(2, 30, 4)))
    measure = ["measure", "h.npy", "--measures", "isoscore"]
    sweep_argv = ["sweep", "--families", "cone", "--knobs", "0", "1", "--n", "20", "--d", "3", "--replicates", "2"]
    (tmp_path / "warm").mkdir()  # compiled once with room to write (the compilation cache writes files too)
    assert run([*measure, "--out", "warm/m.csv"], capsys)[0] == 0
    assert run([*sweep_argv, "--out", "warm/s.csv"], capsys)[0] == 0
    before = snapshot(tmp_path)
    with full_disk(1024):
        code, _, err = run([*measure, "--out", "m.csv"], capsys)
    assert code == 2 and "File too large" in _last_line(err), err
    assert snapshot(tmp_path) == before  # no partial csv or json, no temporary file
    final_sidecar = (tmp_path / "warm" / "s.csv.json").stat().st_size
    for limit in (100, final_sidecar - 1):  # the disk fills at the first chunk, or at the very end
        with full_disk(limit):
            code, _, err = run([*sweep_argv, "--out", "s.csv"], capsys)
        assert code == 2 and "File too large" in _last_line(err), err
        left = sorted(p.name for p in tmp_path.iterdir())
        assert set(left) - {"h.npy", "warm"} <= {"s.csv", "s.csv.json", "s.csv.digests"}, left  # no tmp, no lock
        assert run([*sweep_argv, "--out", "s.csv"], capsys)[0] == 0  # what is left resumes
        assert (tmp_path / "s.csv").read_text() == (tmp_path / "warm" / "s.csv").read_text()
        for name in ("s.csv", "s.csv.json"):
            (tmp_path / name).unlink()
    model = tiny_checkpoint(tmp_path / "warm")
    embed = ["embed", "--model", model, "--data", "real:nile", "--max-sequences", "2"]
    assert run([*embed, "--out", "warm/e.npz"], capsys)[0] == 0
    before = snapshot(tmp_path)
    with full_disk(1024):
        code, _, err = run([*embed, "--out", "e.npz"], capsys)
    assert code == 2 and "File too large" in _last_line(err), err
    assert snapshot(tmp_path) == before
    with full_disk(1024), pytest.raises(OSError):
        outputs.write_npz(tmp_path / "e.npz", x=rng.normal(size=1000))
    cfg = tf.Config(vocab=50, d_model=8, heads=2, layers=1, mlp=16, max_len=8)
    with full_disk(1024), pytest.raises(OSError):
        checkpoint.save(tmp_path / "c.safetensors", tf.init(KEY, cfg), cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.npy", "warm"]


def test_an_interrupt_while_staging_removes_every_temporary_file(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(signals.Interrupted):
        with outputs.staged(tmp_path / "a.txt", tmp_path / "b.txt") as (ta, tb):
            ta.write_text("new a")
            tb.write_text("new b")
            raise signals.Interrupted("", signal.SIGTERM)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old a"
    names = {outputs.temporary_beside(tmp_path / "a.txt").name for _ in range(3)}
    assert len(names) == 3 and all(n.startswith(".a.txt.") and n.endswith(".tmp") for n in names)


# ----------------------------------------------------------------------------------------- signals

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_keep_the_chunk_release_the_lock_and_exit_128_plus(tmp_path, capsys, monkeypatch, signum):
    """The signal is delivered to this process for real (os.kill) while the first chunk runs."""
    from isojax.runs import measures
    monkeypatch.setenv("ISOJAX_TEST_SEND", str(int(signum)))

    def signalling_cell(key, family, n, d, knob, replicate=0):
        def send():
            if os.environ.get("ISOJAX_TEST_SEND") == str(signum):  # read when it runs: not part of the identity
                os.environ["ISOJAX_TEST_SEND"] = ""
                os.kill(os.getpid(), signum)
        jax.debug.callback(send)
        return _quick_cell(key, family, n, d, knob)

    monkeypatch.setattr(measures, "measures_cell", signalling_cell)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "t.csv"
    previous = {s: signal.getsignal(s) for s in signals.HANDLED}
    code, _, err = run(["sweep", "--families", "cone", "--knobs", "0", "0.5", "1", "2", "--n", "8", "--d", "3",
                        "--replicates", "8", "--out", out], capsys)  # 32 cells: two chunks of 16
    assert code == 128 + signum, err
    assert _last_line(err).startswith(f"isojax sweep: interrupted by {signal.Signals(signum).name}: sweep "), err
    assert len(results.read_table(out)) == 16 and out.read_text().endswith("\n")  # the chunk it was in: kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.csv.digests", "t.csv.json"]  # no lock
    assert {s: signal.getsignal(s) for s in signals.HANDLED} == previous  # handlers restored
    # the rerun resumes and finishes
    code, _, err = run(["sweep", "--families", "cone", "--knobs", "0", "0.5", "1", "2", "--n", "8", "--d", "3",
                        "--replicates", "8", "--out", out], capsys)
    assert code == 0 and len(results.read_table(out)) == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.csv.json"]


def test_a_signal_outside_a_sweep_unwinds_like_ctrl_c(tmp_path, capsys, monkeypatch):
    """SIGTERM during any other command raises where the program is: its temporary files go, exit 143."""
    from isojax.isotropy import files
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "h.npy", np.random.default_rng(0).normal(size=(30, 4)))
    real = files._plot_layers

    def plot_then_signal(rows):  # while the outputs are staged in their temporary files
        fig = real(rows)
        os.kill(os.getpid(), signal.SIGTERM)
        return fig

    monkeypatch.setattr(files, "_plot_layers", plot_then_signal)
    code, _, err = run(["measure", "h.npy", "--out", "m.csv", "--measures", "isoscore"], capsys)
    assert code == 143 and err == "isojax measure: interrupted by SIGTERM\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.npy"]

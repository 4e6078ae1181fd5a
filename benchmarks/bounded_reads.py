"""Hostile files against the `isojax` command, measured: peak memory (RSS of the command's process, from
/usr/bin/time -v or, without it, a psutil sampler), wall time and exit status of each case.

- bomb: an .npz of about 2 MiB whose one member inflates to 700,000 × 768 float32 (2.15 GB): refused from its
  header (layer_mb), before anything is decompressed.
- big .npy: a 2.15 GB [20, 35000, 768] float32 file (102.5 MiB a layer), measured one layer at a time
  (`isojax measure`, the O(n·d) measures), and the same bytes as one [700000, 768] layer: refused (layer_mb).
- one layer at the bound: [1, 43000, 768] float32 (126 MiB), every measure: the peak a layer_mb-sized layer costs.
- absurd declared sizes: a checkpoint whose metadata says layers 10^6 or vocab 10^12, a config.json with
  vocab_size 10^12: refused before any allocation.
- /dev/zero and a FIFO with no writer as --text, and as the measured file: refused at once.
- SIGTERM in the middle of a sweep: exit 143, one line, no lock file, and the rerun resumes.

Usage: python benchmarks/bounded_reads.py [--dir FOLDER] [--out results.json] [--small]
(--small: files a tenth of the size, for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def run(argv: list[str], cwd: Path, timeout: float = 1800) -> dict:
    """`isojax argv` in cwd -> exit status, wall seconds, peak RSS (MiB) and the last line of stderr."""
    cmd = [sys.executable, "-m", "isojax.cli", *argv]
    timer = shutil.which("time") and Path("/usr/bin/time").exists()
    if timer:
        cmd = ["/usr/bin/time", "-v", *cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    err = proc.stderr
    peak = None
    if timer:
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
        peak = int(match.group(1)) / 1024 if match else None
        err = re.split(r"\n?(?:Command exited with non-zero status \d+\n)?\tCommand being timed", err)[0]
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return {"argv": argv, "exit": proc.returncode, "wall_s": round(wall, 2),
            "peak_rss_mib": None if peak is None else round(peak, 1), "stderr_last": lines[-1] if lines else "",
            "stderr_lines": len(lines), "stdout": proc.stdout.strip()[-300:]}


def _npy_header(shape: tuple, dtype=np.float32) -> bytes:
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()


def make_bomb(path: Path, n: int = 700_000, d: int = 768) -> None:
    """An .npz whose member `hidden.npy` inflates to [n, d] float32 zeros, written as a stream (no n·d in RAM)."""
    block = np.zeros(1 << 22, np.float32).tobytes()  # 16 MiB of zeros
    total = n * d * 4
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("hidden.npy", "w", force_zip64=True) as member:
            member.write(_npy_header((n, d)))
            while total:
                step = min(total, len(block))
                member.write(block[:step])
                total -= step


def make_npy(path: Path, shape: tuple) -> None:
    """A float32 .npy of `shape` [layers, n, d] with random, anisotropic layers, written layer by layer."""
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(_npy_header(shape))
        for i in range(shape[0]):
            layer = rng.standard_normal(shape[1:], np.float32)
            layer[:, 0] += i  # a growing common direction
            f.write(layer.tobytes())


def sweep_sigterm(folder: Path) -> dict:
    """SIGTERM a measures sweep once some cells are on disk: exit, message, lock, and the resumed table."""
    out = folder / "t.csv"
    argv = ["sweep", "--families", "cone", "spiked", "--knobs", "0", "0.5", "1", "2", "--n", "300", "--d", "32",
            "--replicates", "8", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "isojax.cli", *argv], cwd=folder, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.time() + 600
    while time.time() < end and proc.poll() is None:
        if out.exists() and out.stat().st_size > 0 and len(out.read_text().splitlines()) > 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    rows = len(out.read_text().splitlines()) - 1 if out.exists() else 0
    lock = out.with_name(out.name + ".lock").exists()
    resumed = run(argv, folder)
    return {"exit": proc.returncode, "stderr": err.strip().splitlines()[-1:], "rows_kept": rows, "lock_left": lock,
            "resumed_exit": resumed["exit"], "resumed": resumed["stdout"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help="where the files are made (default: a temporary folder)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--small", action="store_true", help="a 200 MB .npy instead of 2 GB")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="isojax-bounded-"))
    folder.mkdir(parents=True, exist_ok=True)
    result = {}

    bomb = folder / "bomb.npz"
    make_bomb(bomb, n=70_000 if args.small else 700_000)
    result["bomb_file_mib"] = round(bomb.stat().st_size / 2**20, 2)
    result["bomb"] = run(["measure", str(bomb), "--out", str(folder / "bomb.csv")], folder)

    layers, n = (20, 3500) if args.small else (20, 35_000)
    big = folder / "big.npy"
    make_npy(big, (layers, n, 768))
    result["big_npy_gb"] = round(big.stat().st_size / 1e9, 3)
    result["big_npy"] = run(["measure", str(big), "--out", str(folder / "big.csv"), "--measures", "isoscore",
                             "d80_fraction", "cosine", "cosine_centred"], folder)
    flat = folder / "flat.npy"  # the same bytes as one [layers · n, 768] layer
    with open(big, "rb") as src, open(flat, "wb") as dst:
        src.seek(len(_npy_header((layers, n, 768))))
        dst.write(_npy_header((layers * n, 768)))
        shutil.copyfileobj(src, dst, 1 << 24)
    big.unlink()
    result["one_layer_npy"] = run(["measure", str(flat), "--out", str(folder / "flat.csv")], folder)
    flat.unlink()
    bound = folder / "bound.npy"
    make_npy(bound, (1, 4300 if args.small else 43_000, 768))
    result["layer_at_bound_all_measures"] = run(["measure", str(bound), "--out", str(folder / "bound.csv")], folder)
    bound.unlink()

    result["dev_zero_text"] = run(["embed", "--model", "minilm", "--text", "/dev/zero", "--out", "e.npz"], folder)
    fifo = folder / "fifo.txt"
    os.mkfifo(fifo)
    result["fifo_text"] = run(["embed", "--model", "minilm", "--text", str(fifo), "--out", "e.npz"], folder, 120)
    fifo_npy = folder / "fifo.npy"
    os.mkfifo(fifo_npy)
    result["fifo_measure"] = run(["measure", str(fifo_npy), "--out", "m.csv"], folder, 120)

    from safetensors.numpy import save_file

    from isojax.models import checkpoint
    for name, change in (("layers", {"layers": 10**6}), ("vocab", {"vocab": 10**12})):
        config = {"vocab": 67, "d_model": 8, "heads": 2, "layers": 1, "mlp": 16, "max_len": 16, **change}
        path = folder / f"absurd_{name}.safetensors"
        tensors = {"x": np.zeros(1, np.float32)}
        meta = {"format": checkpoint.FORMAT, "config": json.dumps(config)}  # checksum right: only the size is wrong
        save_file(tensors, str(path), metadata={**meta, "sha256": checkpoint.checksum(tensors, meta)})
        result[f"checkpoint_{name}"] = run(["embed", "--model", str(path), "--data", "real:nile", "--out", "e.npz"],
                                           folder)
    hf = folder / "gpt2_vocab"
    hf.mkdir(exist_ok=True)
    (hf / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 10**12, "n_embd": 8, "n_head": 2,
                                                "n_layer": 1, "n_positions": 16}))
    save_file({"x": np.zeros(1, np.float32)}, str(hf / "model.safetensors"))
    (hf / "tokenizer.json").write_text("{}")
    (folder / "s.txt").write_text("one sentence\n")
    result["config_json_vocab"] = run(["embed", "--model", str(hf), "--text", "s.txt", "--out", "e.npz"], folder)

    result["sweep_sigterm"] = sweep_sigterm(folder)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

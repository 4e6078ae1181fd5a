"""What the `isojax` commands do, as library functions: a measures sweep over synthetic families, training a
numeric LM to a checkpoint, embedding numeric data or sentences with a model, and measuring saved hidden
states layer by layer. The CLI only parses arguments and calls these.

Each one checks its inputs and that its output paths can be written before any compute, so a mistake costs
no time and leaves nothing on disk (ValueError naming the argument or file); every file is written to a
temporary name and renamed, so an interrupted run leaves no half-written output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from isojax import _validate as V
from isojax import distributions, isotropy, pretrained, results, sweep, train
from isojax import transformer as tf
from isojax.data import corpus, files, real, tokens

__all__ = ["check_output", "measures_cell", "measures_sweep", "train_model", "embed_data", "embed_text",
           "read_hidden", "measure_file"]


def check_output(path: Path | str, suffix: str | None = None, name: str = "out") -> Path:
    """path, once it is clear that a file can be written there: not a folder, the right suffix, an existing
    file writable, and its folder creatable (the nearest existing ancestor a writable folder). Creates
    nothing. ValueError otherwise."""
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        raise ValueError(f"{name} {str(path)!r} must end in {suffix}")
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{name} {str(path)!r} exists and is not writable")
    ancestor = path.parent.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{name} {str(path)!r} cannot be created: {str(ancestor)!r} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {str(path)!r} cannot be created: {str(ancestor)!r} is not writable")
    return path


def _write_npz(out: Path, **arrays) -> None:
    """np.savez_compressed through a temporary file and a rename; the temporary file never stays."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------- sweep

def measures_cell(key: jax.Array, family: str, n: int, d: int, knob: float | jax.Array,
                  replicate: int = 0) -> dict[str, jax.Array]:
    """One cell of a measures sweep: every isotropy measure of n points in d dimensions from `family`."""
    k1, k2 = jax.random.split(key)
    return isotropy.all_measures(distributions.sample(family, k1, n, d, knob), k2)


def measures_sweep(grid: dict[str, list], out: Path, seed: int = 0) -> list[dict]:
    """Every isotropy measure over a grid of family, n, d, knob and replicate -> the rows of out (CSV)."""
    unknown = set(grid.get("family", [])) - set(distributions.FAMILIES)
    if unknown:
        raise ValueError(f"families {sorted(unknown)} unknown; choose from {sorted(distributions.FAMILIES)}")
    out = check_output(out, ".csv")
    return sweep.run_sweep(measures_cell, grid, out, seed=seed, name="isotropy_measures")


# ----------------------------------------------------------------------------------------- train

def _file_digest(source: str) -> str | None:
    """SHA-256 of a file source's file (so a checkpoint records exactly which data it saw)."""
    if not files.is_file_source(source):
        return None
    path = source[4:] if source.startswith("npy:") or Path(source[4:]).is_file() else source[4:].rsplit(":", 1)[0]
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_model(data: str, tokenizer: str, arch: str, layers: int, d_model: int, heads: int, seq_len: int,
                steps: int, seed: int, out: Path, log: Callable[[str], object] = print) -> Path:
    """Train a numeric LM on `data` (see `corpus.build`) and save its checkpoint to out (self-describing: see
    `train.save`); logs the final loss and the forecast NMSE on the held-out series."""
    if arch not in ("decoder", "encoder"):
        raise ValueError(f"arch must be 'decoder' or 'encoder', got {arch!r}")
    tok = corpus.make_tokenizer(tokenizer)
    seq_len = V.positive_int("seq_len", seq_len, 2)  # one token has no next token to predict
    steps = V.positive_int("steps", steps)
    d_model = V.positive_int("d_model", d_model)
    config = tf.Config(vocab=tok.vocab + 1, d_model=d_model, heads=heads, layers=layers, mlp=4 * d_model,
                       max_len=seq_len, causal=arch == "decoder")
    out = check_output(out, ".safetensors")
    built = corpus.build(data, tok, jax.random.PRNGKey(seed), seq_len=seq_len)
    params, losses, _ = train.train(jax.random.PRNGKey(seed + 1), config, built.sequences,
                                    train.TrainConfig(steps=steps))
    if not np.isfinite(losses).all() or not all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params)):
        raise ValueError(f"training diverged (final loss {losses[-1]}); nothing was saved to {str(out)!r}")
    meta = {"tokenizer": corpus.tokenizer_spec(tok), "data": data, "data_sha256": _file_digest(data),
            "steps": steps, "seed": seed, "arch": arch, "train": dataclasses.asdict(train.TrainConfig(steps=steps))}
    train.save(out, params, config, meta)
    log(f"final loss {losses[-20:].mean():.4f}; checkpoint {out}")
    if built.contexts:
        nmse = train.evaluate_forecasts(jax.random.PRNGKey(seed + 2), params, config, built)
        log(f"forecast NMSE (median of 20 samples) {nmse:.4f}")
    return Path(out)


# ----------------------------------------------------------------------------------------- embed

def _checkpoint_tokenizer(meta: dict, requested: str | None, model: str):
    """The checkpoint's own tokenizer; a different `requested` one is refused (its ids would mean nothing)."""
    spec = meta.get("tokenizer")
    if not isinstance(spec, dict):
        raise ValueError(f"checkpoint {model!r} does not record its tokenizer; retrain it with this isojax")
    if requested is not None and requested != spec.get("name"):
        raise ValueError(f"--tokenizer {requested!r} does not match checkpoint {model!r}, trained with "
                         f"{spec.get('name')!r}; leave --tokenizer out to use the checkpoint's")
    return corpus.tokenizer_from_spec(spec)


def embed_data(model: str, data: str, tokenizer: str | None, max_sequences: int, seed: int, out: Path) -> np.ndarray:
    """Every layer's hidden states of a model ('minilm' or a checkpoint from `train_model`) on `data`, saved as
    out (.npz, array `hidden` [L + 1, tokens, d]). A checkpoint uses its own tokenizer (`tokenizer`, if given,
    must name the same). MiniLM embeds real series serialized as digit strings."""
    max_sequences = V.positive_int("max_sequences", max_sequences)
    out = check_output(out, ".npz")
    if model == "minilm":
        if not data.startswith("real:"):
            raise ValueError("--model minilm embeds serialized real series: --data real:<name>")
        digits = tokens.DigitTokenizer(precision=1, digits=3)
        texts = [digits.to_text(s[:40]) for s in real.load(data[5:])]
        # every real token of every text, in text order: [L+1, real tokens, d] (128 tokens per text at most)
        hidden = np.asarray(pretrained.embed_texts("minilm", texts, pooling=None, max_len=128).hidden)
    else:
        params, config, meta = train.load(model)
        tok = _checkpoint_tokenizer(meta, tokenizer, model)
        built = corpus.build(data, tok, jax.random.PRNGKey(seed), seq_len=config.max_len)
        seqs = jnp.asarray(built.sequences[:max_sequences])
        hidden = np.asarray(jax.vmap(lambda t: tf.forward(params, t, config)[0])(seqs))  # [n, L+1, T, d]
        hidden = np.moveaxis(hidden, 1, 0).reshape(hidden.shape[1], -1, hidden.shape[-1])  # [L+1, n·T, d]
    _write_npz(out, hidden=hidden)
    return hidden


def _read_texts(path: Path) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"--text {str(path)!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--text {str(path)!r} could not be read as UTF-8 text: {err}") from None
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"--text {str(path)!r} holds no sentence (one per line)")
    return texts


def embed_text(model: str, text: Path, pooling: str | None, max_len: int, out: Path) -> np.ndarray:
    """Every layer's hidden states of a text model ('minilm' or a Hugging Face folder) on the sentences of a
    file (one per line, blank lines skipped), saved as out (.npz): `hidden` [L + 1, rows, d], `text_index`
    [rows] (the sentence's line among the non-blank ones) and `token_position` [rows] (-1 for mean pooling).
    pooling None: a row per real token; "mean" / "first" / "last": a row per sentence."""
    if pooling not in (None, "mean", "first", "last"):
        raise ValueError(f"pooling must be None, 'mean', 'first' or 'last', got {pooling!r}")
    max_len = V.positive_int("max_len", max_len)
    out = check_output(out, ".npz")
    texts = _read_texts(text)
    emb = pretrained.embed_texts(model, texts, pooling=pooling, max_len=max_len)
    hidden, index, position = np.asarray(emb.hidden), emb.input, emb.position
    _write_npz(out, hidden=hidden, text_index=np.asarray(index, np.int64),
               token_position=np.asarray(position, np.int64))
    return hidden


# ----------------------------------------------------------------------------------------- measure

def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_hidden(path: Path) -> dict[str, np.ndarray]:
    """Hidden states from a file, one [n, d] array per layer in file order: .npy [n, d] or [layers, n, d]; .npz
    with `hidden` ([n, d] or [layers, n, d]) or else one named [n, d] array per layer; .safetensors likewise (its
    names in natural order, as the format keeps none). -> {layer name: [n, d]}"""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"file {str(path)!r}: no such file" if not path.exists() else f"{str(path)!r} is not a file")
    try:
        if path.suffix == ".npy":
            arrays = {"hidden": np.load(path, allow_pickle=False)}
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        elif path.suffix == ".safetensors":
            from safetensors.numpy import load_file
            loaded = load_file(str(path))  # the format keeps no order: names in natural order (h.2 before h.10)
            arrays = {k: loaded[k] for k in sorted(loaded, key=_natural)}
        else:
            raise ValueError(f"file {str(path)!r} must be .npy, .npz or .safetensors")
    except ValueError:
        raise
    except Exception as err:  # zip, pickle and safetensors each raise their own type for a damaged file
        raise ValueError(f"file {str(path)!r} could not be read (truncated or corrupt?): {err}") from None
    if not arrays:
        raise ValueError(f"file {str(path)!r} holds no arrays")
    if "hidden" in arrays or len(arrays) == 1:
        name, x = ("hidden", arrays["hidden"]) if "hidden" in arrays else next(iter(arrays.items()))
        if x.ndim == 2:
            return {"0": x}
        if x.ndim == 3:
            return {str(i): layer for i, layer in enumerate(x)}
        raise ValueError(f"file {str(path)!r}: array {name!r} must be [n, d] or [layers, n, d], got shape {x.shape}")
    bad = {k: v.shape for k, v in arrays.items() if v.ndim != 2}
    if bad:
        raise ValueError(f"file {str(path)!r}: every per-layer array must be [n, d], got shapes {bad}")
    return dict(arrays)


def measure_file(path: Path, out: Path, measures: list[str] | None = None, max_points: int = 2000,
                 seed: int = 0) -> tuple[list[dict], list[Path]]:
    """Every isotropy measure (or `measures`) of each layer's hidden states in a file (see `read_hidden`) ->
    (rows, files written): the table out (.csv) with its JSON sidecar, and a by-layer figure beside it
    (out's stem .png and .pdf)."""
    from isojax import plots

    out = check_output(out, ".csv")
    for ext in (".png", ".pdf", ".csv.json"):
        check_output(out.with_name(out.stem + ext) if ext != ".csv.json" else out.with_name(out.name + ".json"))
    hidden = read_hidden(path)
    rows = isotropy.measure_layers(hidden, seed=seed, measures=measures, max_points=max_points)
    config = {"name": "measure_file", "file": str(path), "measures": measures, "max_points": max_points, "seed": seed}
    written = [results.save_table(rows, out, config), out.with_name(out.name + ".json")]
    with plots.style():
        written += _plot_layers(rows, out)
    return rows, written


def _plot_layers(rows: list[dict], out: Path) -> list[Path]:
    """One small panel per measure, its value against the layer."""
    from isojax import plots

    names = [k for k in rows[0] if k not in ("layer", "cell") and isinstance(rows[0][k], (int, float))]
    cols = min(3, len(names))
    fig, axes = plots.figure((len(names) + cols - 1) // cols, cols, width=plots.DOUBLE)
    layers = np.arange(len(rows))
    for ax, name in zip(axes.ravel(), names):
        ax.plot(layers, [r[name] for r in rows], marker="o")
        ax.set_xlabel("layer")
        ax.set_ylabel(name)
        ax.set_xticks(layers, [str(r["layer"]) for r in rows])
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    return plots.save(fig, out.parent, out.stem)

"""What `isojax train` and `isojax embed --data` do, as library functions: train one numeric LM to a
self-describing checkpoint, and embed numeric data with a checkpoint (or MiniLM on serialized real series).

Each checks its inputs and that its output path can be written before any compute, so a mistake costs no time
and leaves nothing on disk (ValueError naming the argument or file); files are written to a temporary name and
renamed, so an interrupted run leaves no half-written output.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from isojax import _validate as V
from isojax import forecast as fc
from isojax import inputs, pretrained
from isojax import transformer as tf
from isojax.data import corpus, files, real, tokens
from isojax.models import checkpoint, ensemble, forecast, recipes, training
from isojax.runs import results
from isojax.runs.outputs import check_derived, check_output, write_npz

__all__ = ["MODELS_HELP", "forecast_table_path", "train_model", "embed_data"]


def _file_digest(source: str) -> str | None:
    """SHA-256 of a file source's file (so a checkpoint records exactly which data it saw), read in blocks."""
    if not files.is_file_source(source):
        return None
    path = source[4:] if source.startswith("npy:") or Path(source[4:]).is_file() else source[4:].rsplit(":", 1)[0]
    h = hashlib.sha256()
    with inputs.open_regular(path, f"data {source!r}") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def forecast_table_path(out: Path) -> Path:
    """Where `train_model` writes the forecast evaluation of the checkpoint `out`: <stem>.forecast.csv beside it
    (and its .csv.json sidecar)."""
    return Path(out).with_name(Path(out).stem + ".forecast.csv")


def train_model(data: str, tokenizer: str, arch: str, layers: int | None, d_model: int | None, heads: int | None,
                seq_len: int, steps: int, seed: int, out: Path, log: Callable[[str], object] = print,
                evaluation: ensemble.Evaluation | None = None, drop_bad_rows: bool = False,
                force: bool = False) -> Path:
    """Train a numeric LM of architecture `arch` (`recipes.ARCHITECTURES`; layers, d_model and heads override
    the recipe's) on `data` (see `corpus.build`) and save its checkpoint to out (self-describing: see
    `checkpoint.save`). Then score its forecasts on the held-out tails' backtest windows against the baselines
    on the same windows (`isojax.forecast`: MASE, sMAPE, NMSE, CRPS, WQL with bootstrap intervals and the skill
    against seasonal-naive; `evaluation` sets the windows, samples and draws, default `ensemble.Evaluation()`)
    and write them to `forecast_table_path(out)` with a sidecar; logs the final loss and the headline scores.
    The forecast table and its sidecar, derived from out, replace existing files only if isojax wrote them (or
    with `force`). drop_bad_rows: drop CSV rows with a non-numeric cell instead of refusing them
    (`isojax.data.files.load_series`)."""
    tok = corpus.make_tokenizer(tokenizer)
    config = recipes.model_config(arch, tok.vocab + 1, seq_len, layers=layers, d_model=d_model, heads=heads)
    steps = V.positive_int("steps", steps)
    out = check_output(out, ".safetensors")
    table = check_derived(forecast_table_path(out), results.is_isojax_table(forecast_table_path(out)), force,
                          what=str(out))
    side = results.sidecar_path(table)
    check_derived(side, results.is_isojax_sidecar(side), force, what=str(out))
    built = corpus.build(data, tok, jax.random.PRNGKey(seed), seq_len=seq_len, drop_bad_rows=drop_bad_rows)
    tcfg = training.TrainConfig(steps=steps)
    params, losses, _ = training.train(jax.random.PRNGKey(seed + 1), config, built.sequences, tcfg)
    if not np.isfinite(losses).all() or not all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params)):
        raise ValueError(f"training diverged (final loss {losses[-1]}); nothing was saved to {str(out)!r}")
    meta = {"tokenizer": corpus.tokenizer_spec(tok), "data": data, "data_sha256": _file_digest(data),
            "steps": steps, "seed": seed, "arch": arch, "engine": training.SERIAL.tag,
            "train": dataclasses.asdict(tcfg)}
    checkpoint.save(out, params, config, meta)
    log(f"final loss {losses[-20:].mean():.4f}; checkpoint {out}")
    how = evaluation or ensemble.Evaluation()
    try:
        windows = ensemble.study_windows(built.series, how.context, how.horizon, how.windows)
    except ValueError as err:
        log(f"no forecast evaluation: {err}")
        return Path(out)
    reference = fc.baseline_scores(windows)
    rows = fc.evaluate(forecast.model_forecaster(params, config, tok, how.samples), windows,
                       jax.random.PRNGKey(seed + 2), name=f"{arch} ({data})", reference=reference, draws=how.draws)
    rows += fc.evaluate_baselines(windows, reference, draws=how.draws)
    results.save_table(rows, table, {"name": "train_forecast", "checkpoint": str(out), "data": data, "seed": seed,
                                     "evaluation": dataclasses.asdict(how)})
    for r in rows[: len(fc.METRICS)]:
        log(f"{r['metric']} {r['value']:.4g} [{r['low']:.4g}, {r['high']:.4g}] over {r['windows']} windows; "
            f"seasonal-naive {r['seasonal_naive']:.4g}; skill {r['skill']:.3g} ({r['vs_seasonal_naive']})")
    log(f"forecast table {table}")
    return Path(out)


def _checkpoint_tokenizer(meta: dict, requested: str | None, model: str, vocab: int):
    """The checkpoint's own tokenizer; a different `requested` one is refused (its ids would mean nothing)."""
    spec = meta.get("tokenizer")
    if not isinstance(spec, dict):
        raise ValueError(f"checkpoint {model!r} does not record its tokenizer; retrain it with this isojax")
    if requested is not None and requested != spec.get("name"):
        raise ValueError(f"--tokenizer {requested!r} does not match checkpoint {model!r}, trained with "
                         f"{spec.get('name')!r}; leave --tokenizer out to use the checkpoint's")
    tok = corpus.tokenizer_from_spec(spec)
    if tok.vocab + 1 != vocab:  # ids past the embedding would be read out of range, silently
        raise ValueError(f"checkpoint {model!r}: its tokenizer has {tok.vocab} tokens (+1 MASK), its embedding "
                         f"{vocab} rows; the file does not describe one model")
    return tok


# what `--model` accepts, for the messages that refuse anything else
MODELS_HELP = ("a checkpoint from `isojax train` (.safetensors), a Hugging Face folder (config.json + "
               "model.safetensors: BERT or GPT-2 family with tokenizer.json, or Chronos), or 'minilm'")


def _text_series(model: str, data: str) -> list[str]:
    """A text model's input from numeric data: real series serialized as digit strings (their first 40 values)."""
    if not data.startswith("real:"):
        raise ValueError(f"--model {model} embeds serialized real series: --data real:<name> (or sentences with "
                         "--text FILE)")
    digits = tokens.DigitTokenizer(precision=1, digits=3)
    return [digits.to_text(s[:40]) for s in real.load(data[5:])]


def _embed_folder(model: str, data: str, tokenizer: str | None, max_sequences: int, seed: int,
                  pooling: str | None) -> dict[str, np.ndarray]:
    """A Hugging Face folder on numeric data: a Chronos model through its own tokenizer (mean scaling and
    uniform bins), a text model (BERT, GPT-2) on serialized real series."""
    if tokenizer is not None:
        raise ValueError(f"--tokenizer applies to isojax checkpoints; the folder {model!r} uses its own")
    loaded = pretrained.load(model)
    if isinstance(loaded.tokenizer, pretrained.MeanScaleUniformBins):
        series = corpus.source_series(data, jax.random.PRNGKey(seed), count=max_sequences)[:max_sequences]
        emb = pretrained.embed_series(loaded, series, pooling=pooling)
        return {"hidden": np.asarray(emb.hidden), "series_index": np.asarray(emb.input, np.int64),
                "token_position": np.asarray(emb.position, np.int64), "scale": np.asarray(emb.scale)}
    if pooling is not None:
        raise ValueError("--pooling applies to --text and to a Chronos folder's --data")
    if loaded.tokenizer is None:
        raise ValueError(f"the folder {model!r} has no tokenizer.json: isojax embed needs one for a text model")
    texts = _text_series(f"{model!r} (a text model)", data)[:max_sequences]
    return {"hidden": np.asarray(pretrained.embed_texts(loaded, texts, pooling=None, max_len=128).hidden)}


def embed_data(model: str, data: str, tokenizer: str | None, max_sequences: int, seed: int, out: Path,
               pooling: str | None = None, drop_bad_rows: bool = False) -> np.ndarray:
    """Every layer's hidden states of a model on numeric `data` (see `corpus.build`), saved as out (.npz, array
    `hidden` [L + 1, rows, d]); returns `hidden`. `model`:
    - a checkpoint from `train_model`: its own tokenizer (`tokenizer`, if given, must name the same); windows
      of its context length, at most `max_sequences`; a row per token;
    - a Chronos folder: at most `max_sequences` series through the model's own tokenizer (each cut to its
      last context_length values; `pretrained.embed_series`); a row per value (or per series with `pooling`
      "mean" / "first" / "last"), out also holding `series_index` and `token_position` [rows] and `scale`
      [series];
    - 'minilm' or a BERT / GPT-2 family folder: real series serialized as digit strings, a row per token.
    A path that is neither a file nor a folder with config.json is a ValueError naming what is accepted.
    drop_bad_rows: drop CSV rows with a non-numeric cell instead of refusing them."""
    max_sequences = V.positive_int("max_sequences", max_sequences)
    out = check_output(out, ".npz")
    if pooling not in (None, "mean", "first", "last"):
        raise ValueError(f"pooling must be None, 'mean', 'first' or 'last', got {pooling!r}")
    path = Path(model)
    if model != "minilm" and path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"--model {model!r} is not a file (a checkpoint from isojax train) nor a Hugging Face "
                             f"folder: it has no config.json. --model takes {MODELS_HELP}")
        arrays = _embed_folder(model, data, tokenizer, max_sequences, seed, pooling)
        write_npz(out, **arrays)
        return arrays["hidden"]
    if pooling is not None:
        raise ValueError("--pooling applies to --text and to a Chronos folder's --data")
    if model == "minilm":
        texts = _text_series("minilm", data)[:max_sequences]
        # every real token of every text, in text order: [L+1, real tokens, d] (128 tokens per text at most)
        hidden = np.asarray(pretrained.embed_texts("minilm", texts, pooling=None, max_len=128).hidden)
    else:
        if not path.exists():
            raise ValueError(f"checkpoint {model!r}: no such file or folder; --model takes {MODELS_HELP}")
        params, config, meta = checkpoint.load(model)
        tok = _checkpoint_tokenizer(meta, tokenizer, model, config.vocab)
        built = corpus.build(data, tok, jax.random.PRNGKey(seed), seq_len=config.max_len, drop_bad_rows=drop_bad_rows)
        hidden = tf.hidden_states(params, config, built.sequences[:max_sequences])  # [n, L+1, T, d]
        hidden = np.moveaxis(hidden, 1, 0).reshape(hidden.shape[1], -1, hidden.shape[-1])  # [L+1, n·T, d]
    write_npz(out, hidden=hidden)
    return hidden

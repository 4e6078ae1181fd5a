"""Every layer's hidden states of a loaded model for texts or series, token by token or pooled per input."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from isojax import _validate as V
from isojax import transformer as tf
from isojax.pretrained import bert
from isojax.pretrained.chronos import MeanScaleUniformBins, as_series_list
from isojax.runs.outputs import check_output, write_npz

__all__ = ["Model", "Embeddings", "POOLINGS", "embed_texts", "embed_series", "embed_text"]

POOLINGS = (None, "mean", "first", "last")


class Model(NamedTuple):
    """What `isojax.pretrained.load` returns; unpacks as (params, config, tokenizer)."""

    params: tf.Params
    config: tf.Config
    tokenizer: object  # tokenizers.Tokenizer (text), MeanScaleUniformBins (Chronos), or None


class Embeddings(NamedTuple):
    """Hidden states of every layer, one row per real token (pooling=None) or per input (pooled).

    hidden [L + 1, rows, d]; input [rows]: the index of the text or series the row comes from; position
    [rows]: the token's position in its input (pooled: the first/last real token's, -1 for mean); token [rows]:
    the token id (-1 for mean); scale: per-input scale [n] for series (Chronos's mean scaling), else None."""

    hidden: jax.Array
    input: np.ndarray
    position: np.ndarray
    token: np.ndarray
    scale: np.ndarray | None = None


def _select(hidden: np.ndarray, ids: np.ndarray, mask: np.ndarray, pooling) -> tuple:
    """hidden [n, L + 1, T, d] -> (rows [L + 1, rows, d], input, position, token), see `Embeddings`."""
    n = hidden.shape[0]
    if pooling is None:
        inp, pos = np.nonzero(mask)
        return jnp.asarray(hidden[inp, :, pos].transpose(1, 0, 2)), inp, pos, ids[inp, pos]
    inp = np.arange(n)
    if pooling == "mean":  # over the real tokens only
        w = mask[:, None, :, None].astype(hidden.dtype)
        pooled = (hidden * w).sum(2) / w.sum(2)
        return jnp.asarray(pooled.transpose(1, 0, 2)), inp, np.full(n, -1), np.full(n, -1)
    pos = mask.argmax(1) if pooling == "first" else mask.shape[1] - 1 - mask[:, ::-1].argmax(1)
    return jnp.asarray(hidden[inp, :, pos].transpose(1, 0, 2)), inp, pos, ids[inp, pos]


def _check_pooling(pooling):
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def as_model(model: Model | tuple | str | Path) -> Model:
    """A Model, a (params, config, tokenizer) triple, a folder path, or "minilm" -> Model."""
    if isinstance(model, (str, Path)):
        from isojax.pretrained import load
        return load(model)
    if isinstance(model, tuple) and len(model) == 3 and isinstance(model[1], tf.Config):
        return Model(*model)
    raise ValueError(f"model must be a folder, 'minilm' or what isojax.pretrained.load returns, got {type(model)}")


def embed_texts(model: Model | tuple | str | Path, texts: list[str], pooling: str | None = None, max_len: int = 512,
                batch: int = 32) -> Embeddings:
    """Hidden states of every layer for texts, with a text model (BERT family, MiniLM, GPT-2 family).

    model: a folder, "minilm", or `load`'s result; texts: n strings, tokenized with the folder's
    tokenizer.json (special tokens added), truncated to min(max_len, the model's positions), right-padded.
    pooling=None -> hidden [L + 1, tokens, d], a row per real token of every text (input = text index,
    position = token position); "mean" -> [L + 1, n, d], the mean over each text's real tokens; "first" /
    "last" -> its first / last real token. Padding never enters: it is masked out of attention and pooling."""
    _check_pooling(pooling)
    V.positive_int("max_len", max_len)
    texts = bert.check_texts(texts)
    params, config, tok = as_model(model)
    if isinstance(tok, MeanScaleUniformBins):
        raise ValueError("this is a numeric (Chronos) model: use embed_series")
    if tok is None:
        raise ValueError("the model folder has no tokenizer.json: embed_texts needs one")
    ids, mask = bert.encode_with(tok, texts, min(max_len, config.max_len))
    empty = np.nonzero(~mask.any(axis=1))[0]
    if empty.size:
        raise ValueError(f"texts {empty.tolist()} have no tokens")
    return Embeddings(*_select(tf.hidden_states(params, config, ids, mask, batch), ids, mask, pooling))


def embed_series(model: Model | tuple | str | Path, series: npt.ArrayLike | list[npt.ArrayLike],
                 pooling: str | None = None, batch: int = 32) -> Embeddings:
    """Per-layer encoder hidden states of a Chronos model for numeric series.

    series: [n] one series, [b, n] a batch (NaN = missing; left padding is missing values), or a list of 1-D
    series of any lengths; each is cut to its last context_length values and tokenized by mean scaling and
    uniform bins (`MeanScaleUniformBins`), EOS appended when the model uses it. Rows, pooling and the fields
    are as in `embed_texts`: position = the value's index in the (cut) series, the EOS token's = its length;
    missing values are masked out like padding. scale [n]: each series' mean absolute value."""
    _check_pooling(pooling)
    rows = as_series_list(series)
    params, config, tok = as_model(model)
    if not isinstance(tok, MeanScaleUniformBins):
        raise ValueError("embed_series needs a Chronos model (config.json with chronos_config)")
    encoded = [tok.encode(r) for r in rows]
    length = max(len(e[0]) for e in encoded)
    ids = np.full((len(rows), length), tok.pad_token_id, np.int32)
    mask = np.zeros((len(rows), length), bool)
    for i, (row_ids, row_mask, _) in enumerate(encoded):  # right-padded: T5's positions are relative
        ids[i, : len(row_ids)], mask[i, : len(row_ids)] = row_ids, row_mask
    scale = np.array([e[2] for e in encoded], np.float32)
    return Embeddings(*_select(tf.hidden_states(params, config, ids, mask, batch), ids, mask, pooling), scale=scale)


def _read_texts(path: Path) -> list[str]:
    """The non-blank lines of a text file: a regular file (a FIFO or /dev/zero is refused at once) of UTF-8
    within the bound text_mb (`isojax.inputs.read_text`)."""
    from isojax import inputs

    lines = inputs.read_text(path, f"--text {str(path)!r}").splitlines()
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
    model = as_model(model)
    if isinstance(model.tokenizer, MeanScaleUniformBins):
        raise ValueError("a Chronos folder embeds numeric series, not text: give --data (e.g. csv:PATH) instead "
                         "of --text")
    emb = embed_texts(model, texts, pooling=pooling, max_len=max_len)
    hidden, index, position = np.asarray(emb.hidden), emb.input, emb.position
    write_npz(out, hidden=hidden, text_index=np.asarray(index, np.int64),
               token_position=np.asarray(position, np.int64))
    return hidden

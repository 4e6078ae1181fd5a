"""From a numeric source to token sequences: GP draws, real series or the teacher, through a tokenizer.

`build(source, tokenizer, key, ...)` returns a `Corpus`: sequences [n, T] of token ids for training, the held
out (context, target) series for forecasting, and the tokenizer. Sources: "teacher" (the values of sequences
sampled from one fixed log-linear teacher, a numeric series with a known next-value law), "gp:<kernel>" (a
single kernel such as gp:rbf_0.1, a KernelSynth dataset such as gp:ks_000, or a composition such as
gp:rbf_1+seasonality_24: `isojax.data.gp`), "real:<name>", and your own series from a file:
"csv:PATH[:COLUMN]" or "npy:PATH" (`from_series` takes them as arrays). All become value series first, so
every source is tokenized, split by time and forecast the same way. The MASK token of the encoder objective
is id tokenizer.vocab (so models use vocab + 1).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from isojax.data import files, gp, real, teacher, tokens

__all__ = ["Corpus", "Tokenizer", "TEACHER_KEY", "make_tokenizer", "tokenizer_spec", "tokenizer_from_spec", "build",
           "from_series", "source_series"]

# the two numeric tokenizers a corpus can use
Tokenizer = tokens.BinTokenizer | tokens.DigitTokenizer


@dataclasses.dataclass
class Corpus:
    """Training windows [n, T] of token ids, held-out value series (contexts, targets) and the tokenizer."""

    sequences: np.ndarray  # [n, T] token ids for training
    contexts: list[np.ndarray]  # held-out series: the input part (values)
    targets: list[np.ndarray]  # and the horizon that follows
    tokenizer: Tokenizer
    vocab: int  # tokenizer vocab + 1 (MASK)
    series: list[np.ndarray] = dataclasses.field(default_factory=list)  # every whole value series
    train_ids: list[np.ndarray] = dataclasses.field(default_factory=list)  # token ids of each training part


def make_tokenizer(name: str) -> Tokenizer:
    """The study's tokenizer by name: "bins" (64 bins on [-5, 5]) or "digits" (3 digits, precision 1)."""
    if name == "bins":
        return tokens.BinTokenizer(bins=64, low=-5.0, high=5.0)
    if name == "digits":
        return tokens.DigitTokenizer(precision=1, digits=3)
    raise ValueError(f"tokenizer must be 'bins' or 'digits', got {name!r}")


def tokenizer_spec(tok: Tokenizer) -> dict:
    """A tokenizer as plain data: its name ("bins" or "digits") and parameters (what a checkpoint records)."""
    for name, kind in (("bins", tokens.BinTokenizer), ("digits", tokens.DigitTokenizer)):
        if isinstance(tok, kind):
            return {"name": name, **dataclasses.asdict(tok)}
    raise ValueError(f"tokenizer must be a BinTokenizer or DigitTokenizer, got {type(tok).__name__}")


def tokenizer_from_spec(spec: dict) -> Tokenizer:
    """The tokenizer that `tokenizer_spec` described."""
    kinds = {"bins": tokens.BinTokenizer, "digits": tokens.DigitTokenizer}
    if not isinstance(spec, dict) or spec.get("name") not in kinds:
        raise ValueError(f"tokenizer spec must be a dict with name 'bins' or 'digits', got {spec!r}")
    try:
        return kinds[spec["name"]](**{k: v for k, v in spec.items() if k != "name"})
    except TypeError as err:
        raise ValueError(f"tokenizer spec {spec!r} does not fit the {spec['name']} tokenizer: {err}") from None


# The "teacher" source is one distribution, whatever the data key: its law is drawn from this fixed key.
TEACHER_KEY = 20505


def _series(source: str, key, count: int, length: int) -> list[np.ndarray]:
    if source == "teacher":
        t = teacher.make_teacher(jax.random.PRNGKey(TEACHER_KEY))
        return list(np.asarray(teacher.sample_series(key, t, count, length), np.float64))
    if source.startswith("gp:"):
        # one eigen-decomposition per kernel (cached), each series as gp.sample draws it on split(key, count)[i]
        return list(np.asarray(gp.sample_many(key, source[3:], count, length), np.float64))
    if source.startswith("real:"):
        return real.load(source[5:])
    raise ValueError(f"source must be 'teacher', 'gp:<kernel>', 'real:<name>', 'csv:PATH[:COLUMN]' or 'npy:PATH', "
                     f"got {source!r}")


def source_series(source: str, key: jax.Array, count: int = 32, length: int = 564) -> list[np.ndarray]:
    """The value series of `source`, before any tokenizer (what `build` tokenizes): a file source's series
    (csv:PATH[:COLUMN], npy:PATH; checked as `from_series` checks them), a real dataset's, or `count` draws of
    `length` values from "teacher" or "gp:<kernel>" with `key`. -> list of 1-D float arrays"""
    if files.is_file_source(source):
        series, names = files.load_series(source)
        return files.check_series(series, names)
    return _series(source, key, count, length)


def _token_windows(ids: np.ndarray, length: int, stride: int) -> list[np.ndarray]:
    return [ids[s:s + length] for s in range(0, len(ids) - length + 1, stride)]


def _ids(tok, x: np.ndarray) -> np.ndarray:
    return tok.encode(x)[0]  # both tokenizers return the ids first


def _assemble(series: list[np.ndarray], tok, seq_len: int, horizon: int, test_fraction: float, what: str) -> Corpus:
    """Windows of seq_len tokens from the first 1 - test_fraction of every series; the rest is held out."""
    train_part, test_part = real.split_by_time(series, test_fraction)
    windows, contexts, targets, train_ids = [], [], [], []
    for tr, te in zip(train_part, test_part):
        ids = _ids(tok, tr)
        train_ids.append(ids)
        # a stride that is no multiple of a value's token count (4 or 5 for digits): otherwise every window starts
        # at the same digit, and a model with absolute positions learns the digit's place from the position
        # instead of the tokens, and emits nonsense once a forecast's window slides to another phase
        windows += _token_windows(ids, seq_len, max(seq_len // 4, 1) + 1)
        full = np.concatenate([tr, te])
        if len(te) >= horizon:
            cut = len(tr)
            contexts.append(full[max(0, cut - 4 * seq_len):cut])
            targets.append(full[cut:cut + horizon])
    if not windows:
        raise ValueError(f"{what} is too short for seq_len={seq_len}")
    return Corpus(np.stack(windows).astype(np.int32), contexts, targets, tok, tok.vocab + 1, list(series), train_ids)


def _tokenizer(tokenizer):
    return make_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer


def from_series(series: list, tokenizer: str | Tokenizer, seq_len: int = 64, horizon: int = 16,
                test_fraction: float = 0.2, names: list[str] | None = None) -> Corpus:
    """A corpus from your own series: a list of 1-D arrays [n_i] (any lengths), tokenized by `tokenizer`
    ("bins", "digits" or a tokenizer object). Training windows of seq_len tokens come from the first
    1 - test_fraction of every series; the rest is held out, forecast `horizon` values ahead where it is long
    enough. A series that is not 1-D, not finite, constant, or whose training part is shorter than one window
    is a ValueError naming it (`names[i]`, default "series[i]")."""
    from isojax._validate import positive_int
    seq_len, horizon = positive_int("seq_len", seq_len, 2), positive_int("horizon", horizon)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    tok = _tokenizer(tokenizer)
    series = files.check_series(series, names)
    names = list(names) if names is not None else [f"series[{i}]" for i in range(len(series))]
    for s, part, name in zip(series, real.split_by_time(series, test_fraction)[0], names):
        got = len(_ids(tok, part)) if len(part) else 0
        if got < seq_len:
            raise ValueError(f"{name} is too short: its first {1 - test_fraction:.0%} ({len(part)} of {len(s)} "
                             f"values) gives {got} tokens, fewer than seq_len={seq_len}")
    return _assemble(series, tok, seq_len, horizon, test_fraction, "series")


def build(source: str, tokenizer: str | Tokenizer, key: jax.Array, seq_len: int = 64, count: int = 32,
          length: int = 564, horizon: int = 16, test_fraction: float = 0.2, drop_bad_rows: bool = False) -> Corpus:
    """Token sequences [n, seq_len] for training, and held-out (context, target) pairs for forecasting, from
    `source` ("teacher", "gp:<kernel>", "real:<name>", ...) tokenized by `tokenizer` ("bins", "digits" or a
    tokenizer object); key: a PRNG key for the draws (count series of `length` values). A file source
    (csv:PATH[:COLUMN], npy:PATH) goes through `from_series` and its checks (drop_bad_rows: see
    `files.load_series`)."""
    if files.is_file_source(source):
        series, names = files.load_series(source, drop_bad_rows)
        return from_series(series, tokenizer, seq_len, horizon, test_fraction, names)
    tok = _tokenizer(tokenizer)
    return _assemble(_series(source, key, count, length), tok, seq_len, horizon, test_fraction, f"source {source!r}")

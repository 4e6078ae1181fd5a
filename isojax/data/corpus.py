"""From a numeric source to token sequences: GP draws, real series or the teacher, through a tokenizer.

`build(source, tokenizer, key, ...)` returns a `Corpus`: sequences [n, T] of token ids for training, the held
out (context, target) series for forecasting, and the tokenizer. Sources: "teacher" (the values of sequences
sampled from one fixed log-linear teacher, a numeric series with a known next-value law), "gp:<kernel>",
"real:<name>". All three become value series first, so every source is tokenized, split by time and forecast
the same way. The MASK token of the encoder objective is id tokenizer.vocab (so models use vocab + 1).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from isojax.data import gp, real, teacher, tokens


@dataclasses.dataclass
class Corpus:
    sequences: np.ndarray  # [n, T] token ids for training
    contexts: list[np.ndarray]  # held-out series: the input part (values)
    targets: list[np.ndarray]  # and the horizon that follows
    tokenizer: object
    vocab: int  # tokenizer vocab + 1 (MASK)


def make_tokenizer(name: str):
    if name == "bins":
        return tokens.BinTokenizer(bins=64, low=-5.0, high=5.0)
    if name == "digits":
        return tokens.DigitTokenizer(precision=1, digits=3)
    raise ValueError(f"tokenizer must be 'bins' or 'digits', got {name!r}")


# The "teacher" source is one distribution, whatever the data key: its law is drawn from this fixed key.
TEACHER_KEY = 20505


def _series(source: str, key, count: int, length: int) -> list[np.ndarray]:
    if source == "teacher":
        t = teacher.make_teacher(jax.random.PRNGKey(TEACHER_KEY))
        return list(np.asarray(teacher.sample_series(key, t, count, length), np.float64))
    if source.startswith("gp:"):
        keys = jax.random.split(key, count)
        return [np.asarray(gp.sample(k, source[3:], length), np.float64) for k in keys]
    if source.startswith("real:"):
        return real.load(source[5:])
    raise ValueError(f"source must be 'teacher', 'gp:<kernel>' or 'real:<name>', got {source!r}")


def _token_windows(ids: np.ndarray, length: int, stride: int) -> list[np.ndarray]:
    return [ids[s:s + length] for s in range(0, len(ids) - length + 1, stride)]


def build(source: str, tokenizer: str, key, seq_len: int = 64, count: int = 32, length: int = 564,
          horizon: int = 16, test_fraction: float = 0.2) -> Corpus:
    """Token sequences of seq_len for training, and held-out (context, target) pairs for forecasting."""
    tok = make_tokenizer(tokenizer)
    series = _series(source, key, count, length)
    train_part, test_part = real.split_by_time(series, test_fraction)
    windows, contexts, targets = [], [], []
    for tr, te in zip(train_part, test_part):
        if tokenizer == "bins":
            ids, _, _ = tok.encode(tr)
        else:
            ids, _ = tok.encode(tr)
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
        raise ValueError(f"source {source!r} is too short for seq_len={seq_len}")
    return Corpus(np.stack(windows).astype(np.int32), contexts, targets, tok, tok.vocab + 1)

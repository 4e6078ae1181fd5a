"""Numeric tokenizers, both invertible, each with the value v_w of every token as an array.

- `DigitTokenizer` (LLMTime style): scale by a percentile of |x|, fixed precision, one token per digit, a sign
  token, a value separator; decoding round-trips within half of the last digit.
- `BinTokenizer` (Chronos style): mean scaling, uniform bins on [low, high], special PAD/EOS tokens; decoding
  gives bin centres, within half a bin of the input, except for clipped values, which are counted.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["DigitTokenizer", "BinTokenizer"]


def _series(x, name: str = "x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D series, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has non-finite values (shape {x.shape})")
    return x


@dataclasses.dataclass(frozen=True)
class DigitTokenizer:
    """LLMTime-style digits: tokens 0-9 are digits, then '-' (sign) and ',' (value separator)."""

    precision: int = 2  # digits after the decimal point
    digits: int = 4  # total digits per value (leading zeros kept, fixed width)
    percentile: float = 90.0  # the scale maps this percentile of |x| to 10^(digits - precision - 1)

    MINUS = 10
    SEP = 11

    @property
    def vocab(self) -> int:
        return 12

    @property
    def values(self) -> np.ndarray:
        """v_w of every token: the digit's value for 0-9, NaN for the sign and separator."""
        return np.concatenate([np.arange(10.0), [np.nan, np.nan]])

    def scale_for(self, x) -> float:
        x = _series(x)
        q = np.percentile(np.abs(x), self.percentile)
        return float(q / 10 ** (self.digits - self.precision - 1)) if q > 0 else 1.0

    def encode(self, x, scale: float | None = None) -> tuple[np.ndarray, float]:
        """Token ids of the series and the scale used. Values beyond the fixed width are clipped."""
        x = _series(x)
        scale = self.scale_for(x) if scale is None else float(scale)
        ints = np.round(np.abs(x) / scale * 10**self.precision).astype(np.int64)
        ints = np.minimum(ints, 10**self.digits - 1)
        out = []
        for value, negative in zip(ints, x < 0):
            if negative and value > 0:
                out.append(self.MINUS)
            out.extend(int(c) for c in str(value).zfill(self.digits))
            out.append(self.SEP)
        return np.asarray(out, dtype=np.int32), scale

    def grammar(self) -> tuple[np.ndarray, np.ndarray]:
        """The fixed-width value format as a finite-state rule for sampling: (allowed [S, vocab] bool,
        next_state [S, vocab] int). State j < digits: j digits of the value written; state `digits`: all
        written, only ',' may follow; state digits + 1: after '-'. State 0 is a value boundary."""
        n = self.digits + 2
        allowed = np.zeros((n, self.vocab), bool)
        nxt = np.zeros((n, self.vocab), np.int32)
        for j in range(self.digits):
            allowed[j, :10], nxt[j, :10] = True, j + 1
        allowed[0, self.MINUS], nxt[0, self.MINUS] = True, self.digits + 1
        allowed[self.digits + 1, :10], nxt[self.digits + 1, :10] = True, 1
        allowed[self.digits, self.SEP], nxt[self.digits, self.SEP] = True, 0
        return allowed, nxt

    def to_text(self, x, scale: float | None = None) -> str:
        """The series as an LLMTime-style string ("0123,-0045,"), for a language model's own tokenizer."""
        return "".join("0123456789-,"[t] for t in self.encode(x, scale)[0])

    def decode(self, tokens, scale: float) -> np.ndarray:
        """The series back from token ids (ignores a trailing incomplete value)."""
        values, digits, negative = [], [], False
        for t in np.asarray(tokens).tolist():
            if t == self.MINUS:
                negative = True
            elif t == self.SEP:
                if digits:
                    v = int("".join(map(str, digits))) / 10**self.precision * scale
                    values.append(-v if negative else v)
                digits, negative = [], False
            elif 0 <= t <= 9:
                digits.append(t)
        return np.asarray(values)


@dataclasses.dataclass(frozen=True)
class BinTokenizer:
    """Chronos-style: x / mean|context| then uniform bins on [low, high]; ids 0, 1 are PAD and EOS."""

    bins: int = 64
    low: float = -5.0
    high: float = 5.0

    PAD = 0
    EOS = 1
    SPECIAL = 2

    def __post_init__(self):
        if self.bins < 2 or not self.low < self.high:
            raise ValueError(f"need bins >= 2 and low < high, got bins={self.bins}, low={self.low}, high={self.high}")

    @property
    def vocab(self) -> int:
        return self.bins + self.SPECIAL

    @property
    def centres(self) -> np.ndarray:
        width = (self.high - self.low) / self.bins
        return self.low + width * (np.arange(self.bins) + 0.5)

    @property
    def values(self) -> np.ndarray:
        """v_w of every token (in scaled units): NaN for PAD/EOS, the bin centre otherwise."""
        return np.concatenate([[np.nan, np.nan], self.centres])

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / self.bins / 2

    def grammar(self) -> tuple[np.ndarray, np.ndarray]:
        """One state: any bin token may follow, PAD and EOS may not. (allowed [1, vocab], next_state [1, vocab])"""
        allowed = np.arange(self.vocab)[None, :] >= self.SPECIAL
        return allowed, np.zeros((1, self.vocab), np.int32)

    def scale_for(self, x) -> float:
        m = float(np.mean(np.abs(_series(x))))
        return m if m > 0 else 1.0

    def encode(self, x, scale: float | None = None) -> tuple[np.ndarray, float, int]:
        """(token ids, scale, number of clipped values)."""
        x = _series(x)
        scale = self.scale_for(x) if scale is None else float(scale)
        z = x / scale
        clipped = int(np.sum((z < self.low) | (z > self.high)))
        idx = np.floor((np.clip(z, self.low, self.high) - self.low) / (self.high - self.low) * self.bins)
        return (np.minimum(idx, self.bins - 1).astype(np.int32) + self.SPECIAL), scale, clipped

    def decode(self, tokens, scale: float) -> np.ndarray:
        tokens = np.asarray(tokens)
        tokens = tokens[tokens >= self.SPECIAL]
        return self.centres[tokens - self.SPECIAL] * scale

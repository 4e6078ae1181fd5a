"""Numeric tokenizers, both invertible, each with the value v_w of every token as an array.

- `DigitTokenizer` (LLMTime style): scale by a percentile of |x|, fixed precision, one token per digit, a sign
  token, a value separator; decoding round-trips within half of the last digit.
- `BinTokenizer` (Chronos style): mean scaling, uniform bins on [low, high], special PAD/EOS tokens; decoding
  gives bin centres, within half a bin of the input, except for clipped values, which are counted.

Every finite series has a defined scale: a positive normal float64, never 0 or subnormal. A scale that would
fall below the smallest normal float64 (a series of subnormals such as 5e-324, or of zeros) is raised to it
(`TINY`), so such values encode as 0 within the round-trip bound; the mean of huge values is computed without
overflow. A series whose decoded values would overflow float64 (|x| near 1.8e308: the largest token times the
scale is not finite) is refused with a ValueError that says so, as is a scale given that is not a positive
finite number. Values are never cast to integers before they are clipped to the fixed width.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["TINY", "DigitTokenizer", "BinTokenizer"]

TINY = float(np.finfo(np.float64).tiny)  # the smallest positive normal float64: the least scale


def _series(x, name: str = "x") -> np.ndarray:
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} holds complex values (shape {arr.shape}); only real numbers can be tokenized")
    x = np.asarray(arr, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D series, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has non-finite values (shape {x.shape})")
    return x


def _given_scale(scale) -> float:
    s = float(scale)
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return s


def _decodable(x: np.ndarray, scale: float, largest: float, what: str) -> None:
    """Refuse a scale at which the largest token would decode to inf (values near the float64 limit)."""
    if not np.isfinite(scale * largest):
        raise ValueError(f"x has values up to {float(np.max(np.abs(x))):.3g}: too large to tokenize with {what} "
                         f"(the largest token decodes to {largest:g} × scale {scale:.3g}, beyond float64); rescale "
                         "the series")


@dataclasses.dataclass(frozen=True)
class DigitTokenizer:
    """LLMTime-style digits: tokens 0-9 are digits, then '-' (sign) and ',' (value separator)."""

    precision: int = 2  # digits after the decimal point
    digits: int = 4  # total digits per value (leading zeros kept, fixed width)
    percentile: float = 90.0  # the scale maps this percentile of |x| to 10^(digits - precision - 1)

    MINUS = 10
    SEP = 11

    def __post_init__(self):
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (self.precision, self.digits))
        if not ok or not 0 <= self.precision <= self.digits or not 1 <= self.digits <= 18:
            raise ValueError(f"need integers 0 <= precision <= digits <= 18 (int64 holds 18 digits), got "
                             f"precision={self.precision!r}, digits={self.digits!r}")
        if not (isinstance(self.percentile, (int, float)) and 0 < self.percentile <= 100):
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile!r}")

    @property
    def vocab(self) -> int:
        return 12

    @property
    def largest(self) -> float:
        """The largest value a token sequence encodes, in units of the scale: (10^digits - 1) / 10^precision."""
        return (10**self.digits - 1) / 10**self.precision

    @property
    def values(self) -> np.ndarray:
        """v_w of every token: the digit's value for 0-9, NaN for the sign and separator."""
        return np.concatenate([np.arange(10.0), [np.nan, np.nan]])

    def scale_for(self, x) -> float:
        """The percentile of |x| over 10^(digits - precision - 1), at least `TINY` (1.0 for an all-zero series)."""
        x = _series(x)
        q = float(np.percentile(np.abs(x), self.percentile))
        if q == 0:
            return 1.0
        return max(q / 10.0 ** (self.digits - self.precision - 1), TINY)

    def encode(self, x, scale: float | None = None) -> tuple[np.ndarray, float]:
        """Token ids of the series and the scale used. Values beyond the fixed width are clipped."""
        x = _series(x)
        scale = self.scale_for(x) if scale is None else _given_scale(scale)
        _decodable(x, scale, self.largest, "the digit tokenizer")
        with np.errstate(over="ignore"):  # |x| / scale may overflow to inf: clipped to the width below
            units = np.abs(x) / scale * 10.0**self.precision
        ints = np.round(np.minimum(units, 10**self.digits - 1)).astype(np.int64)
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
        ok = isinstance(self.bins, int) and not isinstance(self.bins, bool) and 2 <= self.bins <= 2**20
        if not ok or not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"need 2 <= bins <= 2^20 and finite low < high, got bins={self.bins!r}, low={self.low!r}, "
                             f"high={self.high!r}")

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
        """mean |x| (computed as max|x| · mean(|x| / max|x|), which cannot overflow), at least `TINY` (1.0 for
        an all-zero series)."""
        a = np.abs(_series(x))
        top = float(a.max())
        if top == 0:
            return 1.0
        return max(top * float(np.mean(a / top)), TINY)

    def encode(self, x, scale: float | None = None) -> tuple[np.ndarray, float, int]:
        """(token ids, scale, number of clipped values)."""
        x = _series(x)
        scale = self.scale_for(x) if scale is None else _given_scale(scale)
        _decodable(x, scale, max(abs(self.low), abs(self.high)), "the bin tokenizer")
        with np.errstate(over="ignore"):  # x / scale may overflow to ±inf: clipped (and counted) below
            z = x / scale
        clipped = int(np.sum((z < self.low) | (z > self.high)))
        idx = np.floor((np.clip(z, self.low, self.high) - self.low) / (self.high - self.low) * self.bins)
        return (np.minimum(idx, self.bins - 1).astype(np.int32) + self.SPECIAL), scale, clipped

    def decode(self, tokens, scale: float) -> np.ndarray:
        tokens = np.asarray(tokens)
        tokens = tokens[tokens >= self.SPECIAL]
        return self.centres[tokens - self.SPECIAL] * scale

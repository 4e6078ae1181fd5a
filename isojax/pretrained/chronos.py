"""Chronos's numeric tokenizer: mean scaling, then uniform bins (MeanScaleUniformBins), from `chronos_config`.

A series is cut to its last `context_length` values and divided by its mean absolute observed value (1 when
that is not positive); each scaled value x gets the bin of the `n_tokens - n_special_tokens - 1` uniform
centres on [low_limit, high_limit] whose edges (the midpoints between centres) bracket it, shifted by
`n_special_tokens`; missing values (NaN) become the pad token and are masked out; with `use_eos_token` an
EOS token (real, attended to) ends every series. The arithmetic is float32 as in the reference, so the
token ids agree exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from isojax.pretrained import _files as F

__all__ = ["MeanScaleUniformBins", "as_series_list"]


@dataclasses.dataclass(frozen=True)
class MeanScaleUniformBins:
    """The Chronos tokenizer's settings (the `chronos_config` of a Chronos config.json)."""

    n_tokens: int
    n_special_tokens: int
    low_limit: float
    high_limit: float
    context_length: int
    pad_token_id: int = 0
    eos_token_id: int = 1
    use_eos_token: bool = True

    def __post_init__(self):
        if not 0 <= self.pad_token_id < self.n_special_tokens or not 0 <= self.eos_token_id < self.n_special_tokens:
            raise ValueError(f"chronos_config: pad_token_id={self.pad_token_id} and eos_token_id={self.eos_token_id}"
                             f" must be in [0, n_special_tokens={self.n_special_tokens})")
        if self.n_tokens - self.n_special_tokens - 1 < 2 or not self.low_limit < self.high_limit:
            raise ValueError(f"chronos_config: need n_tokens - n_special_tokens - 1 >= 2 bins and low_limit < "
                             f"high_limit, got n_tokens={self.n_tokens}, n_special_tokens={self.n_special_tokens}, "
                             f"limits [{self.low_limit}, {self.high_limit}]")
        if self.context_length < 1:
            raise ValueError(f"chronos_config: context_length={self.context_length} must be >= 1")

    @classmethod
    def from_chronos_config(cls, cc: dict) -> MeanScaleUniformBins:
        where = "config.json chronos_config"
        if cc.get("tokenizer_class", "MeanScaleUniformBins") != "MeanScaleUniformBins":
            raise ValueError(f"{where}: tokenizer_class {cc['tokenizer_class']!r} is not supported "
                             "(supported: 'MeanScaleUniformBins')")
        if cc.get("model_type", "seq2seq") != "seq2seq":
            raise ValueError(f"{where}: model_type {cc['model_type']!r} is not supported (supported: 'seq2seq')")
        kw = F.key(cc, "tokenizer_kwargs", where=where)
        return cls(n_tokens=F.key(cc, "n_tokens", where=where),
                   n_special_tokens=F.key(cc, "n_special_tokens", where=where),
                   low_limit=F.key(kw, "low_limit", where=where), high_limit=F.key(kw, "high_limit", where=where),
                   context_length=F.key(cc, "context_length", where=where), pad_token_id=cc.get("pad_token_id", 0),
                   eos_token_id=cc.get("eos_token_id", 1), use_eos_token=cc.get("use_eos_token", True))

    @property
    def max_len(self) -> int:
        """The longest token sequence: context_length values plus the EOS token."""
        return self.context_length + int(self.use_eos_token)

    def centers(self) -> np.ndarray:
        """The bin centres [n_tokens - n_special_tokens - 1], float32, as torch.linspace rounds them (a float32
        step, each point start + i·step, or end - (n-1-i)·step in the upper half, rounded once)."""
        n = self.n_tokens - self.n_special_tokens - 1
        start, end = np.float32(self.low_limit), np.float32(self.high_limit)
        step = np.float64(np.float32((end - start) / np.float32(n - 1)))
        i = np.arange(n, dtype=np.float64)
        return np.where(i < n // 2, start + step * i, end - step * (n - 1 - i)).astype(np.float32)

    def boundaries(self) -> np.ndarray:
        """Bin edges [n_centres + 1]: ±1e20 outside, midpoints between centres inside (float32)."""
        c = self.centers()
        return np.concatenate([[np.float32(-1e20)], (c[1:] + c[:-1]) / np.float32(2), [np.float32(1e20)]])

    def encode(self, series: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.float32]:
        """One series [n] (NaN = missing) -> (ids [m], mask [m], scale), m = min(n, context_length) + EOS."""
        x = np.asarray(series, np.float32)[-self.context_length:]
        observed = ~np.isnan(x)
        # the sum in float64, rounded once: machine independent; the reference's float32 sum may differ from
        # it in the last bit (its order depends on the CPU's vector width), which almost never moves a bin
        scale = np.float32(np.float32(np.abs(x[observed]).sum(dtype=np.float64)) / np.float32(observed.sum()))
        if not scale > 0:  # all missing (0/0) or all zero
            scale = np.float32(1.0)
        ids = np.searchsorted(self.boundaries(), x / scale, side="right") + self.n_special_tokens
        ids = np.clip(ids, 0, self.n_tokens - 1)
        ids[~observed] = self.pad_token_id
        if self.use_eos_token:
            ids, observed = np.append(ids, self.eos_token_id), np.append(observed, True)
        return ids.astype(np.int32), observed, scale

    def decode(self, ids, scale) -> np.ndarray:
        """Token ids [...] -> values [...]: the bin centre times the scale (the reference's output rule)."""
        c = self.centers()
        return c[np.clip(np.asarray(ids) - self.n_special_tokens - 1, 0, len(c) - 1)] * np.float32(scale)


def as_series_list(series: npt.ArrayLike | list[npt.ArrayLike]) -> list[np.ndarray]:
    """One series [n], a batch [b, n] (NaN = missing, e.g. left padding) or a list of 1-D series -> list of
    float arrays; infinite values, empty series and series with nothing observed are ValueErrors."""
    if isinstance(series, (list, tuple)) and series and all(np.ndim(s) == 1 for s in series):
        rows = [np.asarray(s, np.float64) for s in series]
    else:
        arr = np.asarray(series, np.float64) if not isinstance(series, (list, tuple)) or series else np.zeros((0,))
        if arr.ndim not in (1, 2):
            raise ValueError(f"series must be [n], [b, n] or a list of 1-D series, got shape {arr.shape}")
        rows = [arr] if arr.ndim == 1 else list(arr)
    if not rows:
        raise ValueError("series is empty")
    for i, r in enumerate(rows):
        if r.size == 0 or np.isinf(r).any() or np.isnan(r).all():
            raise ValueError(f"series[{i}] (shape {r.shape}) must be non-empty, without ±inf, with at least one "
                             "observed (non-NaN) value")
    return rows

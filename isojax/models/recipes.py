"""The study's architectures by name: one table, used by the CLI and every experiment.

Each recipe fixes the width, heads, depth and direction of a `transformer.Config`; the feed-forward width is
2 × d_model and the vocabulary and window length come from the data (`model_config`).
"""

from __future__ import annotations

from isojax import _validate as V
from isojax import transformer as tf

__all__ = ["ARCHITECTURES", "model_config"]

ARCHITECTURES: dict[str, dict] = {
    "decoder": dict(d_model=64, heads=4, layers=2, causal=True),
    "encoder": dict(d_model=64, heads=4, layers=2, causal=False),
    "decoder-deep-wide": dict(d_model=96, heads=4, layers=4, causal=True),
}


def model_config(arch: str, vocab: int, seq_len: int, **overrides: int | None) -> tf.Config:
    """The `transformer.Config` of architecture `arch` (a key of ARCHITECTURES) for a vocabulary of `vocab`
    tokens (the tokenizer's plus the MASK) and windows of `seq_len` tokens; `overrides` (d_model, heads,
    layers; None keeps the recipe's) replace the recipe's, and the feed-forward width follows d_model
    (2 × d_model)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    unknown = set(overrides) - {"d_model", "heads", "layers"}
    if unknown:
        raise ValueError(f"only d_model, heads and layers can be overridden, got {sorted(unknown)}")
    spec = {**ARCHITECTURES[arch], **{k: V.positive_int(k, v) for k, v in overrides.items()}}
    return tf.Config(vocab=vocab, mlp=2 * spec["d_model"], max_len=V.positive_int("seq_len", seq_len, 2), **spec)

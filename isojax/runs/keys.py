"""Stable names for runs: PRNG keys derived from a run's name, and short digests of configurations.

Both must be the same in every process and on every machine, so neither uses Python's `hash` (salted per
process for strings).
"""

from __future__ import annotations

import hashlib
import json
import zlib

import jax

__all__ = ["digest", "name_to_int", "named_key"]


def digest(obj: object) -> str:
    """A 16-hex-digit SHA-256 digest of a JSON-serialisable object (keys sorted; other objects by `str`)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def name_to_int(name: str, modulus: int = 2**31) -> int:
    """A stable integer in [0, modulus) for a name: its CRC-32 modulo `modulus`, for `jax.random.fold_in`."""
    return zlib.crc32(name.encode()) % modulus


def named_key(base: jax.Array, name: str) -> jax.Array:
    """fold_in(base, name_to_int(name)): a key per named run, so adding runs never moves the others' keys."""
    return jax.random.fold_in(base, name_to_int(name))

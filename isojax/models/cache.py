"""Train or load: every run of an ensemble cached as its own checkpoint, keyed by the run's digest.

A `RunSpec` is everything that determines a trained model: its key, token windows, architecture, schedule,
penalty and weight, and the engine and device layout that train it (`training.layout_tag`, since they
round differently). `train_or_load` loads the runs whose checkpoint is in the cache (verified first: a corrupt or
foreign entry is named in a warning and retrained, never trusted), trains the others together with
`training.train_many` (one ensemble per shared architecture, schedule, penalty and window length), and writes
each as `<cache>/<digest>.safetensors` with its losses beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from isojax import _validate as V
from isojax import inputs
from isojax import transformer as tf
from isojax.models import checkpoint, training
from isojax.runs import keys

__all__ = ["RunSpec", "run_digest", "train_or_load"]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """A run to train or load. sequences: [n, T] token ids; meta: JSON-serialisable facts the checkpoint records
    (tokenizer spec, data, arch, seed, ...)."""

    key: jax.Array
    sequences: np.ndarray
    config: tf.Config
    tcfg: training.TrainConfig
    penalty: Callable | None = None
    penalty_weight: float = 0.0
    meta: dict = dataclasses.field(default_factory=dict)


def _key_data(key: jax.Array) -> list:
    raw = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.asarray(raw).tolist()


def _penalty_name(penalty: Callable | None) -> str | None:
    return None if penalty is None else f"{getattr(penalty, '__module__', '?')}.{getattr(penalty, '__qualname__', '?')}"


def run_digest(spec: RunSpec, engine: training.Engine) -> str:
    """16 hex digits naming the trained model: the key, the training tokens themselves (so a change in how a
    corpus is built never reuses a stale model), the architecture, schedule, penalty and weight, the float dtype
    and the engine."""
    tokens = np.ascontiguousarray(np.asarray(spec.sequences, np.int32))
    return keys.digest({"key": _key_data(spec.key), "config": dataclasses.asdict(spec.config),
                        "train": dataclasses.asdict(spec.tcfg), "penalty": _penalty_name(spec.penalty),
                        "penalty_weight": float(spec.penalty_weight), "dtype": str(V.float_dtype()),
                        "tokens": hashlib.sha256(tokens.tobytes()).hexdigest()[:16],
                        "engine": training.layout_tag(engine)})


def _losses_path(path: Path) -> Path:
    return path.with_suffix(".losses.npy")


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _load_cached(path: Path, run: str) -> tuple[tf.Params, np.ndarray] | None:
    """(params, losses) of the cache entry at path for run, or None when there is none or it cannot be used:
    a corrupt or foreign checkpoint (checksum, metadata of another run) or a missing or altered losses file is
    named in a warning and retrained, never trusted."""
    if not path.exists():
        return None
    try:
        params, _, meta = checkpoint.load(path)
        if meta.get("run") != run:
            raise ValueError(f"it was written for run {meta.get('run')!r}, not {run!r}")
        losses_file = _losses_path(path)
        if not losses_file.exists():
            raise ValueError(f"its losses file {str(losses_file)!r} is missing")
        losses = _read_losses(losses_file)
        if _sha256(losses) != meta.get("losses_sha256"):
            raise ValueError(f"its losses file {str(losses_file)!r} does not match the checkpoint's checksum")
    except ValueError as err:
        warnings.warn(f"model cache entry {str(path)!r} is unusable ({err}); retraining it", stacklevel=3)
        return None
    return params, losses


def _read_losses(path: Path) -> np.ndarray:
    """A losses file [steps]: a regular file whose header declares no more than the file holds (a hostile
    header cannot make it allocate), read without pickle. ValueError otherwise."""
    label = repr(str(path))
    try:
        with inputs.open_regular(path, label) as f:
            head = inputs.npy_header(f, label)
            if head.offset + head.nbytes > os.fstat(f.fileno()).st_size:
                raise ValueError(f"{label} is truncated (it declares shape {head.shape})")
            f.seek(0)
            return np.load(f, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"its losses file {label} cannot be read: {err}") from None


def _save(path: Path, run: str, spec: RunSpec, engine: training.Engine, result: training.Trained) -> None:
    meta = {"steps": spec.tcfg.steps, "seed": _key_data(spec.key), **spec.meta, "run": run,
            "engine": training.layout_tag(engine),
            "train": dataclasses.asdict(spec.tcfg), "penalty": _penalty_name(spec.penalty),
            "penalty_weight": float(spec.penalty_weight), "losses_sha256": _sha256(result.losses)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(_losses_path(path), result.losses)  # first, so a model file implies its losses
    checkpoint.save(path, result.params, spec.config, meta)


def _group_key(spec: RunSpec) -> tuple:
    return spec.config, spec.tcfg, spec.penalty, np.shape(spec.sequences)[1]


def train_or_load(specs: Sequence[RunSpec], cache: Path | str | None = None, engine: training.Engine | None = None,
                  progress: bool = False) -> list[training.Trained]:
    """One `training.Trained` per spec, in order: loaded from `cache` where an identical run was trained before,
    trained together with the other missing runs otherwise (and then cached). cache None: train everything,
    write nothing. A cached run's `saved` is empty (checkpoints along the way are not cached)."""
    engine = engine or training.default_engine()
    digests = [run_digest(s, engine) for s in specs]
    paths = [None if cache is None else Path(cache) / f"{d}.safetensors" for d in digests]
    out: list[training.Trained | None] = [None] * len(specs)
    for i, path in enumerate(paths):
        cached = _load_cached(path, digests[i]) if path is not None else None
        if cached is not None:
            out[i] = training.Trained(cached[0], cached[1], {})
    groups: dict[tuple, list[int]] = {}
    for i, spec in enumerate(specs):
        if out[i] is None:
            groups.setdefault(_group_key(spec), []).append(i)
    for (config, tcfg, penalty, _), members in groups.items():
        runs = [training.Run(specs[i].key, np.asarray(specs[i].sequences), specs[i].penalty_weight) for i in members]
        for i, result in zip(members, training.train_many(runs, config, tcfg, penalty, engine, progress=progress)):
            out[i] = result
            if paths[i] is not None:
                _save(paths[i], digests[i], specs[i], engine, result)
    return out

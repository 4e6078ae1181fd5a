"""Train or load: every run of an ensemble cached as its own checkpoint, keyed by the run's digest.

A `RunSpec` is everything that determines a trained model: its key, token windows, architecture, schedule,
penalty and weight, and the engine and device layout that train it (`training.layout_tag`, since they
round differently). `train_or_load` loads the runs whose checkpoint is in the cache (verified first: a corrupt or
foreign entry is named in a warning and retrained, never trusted), trains the others together with
`training.train_many` (one ensemble per shared architecture, schedule, penalty and window length), and writes
each as `<cache>/<digest>.safetensors` with its losses beside it, a few runs at a time (as many as the engine
trains at once), so an interrupted ensemble keeps every run it finished.

Results derived from a trained run (the study's evaluations) are cached beside it as JSON entries
(`save_entry`, `load_entry`): each records its own digest and a SHA-256 of its content, and its digest includes
`code_digest()`, so an entry is reused only by the same isojax code that wrote it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
from isojax.runs import keys, outputs

__all__ = ["RunSpec", "run_digest", "train_or_load", "key_data", "code_digest", "arrays_digest", "params_digest",
           "load_entry", "save_entry"]


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


def key_data(key: jax.Array) -> list:
    """A PRNG key's raw data as a list of ints (typed keys and raw uint32 keys alike), for digests."""
    raw = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.asarray(raw).tolist()


def _penalty_name(penalty: Callable | None) -> str | None:
    return None if penalty is None else f"{getattr(penalty, '__module__', '?')}.{getattr(penalty, '__qualname__', '?')}"


def run_digest(spec: RunSpec, engine: training.Engine) -> str:
    """16 hex digits naming the trained model: the key, the training tokens themselves (so a change in how a
    corpus is built never reuses a stale model), the architecture, schedule, penalty and weight, the float dtype
    and the engine."""
    tokens = np.ascontiguousarray(np.asarray(spec.sequences, np.int32))
    return keys.digest({"key": key_data(spec.key), "config": dataclasses.asdict(spec.config),
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
    meta = {"steps": spec.tcfg.steps, "seed": key_data(spec.key), **spec.meta, "run": run,
            "engine": training.layout_tag(engine),
            "train": dataclasses.asdict(spec.tcfg), "penalty": _penalty_name(spec.penalty),
            "penalty_weight": float(spec.penalty_weight), "losses_sha256": _sha256(result.losses)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(_losses_path(path), result.losses)  # first, so a model file implies its losses
    checkpoint.save(path, result.params, spec.config, meta)


def _group_key(spec: RunSpec) -> tuple:
    return spec.config, spec.tcfg, spec.penalty, np.shape(spec.sequences)[1]


def train_or_load(specs: Sequence[RunSpec], cache: Path | str | None = None, engine: training.Engine | None = None,
                  progress: bool = False, log: Callable[[str], object] | None = None) -> list[training.Trained]:
    """One `training.Trained` per spec, in order: loaded from `cache` where an identical run was trained before,
    trained together with the other missing runs otherwise (and then cached). cache None: train everything,
    write nothing. A cached run's `saved` is empty (checkpoints along the way are not cached). `log` gets a line
    after each slice of runs trained."""
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
    # train_many trains this many runs at once anyway: calling it per slice costs next to nothing (its program
    # is compiled once per padded window count) and saves each slice before the next starts, so an interrupted
    # ensemble keeps its runs
    at_once = len(jax.devices()) * engine.lanes
    missing, done = sum(map(len, groups.values())), 0
    for (config, tcfg, penalty, _), members in groups.items():
        for start in range(0, len(members), at_once):
            part = members[start:start + at_once]
            runs = [training.Run(specs[i].key, np.asarray(specs[i].sequences), specs[i].penalty_weight)
                    for i in part]
            for i, result in zip(part, training.train_many(runs, config, tcfg, penalty, engine, progress=progress)):
                out[i] = result
                if paths[i] is not None:
                    _save(paths[i], digests[i], specs[i], engine, result)
            done += len(part)
            if log is not None:
                log(f"  trained {done} of {missing} runs ({len(specs) - missing} loaded from the cache)")
    return out


def _package_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    # regular, visible files only: an editor's lock file (.#x.py, often a dangling link) is not code
    for path in sorted(p for p in root.rglob("*.py") if not p.name.startswith(".") and p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# taken when isojax is imported, i.e. of the code this process runs: a file edited during a long run does not
# lend its name to results the old code computed
_CODE_DIGEST = _package_digest()


def code_digest() -> str:
    """16 hex digits naming isojax's code as this process imported it: a SHA-256 over every .py file of the
    package (path and bytes), so a cached result computed by other code is never reused."""
    return _CODE_DIGEST


def arrays_digest(arrays: Sequence[np.typing.ArrayLike]) -> str:
    """16 hex digits naming a sequence of arrays: every array's dtype, shape and bytes, in order (so where one
    array ends and the next begins counts)."""
    h = hashlib.sha256()
    for x in arrays:
        a = np.ascontiguousarray(np.asarray(x))
        h.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()[:16]


def params_digest(params: tf.Params) -> str:
    """16 hex digits naming a model's parameters (every tensor's dtype, shape and bytes)."""
    return arrays_digest(jax.tree.leaves(params))


def _canonical(payload: dict) -> str:
    return json.dumps(payload, sort_keys=True, allow_nan=True)


def save_entry(path: Path | str, digest: str, payload: dict) -> None:
    """Write a JSON cache entry (payload: JSON values, NaN and inf allowed) for `digest`, staged and renamed so
    it is never half-written."""
    text = _canonical(payload)
    entry = {"digest": digest, "sha256": hashlib.sha256(text.encode()).hexdigest(), "payload": payload}
    with outputs.staged(path) as (tmp,):
        tmp.write_text(json.dumps(entry, allow_nan=True))  # keys in the payload's order: tables keep their columns


def load_entry(path: Path | str, digest: str, check: Callable[[dict], object] | None = None) -> dict | None:
    """The payload of the JSON cache entry at path if it is a good entry for `digest`; None when there is none.
    A corrupt, edited, foreign or malformed entry (`check(payload)` raises ValueError, KeyError or TypeError)
    is named in a warning and None returned (it is recomputed, never trusted)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        entry = json.loads(inputs.read_text(path, repr(str(path))))
        if not isinstance(entry, dict) or not isinstance(entry.get("payload"), dict):
            raise ValueError("it is not a cache entry")
        if entry.get("digest") != digest:
            raise ValueError(f"it was written for {entry.get('digest')!r}, not {digest!r}")
        if hashlib.sha256(_canonical(entry["payload"]).encode()).hexdigest() != entry.get("sha256"):
            raise ValueError("its content does not match its checksum")
        if check is not None:
            check(entry["payload"])
    # json.JSONDecodeError is a ValueError; RecursionError: nesting deeper than the parser goes
    except (ValueError, OSError, KeyError, TypeError, RecursionError) as err:
        warnings.warn(f"cache entry {str(path)!r} is unusable ({err}); recomputing it", stacklevel=3)
        return None
    return entry["payload"]

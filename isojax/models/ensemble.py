"""The study's unit of work: many numeric LMs, each named by its dataset, tokenizer, architecture, seed and
penalty weight, trained together (or loaded from the cache) and each evaluated: forecasts and the isotropy of
every layer's hidden states.

Keys come from names, never positions: a dataset's series from "data|<data>" (so every run on a dataset sees
the same series and is scored on the same held-out windows), a run's training from "train|<name>", its
evaluation from "eval|<name>" and its measures from "measure|<name>", all folded into one base key. Adding a
run never moves another's numbers.

Every run is measured on the same number of hidden-state rows (`rows`): windows of its training series at
stride 1, evenly spaced, so that measures that depend on n (IsoScore, the clustered cosine) compare like with
like. Evaluation runs one model at a time: on this CPU a vmapped evaluation was slower (BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from isojax import isotropy
from isojax import transformer as tf
from isojax.data import corpus
from isojax.models import cache, forecast, recipes, training
from isojax.runs import keys

__all__ = ["NumericRun", "Evaluated", "measurement_windows", "train_and_evaluate"]


@dataclasses.dataclass(frozen=True)
class NumericRun:
    """One run of the study. name: unique, stable label (its keys derive from it); data: a source of
    `corpus.build`; tokenizer: "bins" or "digits"; arch: a key of `recipes.ARCHITECTURES`."""

    name: str
    data: str
    tokenizer: str
    arch: str
    seed: int = 0
    penalty_weight: float = 0.0


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """A trained and evaluated run: forecast scores, the final training loss, the head's partition isotropy,
    one dict of measures per layer, and the hidden states [L + 1, rows, d] they were measured on."""

    run: NumericRun
    forecast: dict
    final_loss: float
    head_partition_isotropy: float
    layers: list[dict]
    hidden: np.ndarray


def measurement_windows(data: corpus.Corpus, seq_len: int, rows: int) -> np.ndarray:
    """ceil(rows / seq_len) windows [m, seq_len] of the training token streams at stride 1, evenly spaced over
    all of them (series by series), so their hidden states give at least `rows` rows when the data allow."""
    starts = [(s, i) for s, ids in enumerate(data.train_ids) for i in range(len(ids) - seq_len + 1)]
    if not starts:
        raise ValueError(f"no training series is {seq_len} tokens long")
    want = min(math.ceil(rows / seq_len), len(starts))
    pick = np.linspace(0, len(starts) - 1, want).round().astype(int)
    return np.stack([data.train_ids[s][i:i + seq_len] for s, i in (starts[j] for j in pick)]).astype(np.int32)


def _evaluate(run: NumericRun, data: corpus.Corpus, config: tf.Config, trained: training.Trained, key: jax.Array,
              rows: int, samples: int) -> Evaluated:
    k_eval, k_measure = jax.random.split(key)
    nmse = forecast.evaluate_forecasts(k_eval, trained.params, config, data, samples=samples)
    windows = measurement_windows(data, config.max_len, rows)
    hidden = tf.hidden_states(trained.params, config, windows)  # [m, L + 1, T, d]
    hidden = np.moveaxis(hidden, 1, 0).reshape(hidden.shape[1], -1, hidden.shape[-1])[:, :rows]
    per_layer = [{"layer": layer, "rows": hidden.shape[1],
                  **isotropy.layer_summary(jnp.asarray(hidden[layer]), jax.random.fold_in(k_measure, layer))}
                 for layer in range(hidden.shape[0])]
    head_iso = float(isotropy.partition_isotropy(trained.params.lm_head[: data.tokenizer.vocab]))
    return Evaluated(run, {"nmse": nmse}, float(np.mean(trained.losses[-20:])), head_iso, per_layer, hidden)


def train_and_evaluate(runs: Sequence[NumericRun], base_key: jax.Array, steps: int, cache_dir: Path | str | None = None,
                       penalty: Callable | None = None, seq_len: int = 64, rows: int = 1024, samples: int = 10,
                       engine: training.Engine | None = None, log: Callable[[str], object] | None = None
                       ) -> list[Evaluated]:
    """Train (or load from `cache_dir`) every run, all runs of one architecture and tokenizer as one ensemble
    (`cache.train_or_load`), then evaluate each. penalty: a function of a layer's hidden states [n, d] added
    to the loss with each run's `penalty_weight` over every block (the intervention); None for plain training.
    -> one `Evaluated` per run, in order; `log` gets a line per evaluated run."""
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique; repeated: {sorted({n for n in names if names.count(n) > 1})}")
    corpora: dict[tuple[str, str], corpus.Corpus] = {}
    specs = []
    for run in runs:
        if (run.data, run.tokenizer) not in corpora:
            corpora[run.data, run.tokenizer] = corpus.build(run.data, run.tokenizer,
                                                            keys.named_key(base_key, f"data|{run.data}"),
                                                            seq_len=seq_len, count=16)
        data = corpora[run.data, run.tokenizer]
        config = recipes.model_config(run.arch, data.vocab, seq_len)
        layers = tuple(range(1, config.layers + 1)) if penalty is not None else ()
        tcfg = training.TrainConfig(steps=steps, penalty_layers=layers)
        specs.append(cache.RunSpec(keys.named_key(base_key, f"train|{run.name}"), data.sequences, config, tcfg,
                                   penalty, run.penalty_weight,
                                   {"tokenizer": corpus.tokenizer_spec(data.tokenizer), "data": run.data,
                                    "arch": run.arch, "name": run.name}))
    trained = cache.train_or_load(specs, cache_dir, engine)
    out = []
    for run, spec, result in zip(runs, specs, trained):
        evaluated = _evaluate(run, corpora[run.data, run.tokenizer], spec.config, result,
                              keys.named_key(base_key, f"eval|{run.name}"), rows, samples)
        out.append(evaluated)
        if log is not None:
            log(f"  {run.name}: NMSE {evaluated.forecast['nmse']:.3f}, last-layer IsoScore "
                f"{evaluated.layers[-1]['isoscore']:.3f}")
    return out

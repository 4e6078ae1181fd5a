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

With a cache folder, each run's evaluation is cached beside its model (`<model digest>.eval-<digest>.json`,
keyed by the trained parameters, the evaluation settings, the run's evaluation key, the dataset's series,
isojax's code as imported and the JAX and NumPy versions and backend; an entry of another shape is refused),
so a long design interrupted part-way resumes where it stopped: trained runs load, evaluated runs load, and
only the rest is computed, with the same numbers as one uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from isojax import _validate as V
from isojax import forecast, isotropy
from isojax import transformer as tf
from isojax.data import corpus
from isojax.models import cache, recipes, training
from isojax.models import forecast as model_forecast
from isojax.runs import keys

__all__ = ["NumericRun", "Evaluation", "Evaluated", "study_windows", "measurement_windows", "train_and_evaluate"]


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
    """A trained and evaluated run: its forecast summary (flat columns, `_summary`) and rows (one per metric, as
    `isojax.forecast.evaluate` gives them), the final training loss, the head's partition isotropy, one dict
    of measures per layer, and the hidden states [L + 1, rows, d] they were measured on."""

    run: NumericRun
    forecast: dict
    forecast_rows: list
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


def study_windows(series: list[np.ndarray], context: int, horizon: int, target: int = 32,
                  test_fraction: float = 0.2) -> forecast.Windows:
    """About `target` rolling-origin windows over a dataset's held-out tails, spread evenly over each tail: k =
    ceil(target / series) origins per series at a stride that spans the tail (targets overlap where a tail is
    short, and a tail fits fewer windows than k only when it is shorter than horizon + k - 1 values)."""
    k = math.ceil(target / len(series))
    per_series = []
    for s in series:
        tail = len(s) - forecast.training_length(len(s), test_fraction)
        per_series.append(max(1, (tail - horizon) // max(k - 1, 1)))
    stride = min(per_series)
    fits = min((len(s) - max(forecast.training_length(len(s), test_fraction), context) - horizon) // stride + 1
               for s in series)
    return forecast.backtest_windows(series, context, horizon, test_fraction, origins=max(1, min(k, fits)),
                                     stride=stride)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """How each run is evaluated: `windows` rolling-origin windows per dataset of `context` values (the model sees
    the last max_len - 1 tokens of each), forecasts `horizon` values ahead from `samples` sampled paths, scored
    with `draws` bootstrap draws over windows; `rows` hidden-state rows per layer measured, every run on the
    same number where the data allow, so the measures mean the same thing across runs. `boot` > 0 (the study's
    experiments use 100-200; off by default, since the first call of a shape simulates the null) adds each
    layer measure's bootstrap interval over rows ({m}_low, {m}_high, `boot` resamples), the isotropic null of
    the same n and d ({m}_null, {m}_null_sd) and the null-corrected value ({m}_rel: 1 = as isotropic as a
    Gaussian cloud of that shape, 0 = one direction; `isotropy.layer_summary`); 0 leaves them out."""

    context: int = 64
    horizon: int = 16
    windows: int = 32
    samples: int = 20
    draws: int = 1000
    rows: int = 1024
    boot: int = 0

    def __post_init__(self):
        for name in ("context", "horizon", "windows", "samples", "draws", "rows"):
            V.positive_int(f"evaluation.{name}", getattr(self, name), 4 if name == "context" else 1)
        V.positive_int("evaluation.boot", self.boot, 0)
        if 0 < self.boot < 20:
            raise ValueError(f"evaluation.boot must be 0 (no intervals) or at least 20, got {self.boot}")

    def uncertainty(self) -> isotropy.Uncertainty | bool:
        """The `uncertainty` argument of `isotropy.layer_summary` these settings ask for."""
        return isotropy.Uncertainty(boot=self.boot) if self.boot else False


def _summary(rows: list[dict]) -> dict:
    """One run's forecast rows (one per metric) -> flat columns: each metric's value, interval and skill against
    seasonal-naive (with its interval), the window count, and whether the model beats seasonal-naive on MASE."""
    out = {}
    for r in rows:
        m = r["metric"]
        out.update({m: r["value"], f"{m}_low": r["low"], f"{m}_high": r["high"], f"{m}_skill": r["skill"],
                    f"{m}_skill_low": r["skill_low"], f"{m}_skill_high": r["skill_high"],
                    f"{m}_seasonal_naive": r["seasonal_naive"]})
    first = rows[0]
    out.update(windows=first["windows"], series=first["series"], samples=first["samples"],
               beats_seasonal_naive=bool(next(r for r in rows if r["metric"] == "mase")["beats_seasonal_naive"]))
    return out


def _hidden(data: corpus.Corpus, config: tf.Config, trained: training.Trained, rows: int) -> np.ndarray:
    """The hidden states [L + 1, rows, d] a run is measured on (`measurement_windows`)."""
    ids = measurement_windows(data, config.max_len, rows)
    hidden = tf.hidden_states(trained.params, config, ids)  # [m, L + 1, T, d]
    return np.moveaxis(hidden, 1, 0).reshape(hidden.shape[1], -1, hidden.shape[-1])[:, :rows]


def _json_value(value):
    if isinstance(value, np.generic | np.ndarray) and np.ndim(value) == 0:
        return value.item()
    raise TypeError(f"an evaluation holds a {type(value).__name__}, which a cache entry cannot store")


def _plain(payload: dict) -> dict:
    """The evaluation as JSON values (numpy scalars as Python numbers), exactly as a cache entry stores and
    returns it, so a fresh and a cached evaluation are the same objects."""
    return json.loads(json.dumps(payload, allow_nan=True, default=_json_value))


def _evaluate(run: NumericRun, data: corpus.Corpus, config: tf.Config, trained: training.Trained, key: jax.Array,
              windows: forecast.Windows, reference: dict, how: Evaluation) -> tuple[dict, np.ndarray]:
    """One run's evaluation as JSON values ({"forecast", "forecast_rows", "final_loss", "head_partition_isotropy",
    "layers"}) and the hidden states [L + 1, rows, d] it measured."""
    k_eval, k_measure = jax.random.split(key)
    forecaster = model_forecast.model_forecaster(trained.params, config, data.tokenizer, how.samples)
    rows = forecast.evaluate(forecaster, windows, k_eval, name=run.name, reference=reference, draws=how.draws)
    hidden = _hidden(data, config, trained, how.rows)
    per_layer = [{"layer": layer, "rows": hidden.shape[1],
                  **isotropy.layer_summary(jnp.asarray(hidden[layer]), jax.random.fold_in(k_measure, layer),
                                           uncertainty=how.uncertainty())}
                 for layer in range(hidden.shape[0])]
    head_iso = float(isotropy.partition_isotropy(trained.params.lm_head[: data.tokenizer.vocab]))
    return _plain({"forecast": _summary(rows), "forecast_rows": rows,
                   "final_loss": float(np.mean(trained.losses[-20:])), "head_partition_isotropy": head_iso,
                   "layers": per_layer}), hidden


def _check_payload(payload: dict) -> None:
    """Refuse (KeyError, TypeError, ValueError) a cached evaluation without the shape `_evaluate` gives."""
    if not (isinstance(payload["forecast"], dict) and isinstance(payload["forecast_rows"], list)
            and all(isinstance(r, dict) for r in payload["forecast_rows"]) and payload["forecast_rows"]):
        raise ValueError("its forecast is not a summary and a list of metric rows")
    for name in ("final_loss", "head_partition_isotropy"):
        if not isinstance(payload[name], float | int) or isinstance(payload[name], bool):
            raise ValueError(f"its {name} is not a number")
    layers = payload["layers"]
    if not (isinstance(layers, list) and layers and all(isinstance(p, dict) and isinstance(p["isoscore"], float | int)
                                                         for p in layers)):
        raise ValueError("its layers are not one summary per layer")


def _evaluation_digest(params: str, how: Evaluation, key: jax.Array, data: corpus.Corpus) -> str:
    """What a run's evaluation depends on: the trained parameters themselves, the settings, its key, the
    dataset's series (its windows and baselines come from them; each series' length counts), isojax's code and
    the libraries and backend that run it."""
    series = cache.arrays_digest([np.asarray(s, np.float64) for s in data.series])
    return keys.digest({"params": params, "evaluation": dataclasses.asdict(how), "key": cache.key_data(key),
                        "series": series, "code": cache.code_digest(), "dtype": str(V.float_dtype()),
                        "versions": [jax.__version__, np.__version__, jax.default_backend()]})


def train_and_evaluate(runs: Sequence[NumericRun], base_key: jax.Array, steps: int, cache_dir: Path | str | None = None,
                       penalty: Callable | None = None, seq_len: int = 64, evaluation: Evaluation = Evaluation(),
                       engine: training.Engine | None = None, log: Callable[[str], object] | None = None
                       ) -> tuple[list[Evaluated], dict[str, list[dict]]]:
    """Train (or load from `cache_dir`) every run, all runs of one architecture and tokenizer as one ensemble
    (`cache.train_or_load`), then evaluate each (`Evaluation`): forecasts on its dataset's windows against the
    baselines on the same windows, and the isotropy of every layer. penalty: a function of a layer's hidden
    states [n, d] added to the loss with each run's `penalty_weight` over every block (the intervention); None
    for plain training. -> (one `Evaluated` per run, in order; {dataset: the baselines' rows on its windows});
    `log` gets a line per slice of runs trained and per evaluated run. With `cache_dir`, evaluations are cached
    too (module docstring): a second call computes nothing it has, and returns the same numbers."""
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
    # every run on a dataset is scored on the same windows, against baselines computed once on them
    windows, references, baselines = {}, {}, {}
    for (name, _), data in corpora.items():
        if name not in windows:
            windows[name] = study_windows(data.series, evaluation.context, evaluation.horizon, evaluation.windows)
            references[name] = forecast.baseline_scores(windows[name])
            baselines[name] = forecast.evaluate_baselines(windows[name], references[name], draws=evaluation.draws)
    engine = engine or training.default_engine()
    trained = cache.train_or_load(specs, cache_dir, engine, log=log)
    out = []
    for run, spec, result in zip(runs, specs, trained):
        data, key = corpora[run.data, run.tokenizer], keys.named_key(base_key, f"eval|{run.name}")
        payload = path = hidden = None
        if cache_dir is not None:
            digest = _evaluation_digest(cache.params_digest(result.params), evaluation, key, data)
            path = Path(cache_dir) / f"{cache.run_digest(spec, engine)}.eval-{digest}.json"
            payload = cache.load_entry(path, digest, _check_payload)
        if payload is None:
            payload, hidden = _evaluate(run, data, spec.config, result, key, windows[run.data],
                                        references[run.data], evaluation)
            if path is not None:
                cache.save_entry(path, digest, payload)
        else:  # the measures' small-n warnings were given when the entry was computed
            hidden = _hidden(data, spec.config, result, evaluation.rows)
        evaluated = Evaluated(run, payload["forecast"], payload["forecast_rows"], payload["final_loss"],
                              payload["head_partition_isotropy"], payload["layers"], hidden)
        out.append(evaluated)
        if log is not None:
            f = evaluated.forecast
            log(f"  {run.name}: NMSE {f['nmse']:.3f}, MASE {f['mase']:.2f} (seasonal-naive "
                f"{f['mase_seasonal_naive']:.2f}), last-layer IsoScore {evaluated.layers[-1]['isoscore']:.3f}")
    return out, baselines

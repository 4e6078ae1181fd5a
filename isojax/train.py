"""Training numeric LMs with optax, checkpoints in safetensors, and forecasting (sampling and conditional mean).

- `train(key, config, sequences, ...)`: AdamW with warmup + cosine decay; causal models learn next-token
  prediction, encoders a masked-token objective (15% of positions replaced by the MASK token, id vocab - 1).
  An optional differentiable penalty on the hidden states of chosen layers is added with weight
  `penalty_weight` (the isotropy intervention uses it; a negative weight pushes the other way).
- `save` / `load`: the parameter pytree as a flat safetensors file (names from the pytree paths) whose metadata
  describes the model (architecture, tokenizer, data, steps, seed, isojax version) and carries a SHA-256
  checksum of the tensors, verified on load.
- `sample_forecast`, `nmse`, `conditional_mean_forecast`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import optax
from jax.sharding import NamedSharding

from isojax import _validate as V
from isojax import head
from isojax import transformer as tf

if TYPE_CHECKING:  # annotations only: importing the data package here is not needed at run time
    from isojax.data.corpus import Corpus, Tokenizer

__all__ = ["TrainConfig", "FORMAT", "DESCRIBED", "train", "checksum", "save", "load", "next_token_log_probs",
           "sample_forecast", "conditional_mean_forecast", "nmse", "forecast_series", "evaluate_forecasts"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings: steps, batch size, AdamW learning rate, warmup steps and weight decay, the encoder's
    mask rate, and the hidden-state penalty's weight and layers."""

    steps: int = 300
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    mask_rate: float = 0.15
    penalty_weight: float = 0.0
    penalty_layers: tuple[int, ...] = ()


def _loss(params, tokens, key, weight, config: tf.Config, tcfg: TrainConfig, penalty: Callable | None):
    """Mean token loss over a batch [B, T] (+ weight × penalty on the chosen layers' hidden states)."""
    if config.causal:
        hidden, logits = jax.vmap(lambda t: tf.forward(params, t, config))(tokens)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits[:, :-1]), tokens[:, 1:, None], -1)[..., 0]
        loss = nll.mean()
    else:
        masked = jax.random.bernoulli(key, tcfg.mask_rate, tokens.shape)
        inputs = jnp.where(masked, config.vocab - 1, tokens)
        hidden, logits = jax.vmap(lambda t: tf.forward(params, t, config))(inputs)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], -1)[..., 0]
        loss = jnp.sum(nll * masked) / jnp.maximum(masked.sum(), 1)
    if penalty is not None and tcfg.penalty_layers:
        pen = sum(penalty(hidden[:, layer].reshape(-1, hidden.shape[-1])) for layer in tcfg.penalty_layers)
        loss = loss + weight * pen / len(tcfg.penalty_layers)
    return loss


@functools.lru_cache(maxsize=64)
def _stepper(config: tf.Config, tcfg: TrainConfig, penalty: Callable | None):
    """The optimizer and one jitted training step on a batch [B, T], built once per (architecture, schedule,
    penalty); the data and the penalty weight are arguments, so neither triggers a recompilation."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, tcfg.lr, tcfg.warmup, max(tcfg.steps, tcfg.warmup + 1))
    opt = optax.adamw(schedule, weight_decay=tcfg.weight_decay)

    @jax.jit
    def step(params, state, batch, k_mask, weight):
        loss, grads = jax.value_and_grad(_loss)(params, batch, k_mask, weight, config, tcfg, penalty)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    return opt, step


def _data_parallel(batch: int) -> tuple[NamedSharding, NamedSharding]:
    """Shardings for data parallelism over every local device: the batch split on its first axis, the
    parameters replicated. Raises ValueError if the batch does not divide evenly over the devices."""
    devices = jax.local_devices()
    if V.positive_int("tcfg.batch", batch) % len(devices):
        raise ValueError(f"tcfg.batch {batch} must be a multiple of the {len(devices)} devices it is split over; "
                         f"choose a batch of {len(devices) * max(batch // len(devices), 1)}")
    mesh = jax.make_mesh((len(devices),), ("batch",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
    return NamedSharding(mesh, jax.P("batch")), NamedSharding(mesh, jax.P())


def train(key: jax.Array, config: tf.Config, sequences: jax.typing.ArrayLike, tcfg: TrainConfig = TrainConfig(),
          penalty: Callable | None = None, params: tf.Params | None = None, progress: bool = True,
          checkpoints: tuple[int, ...] = ()) -> tuple[tf.Params, np.ndarray, dict[int, tf.Params]]:
    """Train on token sequences [n, T]; returns (params, losses [steps], {step: params} at `checkpoints`).

    Each batch [tcfg.batch, T] is split over every local device (a one-axis mesh "batch"; the parameters are
    replicated), so tcfg.batch must be a multiple of the device count. Losses agree with a one-device run to
    float rounding (the batch mean is summed in another order)."""
    sequences = jnp.asarray(sequences)
    if sequences.ndim != 2:
        raise ValueError(f"sequences must have rank 2 [n, T], got shape {tuple(sequences.shape)}")
    V.token_ids("sequences", sequences, config.vocab)
    batch_sharding, replicated = _data_parallel(tcfg.batch)
    k_init, k_loop = jax.random.split(key)
    params = params if params is not None else tf.init(k_init, config)
    params = jax.device_put(params, replicated)
    opt, step = _stepper(config, dataclasses.replace(tcfg, penalty_weight=0.0), penalty)
    state = opt.init(params)
    weight = jnp.asarray(tcfg.penalty_weight, V.float_dtype())
    draw = jax.jit(lambda i: jax.random.split(jax.random.fold_in(k_loop, i)))
    losses, saved = [], {}
    bar = range(tcfg.steps)
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(bar, desc="train", unit="step")
    for i in bar:
        k_batch, k_mask = draw(i)
        idx = jax.random.randint(k_batch, (tcfg.batch,), 0, sequences.shape[0])
        batch = jax.device_put(sequences[idx], batch_sharding)
        params, state, loss = step(params, state, batch, k_mask, weight)
        losses.append(loss)
        if i + 1 in checkpoints:
            saved[i + 1] = params
    return params, np.asarray(jax.device_get(jnp.stack(losses))), saved


# ----------------------------------------------------------------------------------------- checkpoints

FORMAT = "isojax-checkpoint/1"
# what every checkpoint's metadata describes, beside the architecture config (so a file says what it is)
DESCRIBED = ("tokenizer", "data", "steps", "seed")


def _flatten(params) -> dict[str, np.ndarray]:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def checksum(tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order (a hex string)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(json.dumps([name, t.dtype.str, list(t.shape)]).encode())
        h.update(t.tobytes())
    return h.hexdigest()


def _meta_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def save(path: Path | str, params: tf.Params, config: tf.Config, meta: dict | None = None) -> Path:
    """Write params as safetensors (tensor names = pytree paths). The metadata holds the architecture config,
    the format, the isojax version, a SHA-256 checksum of the tensors (`load` verifies it) and `meta`: what
    the model was trained on (tokenizer, data, steps, seed; any JSON-serialisable values). Written to a
    temporary file and renamed, so the path never holds half a checkpoint; the temporary file never stays."""
    from safetensors.numpy import save_file

    import isojax
    path = Path(path)
    meta = dict(meta or {})
    reserved = {"format", "config", "isojax_version", "sha256"} & set(meta)
    if reserved:
        raise ValueError(f"meta must not set {sorted(reserved)}: save writes them")
    tensors = _flatten(params)
    metadata = {k: _meta_text(v) for k, v in meta.items()}
    metadata.update(format=FORMAT, config=json.dumps(dataclasses.asdict(config)), isojax_version=isojax.__version__,
                    sha256=checksum(tensors))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r}: no such file" if not path.exists() else
                         f"checkpoint {str(path)!r} is not a file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error type (and OSError) for a damaged file
        raise ValueError(f"checkpoint {str(path)!r} is not a readable safetensors file "
                         f"(truncated or corrupt?): {err}") from None


def load(path: Path | str) -> tuple[tf.Params, tf.Config, dict]:
    """Read and verify a checkpoint written by `save` -> (params, config, metadata). The arrays are bit for
    bit those saved. metadata: the decoded entries (config and every `meta` value; JSON is decoded). A
    missing, truncated or corrupt file, missing metadata, a checksum mismatch or tensors that do not fit the
    config are a ValueError naming the file."""
    path = Path(path)
    tensors, raw = _read(path)
    missing = [k for k in ("format", "config", "sha256") if k not in raw]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} lacks the metadata {missing}: not an isojax checkpoint, or "
                         "one written before checkpoints described themselves (retrain it)")
    if checksum(tensors) != raw["sha256"]:
        raise ValueError(f"checkpoint {str(path)!r} fails its SHA-256 checksum: the file is corrupt or was altered")
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    try:
        config = tf.Config(**meta["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {str(path)!r} has an invalid config: {err}") from None
    meta["config"] = config
    template = tf.init(jax.random.PRNGKey(0), config)
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [jax.tree_util.keystr(p) for p, _ in flat]
    if set(names) != set(tensors) or any(tensors[n].shape != t.shape for n, (_, t) in zip(names, flat)):
        raise ValueError(f"checkpoint {str(path)!r} holds tensors that do not fit its config {config}")
    leaves = [jnp.asarray(tensors[n]) for n in names]
    return jax.tree_util.tree_unflatten(treedef, leaves), config, meta


# ----------------------------------------------------------------------------------------- forecasting

def next_token_log_probs(params: tf.Params, context: jax.Array, config: tf.Config) -> jax.Array:
    """log p_f(· | context) for the token after `context` [T]; an encoder predicts a MASK appended at the end."""
    if config.causal:
        return jax.nn.log_softmax(tf.forward(params, context, config)[1][-1])
    masked = jnp.concatenate([context, jnp.array([config.vocab - 1], context.dtype)])
    return jax.nn.log_softmax(tf.forward(params, masked, config)[1][-1])


def sample_forecast(key: jax.Array, params: tf.Params, context: jax.typing.ArrayLike, config: tf.Config, steps: int,
                    samples: int = 20, temperature: float = 1.0, allowed: jax.typing.ArrayLike | None = None,
                    grammar: tuple[np.ndarray, np.ndarray] | None = None) -> jax.Array:
    """`samples` sampled continuations of `steps` tokens after context [T] -> [samples, steps] token ids.
    The window slides (keeps the last max_len - 1 tokens). `allowed` [V] bool restricts the sampled tokens;
    `grammar` = (allowed [S, V'], next_state [S, V']) with V' ≤ V (a tokenizer's `grammar()`) restricts them
    by a finite-state rule that starts in state 0, so that e.g. every sampled number has its fixed width."""
    context = jnp.asarray(context)
    width = min(context.shape[0], config.max_len - 1)
    if grammar is None:
        allowed = jnp.ones((config.vocab,), bool) if allowed is None else jnp.asarray(allowed, bool)
        rule, nxt = allowed[None, :], jnp.zeros((1, config.vocab), jnp.int32)
    else:
        if allowed is not None:
            raise ValueError("give allowed or grammar, not both")
        rule, nxt = (np.asarray(g) for g in grammar)
        if rule.ndim != 2 or rule.shape != nxt.shape or rule.shape[1] > config.vocab:
            raise ValueError(f"grammar must be two [S, V'] arrays with V' <= vocab {config.vocab}, got shapes "
                             f"{rule.shape} and {nxt.shape}")
        pad = config.vocab - rule.shape[1]  # tokens beyond the tokenizer's (the MASK) are never sampled
        rule = jnp.asarray(np.pad(rule.astype(bool), ((0, 0), (0, pad))))
        nxt = jnp.asarray(np.pad(nxt.astype(np.int32), ((0, 0), (0, pad))))
    return _sample(key, params, context[-width:], rule, nxt, jnp.asarray(temperature, V.float_dtype()),
                   config=config, steps=steps, samples=samples)


@functools.partial(jax.jit, static_argnames=("config", "steps", "samples"))
def _sample(key, params, context, rule, nxt, temperature, *, config, steps, samples):
    def one(k):
        def step(carry, kk):
            ctx, state = carry
            lp = jnp.where(rule[state], next_token_log_probs(params, ctx, config) / temperature, -jnp.inf)
            tok = jax.random.categorical(kk, lp)
            return (jnp.concatenate([ctx[1:], tok[None].astype(ctx.dtype)]), nxt[state, tok]), tok
        return jax.lax.scan(step, (context, jnp.int32(0)), jax.random.split(k, steps))[1]

    return jax.vmap(one)(jax.random.split(key, samples))


def conditional_mean_forecast(params: tf.Params, context: jax.Array, config: tf.Config,
                              values: jax.Array) -> jax.Array:
    """ŷ = Σ_w v_w p_f(w | context): the one-step conditional-mean forecast (T5). values: [V], NaN = no value."""
    lp = next_token_log_probs(params, context, config)
    has_value = ~jnp.isnan(values)
    # renormalise over the tokens that carry a value
    lp = jnp.where(has_value, lp, -jnp.inf)
    return head.expected_value(jax.nn.log_softmax(lp), jnp.where(has_value, values, 0.0))


def nmse(forecast: npt.ArrayLike, target: npt.ArrayLike) -> float:
    """The study's NMSE: mean((ŷ - y)²) / mean(y²)."""
    forecast, target = np.asarray(forecast, float), np.asarray(target, float)
    if forecast.shape != target.shape:
        raise ValueError(f"forecast and target must have the same shape, got {forecast.shape} and {target.shape}")
    return float(np.mean((forecast - target) ** 2) / max(np.mean(target**2), np.finfo(float).tiny))


def forecast_series(key: jax.Array, params: tf.Params, config: tf.Config, tokenizer: Tokenizer, context: np.ndarray,
                    horizon: int, samples: int = 20, temperature: float = 1.0) -> np.ndarray:
    """Median of `samples` sampled forecasts of a series' next `horizon` values. -> [horizon]"""
    from isojax.data import tokens as tk
    is_bins = isinstance(tokenizer, tk.BinTokenizer)
    if is_bins:
        ids, scale, _ = tokenizer.encode(context)
        steps = horizon
    else:
        ids, scale = tokenizer.encode(context)  # ends with ',': the window ends at a value boundary
        steps = horizon * (tokenizer.digits + 2)  # enough for horizon values with a sign each
    toks = np.asarray(sample_forecast(key, params, jnp.asarray(ids[-(config.max_len - 1):]), config, steps,
                                      samples, temperature, grammar=tokenizer.grammar()))
    # the grammar makes every value complete, so each row decodes to at least `horizon` values
    return np.median(np.stack([tokenizer.decode(row, scale)[:horizon] for row in toks]), axis=0)


def evaluate_forecasts(key: jax.Array, params: tf.Params, config: tf.Config, corpus: Corpus,
                       samples: int = 20) -> float:
    """NMSE of the median sampled forecast over the corpus' held-out series (the study's measure)."""
    if not corpus.contexts:
        raise ValueError("corpus has no held-out series to forecast")
    preds, targets = [], []
    for i, (ctx, tgt) in enumerate(zip(corpus.contexts, corpus.targets)):
        preds.append(forecast_series(jax.random.fold_in(key, i), params, config, corpus.tokenizer, ctx, len(tgt),
                                     samples))
        targets.append(tgt)
    # normalise each series by its context scale so that sets of series with different units average fairly
    scales = [max(np.mean(np.abs(c)), 1e-12) for c in corpus.contexts]
    return nmse(np.concatenate([p / s for p, s in zip(preds, scales)]),
                np.concatenate([t / s for t, s in zip(targets, scales)]))

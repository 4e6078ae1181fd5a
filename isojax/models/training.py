"""Training numeric LMs, many at once: an ensemble of runs as one compiled program.

An ensemble is R runs that share an architecture (`transformer.Config`), an optimisation schedule
(`TrainConfig`), a penalty function and a window length T, and differ in their key (initialisation and
batches), their token windows (the dataset) and their penalty weight (`Run`). Every run is AdamW with warmup
and cosine decay; causal models learn next-token prediction, encoders a masked-token objective (a share
`mask_rate` of the positions replaced by the MASK token, id vocab - 1). The loss is the cross-entropy of the
verified head, `isojax.head.cross_entropy`, on the transformer's final representation (`transformer.encode`);
an optional differentiable penalty on the hidden states of chosen layers is added with the run's weight (the
isotropy intervention; a negative weight pushes the other way).

How the runs are laid out (`Engine`): the run axis is split over every device of every process
(`isojax.runs.devices`), `lanes` runs per device at a time; within a device the step is `vmap`-ed over the
lanes ("vmap") or the lanes run one after another ("scan"), and the steps run in a compiled loop, `chunk_steps`
per call (the progress bar's unit). Every device runs the same per-device program (`shard_map`), so a run's
numbers do not depend on the other runs beside it, its order, the chunking, or how many devices and processes
share the work, with one exception: on a single device XLA compiles without its partitioner and rounds
differently (1 ulp in a few losses, measured). What a run's numbers depend on, the engine's kind and lanes
(XLA vectorises a batched step's arithmetic differently) and whether it is partitioned, is named by
`layout_tag` for the model cache. One compilation per (architecture, schedule, penalty, engine, window shape,
devices); the data, the keys and the weights are arguments.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding

from isojax import _validate as V
from isojax import head
from isojax import transformer as tf
from isojax.runs import devices

__all__ = ["TrainConfig", "Run", "Engine", "SERIAL", "layout_tag", "default_engine", "Trained", "train_many", "train"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by an ensemble: steps, batch size, AdamW learning rate, warmup steps and
    weight decay, the encoder's mask rate, and the layers whose hidden states the penalty sees (empty: no
    penalty). Hashable: a static argument of the compiled program, so forward and backward see one option set."""

    steps: int = 300
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    mask_rate: float = 0.15
    penalty_layers: tuple[int, ...] = ()

    def __post_init__(self):
        V.positive_int("tcfg.steps", self.steps)
        V.positive_int("tcfg.batch", self.batch)
        V.positive_int("tcfg.warmup", self.warmup, 0)
        for name in ("lr", "weight_decay"):
            V.real_in(f"tcfg.{name}", getattr(self, name), 0.0, 1e3)
        V.real_in("tcfg.mask_rate", self.mask_rate, 0.0, 1.0)
        if not isinstance(self.penalty_layers, tuple):
            raise ValueError(f"tcfg.penalty_layers must be a tuple of layer indices, got {self.penalty_layers!r}")


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of an ensemble: its key (split into the initialisation's and the batches'), its token windows
    `sequences` [n, T], its penalty weight, and optionally its initial parameters (default: `transformer.init`
    from the key, eagerly, so a run starts from the same parameters however it is trained)."""

    key: jax.Array
    sequences: np.ndarray  # [n, T] token ids
    penalty_weight: float = 0.0
    params: tf.Params | None = None


ENGINE_KINDS = ("scan", "vmap")


@dataclasses.dataclass(frozen=True)
class Engine:
    """How an ensemble's runs are laid onto the devices: `lanes` runs per device at a time, vectorised over
    ("vmap") or one after another ("scan"); `chunk_steps` steps per compiled call. `tag` names what changes a
    run's numbers (kind and lanes; not chunk_steps, which changes nothing)."""

    kind: str = "vmap"
    lanes: int = 4
    chunk_steps: int = 50

    def __post_init__(self):
        if self.kind not in ENGINE_KINDS:
            raise ValueError(f"engine kind must be one of {ENGINE_KINDS}, got {self.kind!r}")
        V.positive_int("engine.lanes", self.lanes)
        V.positive_int("engine.chunk_steps", self.chunk_steps)

    @property
    def tag(self) -> str:
        return f"{self.kind}{self.lanes}"


# one run at a time: the one-run path of `train`, and runs on devices where vectorising does not pay
SERIAL = Engine("scan", 1)


def layout_tag(engine: Engine) -> str:
    """What a run's numbers depend on beyond its inputs: the engine's tag, and "-partitioned" when the runs are
    split over more than one device (any number of devices and processes gives the same numbers then)."""
    return engine.tag + ("-partitioned" if len(jax.devices()) > 1 else "")


def default_engine(backend: str | None = None) -> Engine:
    """The engine for a backend (default: JAX's): on CPU 4 lanes vectorised (the best run-steps per second on
    2 cores, BENCHMARKS.md: 16 and 64 lanes are slower per run and 64 deep-wide lanes hold 6.7 GiB), on an
    accelerator 128 lanes per device."""
    backend = backend or jax.default_backend()
    return Engine("vmap", 4) if backend == "cpu" else Engine("vmap", 128)


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained run: final parameters, the loss of every step [steps], and {step: parameters} at the requested
    checkpoints."""

    params: tf.Params
    losses: np.ndarray
    saved: dict


def _optimizer(tcfg: TrainConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(0.0, tcfg.lr, tcfg.warmup, max(tcfg.steps, tcfg.warmup + 1))
    return optax.adamw(schedule, weight_decay=tcfg.weight_decay)


def _loss(params: tf.Params, tokens: jax.Array, key: jax.Array, weight: jax.Array, config: tf.Config,
          tcfg: TrainConfig, penalty: Callable | None) -> jax.Array:
    """Mean token cross-entropy of the head over a batch [B, T] (+ weight × the penalty on the chosen layers'
    hidden states). Causal: position t predicts token t + 1; encoder: the masked positions predict themselves."""
    if config.causal:
        hidden, out = jax.vmap(lambda t: tf.encode(params, t, config))(tokens)
        nll = head.cross_entropy(params.lm_head, out[:, :-1], tokens[:, 1:], params.head_bias)
        loss = nll.mean()
    else:
        masked = jax.random.bernoulli(key, tcfg.mask_rate, tokens.shape)
        hidden, out = jax.vmap(lambda t: tf.encode(params, t, config))(jnp.where(masked, config.vocab - 1, tokens))
        nll = head.cross_entropy(params.lm_head, out, tokens, params.head_bias)
        loss = jnp.sum(nll * masked) / jnp.maximum(masked.sum(), 1)
    if penalty is not None and tcfg.penalty_layers:
        pen = sum(penalty(hidden[:, layer].reshape(-1, hidden.shape[-1])) for layer in tcfg.penalty_layers)
        loss = loss + weight * pen / len(tcfg.penalty_layers)
    return loss


@functools.lru_cache(maxsize=64)
def _program(config: tf.Config, tcfg: TrainConfig, penalty: Callable | None, kind: str, chunk: int,
             sharding: NamedSharding) -> Callable:
    """The compiled call that advances every run of a group from step `start` to `stop` (stop - start ≤ chunk).
    state, const: pytrees [devices, lanes, ...] split by `sharding`; returns (state, losses [devices, lanes,
    chunk]) split alike. The shardings are fixed on both sides, so the state a call returns is what the next
    call was compiled for (otherwise the second call compiles again)."""
    opt = _optimizer(tcfg)

    def one_run(state, const, start, stop):
        sequences, count, k_loop, weight = const

        def step(i, carry):
            (params, opt_state), losses = carry
            k_batch, k_mask = jax.random.split(jax.random.fold_in(k_loop, i))
            idx = jax.random.randint(k_batch, (tcfg.batch,), 0, count)
            loss, grads = jax.value_and_grad(_loss)(params, sequences[idx], k_mask, weight, config, tcfg, penalty)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), losses.at[i - start].set(loss)

        losses = jnp.zeros((chunk,), V.float_dtype())
        return jax.lax.fori_loop(start, stop, step, (state, losses))

    def local(state, const, start, stop):
        """One device's block [1, lanes, ...]: its lanes vectorised, or one after another."""
        state, const = jax.tree.map(lambda a: a[0], (state, const))
        lanes = jax.tree.leaves(state)[0].shape[0]
        if kind == "vmap":
            out = jax.vmap(one_run, in_axes=(0, 0, None, None))(state, const, start, stop)
        elif lanes == 1:  # no loop over one lane: a smaller program, compiled faster
            out = jax.tree.map(lambda a: a[None], one_run(*jax.tree.map(lambda a: a[0], (state, const)), start, stop))
        else:
            out = jax.lax.map(lambda sc: one_run(*sc, start, stop), (state, const))
        return jax.tree.map(lambda a: a[None], out)

    # shard_map: every device runs exactly this per-device program on its own block [1, lanes, ...], whatever
    # the device count (an SPMD-partitioned vmap rounded differently on 1 and 4 devices)
    spec = sharding.spec
    program = jax.shard_map(local, mesh=sharding.mesh, in_specs=(spec, spec, jax.P(), jax.P()),
                            out_specs=(spec, spec), check_vma=False)
    replicated = NamedSharding(sharding.mesh, jax.P())
    return jax.jit(program, donate_argnums=0, in_shardings=(sharding, sharding, replicated, replicated),
                   out_shardings=(sharding, sharding))


def _check_runs(runs: Sequence[Run], config: tf.Config, tcfg: TrainConfig, penalty) -> list[np.ndarray]:
    """Every run's windows as int32 [n, T], one T for all, checked before anything is compiled."""
    if not runs:
        raise ValueError("runs is empty: give at least one Run")
    seqs, lengths = [], set()
    for r, run in enumerate(runs):
        if not isinstance(run, Run):
            raise ValueError(f"runs[{r}] must be a Run, got {type(run).__name__}")
        s = np.asarray(run.sequences)
        if s.ndim != 2 or s.shape[0] < 1:
            raise ValueError(f"runs[{r}].sequences must have rank 2 [n, T] with n >= 1, got shape {s.shape}")
        V.token_ids(f"runs[{r}].sequences", s, config.vocab)
        V.real_in(f"runs[{r}].penalty_weight", run.penalty_weight, -1e6, 1e6)
        if run.penalty_weight != 0.0 and (penalty is None or not tcfg.penalty_layers):
            raise ValueError(f"runs[{r}] has penalty_weight {run.penalty_weight} but no penalty (give `penalty` and "
                             "tcfg.penalty_layers)")
        seqs.append(s.astype(np.int32))
        lengths.add(s.shape[1])
    if len(lengths) != 1:
        raise ValueError(f"the runs of one ensemble share a window length T; got {sorted(lengths)} (train them "
                         "in separate ensembles)")
    (length,) = lengths
    if length > config.max_len or (config.causal and length < 2):
        raise ValueError(f"windows of {length} tokens do not fit config.max_len={config.max_len} (and a causal "
                         "model needs at least 2)")
    bad = [layer for layer in tcfg.penalty_layers if not 0 <= layer <= config.layers]
    if bad:
        raise ValueError(f"tcfg.penalty_layers {bad} are not layers of a {config.layers}-block model "
                         f"(0..{config.layers})")
    return seqs


def _stops(steps: int, chunk: int, checkpoints: tuple[int, ...]) -> list[int]:
    """Where each compiled call ends: every `chunk` steps, at every checkpoint and at the end."""
    return sorted(set(range(chunk, steps, chunk)) | {c for c in checkpoints if c < steps} | {steps})


def _stack(trees: list) -> object:
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *trees)


def train_many(runs: Sequence[Run], config: tf.Config, tcfg: TrainConfig = TrainConfig(),
               penalty: Callable | None = None, engine: Engine | None = None, checkpoints: Sequence[int] = (),
               progress: bool = True) -> list[Trained]:
    """Train every run of an ensemble (see the module docstring) -> one `Trained` per run, in order.

    runs: `Run`s sharing config, tcfg, penalty and the window length T; engine: default `default_engine()`;
    checkpoints: steps in [1, tcfg.steps] after which each run's parameters are kept. A run's result is the
    same whichever runs it is trained with and on how many devices or processes (tested); the one-run
    `train` is this function with one run."""
    engine = engine or default_engine()
    seqs = _check_runs(runs, config, tcfg, penalty)
    checkpoints = tuple(sorted({V.positive_int("checkpoints", int(c)) for c in checkpoints}))
    if checkpoints and checkpoints[-1] > tcfg.steps:
        raise ValueError(f"checkpoints {list(checkpoints)} must be steps in [1, {tcfg.steps}]")
    opt = _optimizer(tcfg)
    dtype = V.float_dtype()
    rows = max(s.shape[0] for s in seqs)
    rows = 1 << (rows - 1).bit_length()  # windows padded to a power of two, so few shapes compile
    n_dev = len(jax.devices())
    group = n_dev * engine.lanes
    sharding = devices.device_sharding("runs")
    program = _program(config, tcfg, penalty, engine.kind, engine.chunk_steps, sharding)
    stops = _stops(tcfg.steps, engine.chunk_steps, checkpoints)

    def prepare(r: int):
        """Run r's initial state and constants, built eagerly (a compiled initialisation rounds differently)."""
        k_init, k_loop = jax.random.split(runs[r].key)
        params = runs[r].params if runs[r].params is not None else tf.init(k_init, config)
        params = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
        padded = np.zeros((rows, seqs[r].shape[1]), np.int32)
        padded[: len(seqs[r])] = seqs[r]  # rows past the run's count are never drawn
        const = (padded, np.int32(len(seqs[r])), np.asarray(k_loop), np.asarray(runs[r].penalty_weight, dtype))
        return (params, opt.init(params)), const

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=tcfg.steps * len(runs), desc=f"train {len(runs)} run{'s' * (len(runs) > 1)}",
                   unit="run-step")
    trained: list[Trained] = []
    for first in range(0, len(runs), group):
        members = list(range(first, min(first + group, len(runs))))
        padded_members = members + [members[0]] * (group - len(members))  # repeats, dropped below
        states, consts = zip(*[prepare(r) for r in padded_members])
        shape = (n_dev, engine.lanes)
        state = devices.to_global(jax.tree.map(lambda a: a.reshape(shape + a.shape[1:]), _stack(list(states))),
                                  sharding)
        const = devices.to_global(jax.tree.map(lambda a: a.reshape(shape + a.shape[1:]), _stack(list(consts))),
                                  sharding)
        losses, saved, start = [], {}, 0
        for stop in stops:
            state, chunk_losses = program(state, const, np.int32(start), np.int32(stop))
            losses.append(devices.to_host(chunk_losses).reshape(group, -1)[:, : stop - start])
            if stop in checkpoints:
                saved[stop] = devices.to_host(state[0])
            if bar is not None:
                bar.update((stop - start) * len(members))
            start = stop
        final = devices.to_host(state[0])
        all_losses = np.concatenate(losses, axis=1)
        for j, _ in enumerate(members):
            def pick(tree, j=j):
                return jax.tree.map(lambda a: jnp.asarray(a.reshape((group,) + a.shape[2:])[j]), tree)
            trained.append(Trained(pick(final), all_losses[j], {s: pick(p) for s, p in saved.items()}))
    if bar is not None:
        bar.close()
    return trained


def train(key: jax.Array, config: tf.Config, sequences: jax.typing.ArrayLike, tcfg: TrainConfig = TrainConfig(),
          penalty: Callable | None = None, params: tf.Params | None = None, progress: bool = True,
          checkpoints: Sequence[int] = (), penalty_weight: float = 0.0, engine: Engine = SERIAL
          ) -> tuple[tf.Params, np.ndarray, dict[int, tf.Params]]:
    """Train one model on token windows [n, T] -> (params, losses [steps], {step: params} at `checkpoints`):
    `train_many` with one run (default engine: one run at a time, `SERIAL`)."""
    (result,) = train_many([Run(key, np.asarray(sequences), penalty_weight, params)], config, tcfg, penalty,
                           engine, checkpoints, progress)
    return result.params, result.losses, result.saved


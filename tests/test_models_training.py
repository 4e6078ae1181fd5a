"""Training one or many runs at once (isojax.models.training): it learns, the engines agree with a plain loop and
with each other, a run's numbers do not depend on its companions, its order or the chunking, one program
serves every call, and the loss is the verified head's."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from isojax import head, isotropy
from isojax import transformer as tf
from isojax.data import teacher
from isojax.models import training as T
from isojax.runs import devices
from tests.conftest import X64

KEY = jax.random.PRNGKey(0)
SMALL = dict(vocab=13, d_model=16, heads=2, layers=2, mlp=32, max_len=12)
TCFG = T.TrainConfig(steps=20, batch=8, warmup=3, lr=1e-2)


def _windows(n, seed=1, length=12, vocab=12):
    return np.asarray(jax.random.randint(jax.random.PRNGKey(seed), (n, length), 0, vocab), np.int32)


def _runs(count=5):
    return [T.Run(jax.random.PRNGKey(10 + i), _windows(20 + 7 * i, seed=i)) for i in range(count)]


def _leaves(params):
    return [np.asarray(x) for x in jax.tree.leaves(params)]


@pytest.mark.float32_only  # learning, not rounding: the float64 pass checks the engines' arithmetic below
def test_training_beats_unigram_and_approaches_entropy_rate():
    t = teacher.make_teacher(KEY, vocab=16, dim=16, order=1)
    seqs = teacher.sample_sequences(jax.random.PRNGKey(1), t, 1024, 32)
    cfg = tf.Config(vocab=16, d_model=32, heads=2, layers=1, mlp=64, max_len=32)
    params, losses, _ = T.train(jax.random.PRNGKey(2), cfg, seqs, T.TrainConfig(steps=250, batch=32), progress=False)
    counts = np.bincount(np.asarray(seqs).ravel(), minlength=16) / seqs.size
    unigram = -np.sum(counts * np.log(counts))
    rate = float(teacher.stationary_entropy_rate(t))
    final = float(losses[-20:].mean())
    assert final < unigram - 0.5 * (unigram - rate)  # clearly below unigram
    assert final < rate + 0.15  # close to the teacher's entropy rate


def _reference_loop(key, config, sequences, tcfg):
    """The training loop written out step by step in Python (the first round's loop), as the engines' reference."""
    opt = T._optimizer(tcfg)
    k_init, k_loop = jax.random.split(key)
    params = tf.init(k_init, config)
    state = opt.init(params)

    @jax.jit
    def step(params, state, i):
        k_batch, k_mask = jax.random.split(jax.random.fold_in(k_loop, i))
        idx = jax.random.randint(k_batch, (tcfg.batch,), 0, sequences.shape[0])
        loss, grads = jax.value_and_grad(T._loss)(params, jnp.asarray(sequences)[idx], k_mask, 0.0, config, tcfg,
                                                  None)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for i in range(tcfg.steps):
        params, state, loss = step(params, state, np.int32(i))
        losses.append(float(loss))
    return params, np.asarray(losses)


@pytest.mark.parametrize("causal", [True, False])
def test_serial_engine_equals_a_plain_python_loop(causal):
    config = tf.Config(**SMALL, causal=causal)
    seqs = _windows(30)
    ref_params, ref_losses = _reference_loop(KEY, config, seqs, TCFG)
    params, losses, _ = T.train(KEY, config, seqs, TCFG, progress=False)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12 if X64 else 2e-6)
    if X64:  # in float32, Adam's normalisation amplifies the loop's rounding in the parameters (1e-2 by step 20)
        for a, b in zip(_leaves(params), _leaves(ref_params)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * max(np.abs(b).max(), 1.0))


@pytest.mark.parametrize("causal", [True, False])
def test_ensemble_equals_one_at_a_time(causal):
    """The issue's equivalence: float64 runs agree to 1e-10 over 20 steps; float32 losses to 1e-4 over 10."""
    config = tf.Config(**SMALL, causal=causal)
    runs = _runs(5)
    together = T.train_many(runs, config, TCFG, engine=T.Engine("vmap", 4), progress=False)
    for run, got in zip(runs, together):
        params, losses, _ = T.train(run.key, config, run.sequences, TCFG, progress=False)
        if X64:
            np.testing.assert_allclose(got.losses, losses, rtol=1e-10)
            for a, b in zip(_leaves(got.params), _leaves(params)):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * max(np.abs(b).max(), 1.0))
        else:
            np.testing.assert_allclose(got.losses[:10], losses[:10], rtol=1e-4)


@pytest.mark.float32_only  # dtype-independent; the float64 pass checks the engines' arithmetic (the two tests above)
def test_a_run_does_not_depend_on_its_companions_order_or_chunking():
    config = tf.Config(**SMALL)
    runs = _runs(5)
    base = T.train_many(runs, config, TCFG, engine=T.Engine("vmap", 4, chunk_steps=7), progress=False,
                        checkpoints=(5,))
    reordered = T.train_many(runs[::-1], config, TCFG, engine=T.Engine("vmap", 4, chunk_steps=20), progress=False,
                             checkpoints=(5,))[::-1]
    alone = T.train_many(runs[2:3], config, TCFG, engine=T.Engine("vmap", 4, chunk_steps=3), progress=False,
                         checkpoints=(5,))
    for a, b in zip(base, reordered):
        np.testing.assert_array_equal(a.losses, b.losses)
        for x, y in zip(_leaves(a.params) + _leaves(a.saved[5]), _leaves(b.params) + _leaves(b.saved[5])):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(alone[0].losses, base[2].losses)  # its lanes padded with copies of itself
    assert set(base[0].saved) == {5}


@pytest.mark.float32_only  # dtype-independent; the float64 pass checks the engines' arithmetic (the two tests above)
def test_the_penalty_weight_is_per_run_and_moves_isotropy():
    config = tf.Config(**SMALL)
    tcfg = T.TrainConfig(steps=30, batch=8, lr=1e-2, warmup=3, penalty_layers=(1, 2))
    seqs = _windows(40)
    penalty = lambda h: -isotropy.isoscore_star(h, 0.1)
    runs = [T.Run(KEY, seqs, w) for w in (-3.0, 0.0, 3.0)]
    trained = T.train_many(runs, config, tcfg, penalty, engine=T.Engine("vmap", 4), progress=False)
    plain, plain_losses, _ = T.train(KEY, config, seqs, T.TrainConfig(steps=30, batch=8, lr=1e-2, warmup=3),
                                     progress=False)
    # weight 0 is plain training (the penalty term vanishes), up to the engines' rounding
    np.testing.assert_allclose(trained[1].losses, plain_losses, rtol=1e-9 if X64 else 1e-4)
    iso = [float(isotropy.isoscore(tf.hidden_states(t.params, config, seqs)[:, 2].reshape(-1, 16)))
           for t in trained]
    assert iso[0] < iso[1] < iso[2]  # pushed away from, then towards, isotropy


@pytest.mark.float32_only  # dtype-independent; the float64 pass checks the engines' arithmetic (the two tests above)
def test_one_program_serves_every_call_of_a_shape():
    config = tf.Config(**SMALL)
    tcfg = T.TrainConfig(steps=4, batch=8, warmup=1)
    engine = T.Engine("vmap", 2, chunk_steps=3)
    T.train_many(_runs(2), config, tcfg, engine=engine, progress=False)
    program = T._program(config, tcfg, None, "vmap", 3, devices.device_sharding("runs"))
    assert program._cache_size() == 1
    # other keys, data (fewer windows: the same power-of-two padding), weights and checkpoints: no new program
    T.train_many([T.Run(jax.random.PRNGKey(99), _windows(17, seed=5))], config, tcfg, engine=engine,
                 checkpoints=(1, 2), progress=False)
    assert program._cache_size() == 1


@pytest.mark.float32_only  # dtype-independent; the float64 pass checks the engines' arithmetic (the two tests above)
def test_a_broken_head_changes_the_trained_models_loss(monkeypatch):
    """The loss runs the verified head: breaking `head.log_probs` (no log Z) must change what training sees."""
    config = tf.Config(**{**SMALL, "vocab": 14})  # a config of its own: no compiled program is reused
    tcfg = T.TrainConfig(steps=3, batch=8, warmup=1)
    seqs = _windows(20)
    _, good, _ = T.train(KEY, config, seqs, tcfg, progress=False)
    T._program.cache_clear()
    monkeypatch.setattr(head, "log_probs", lambda phi, h, b=None: head.logits(phi, h, b))
    try:
        _, broken, _ = T.train(KEY, config, seqs, tcfg, progress=False)
    finally:
        T._program.cache_clear()
    assert not np.allclose(good, broken)


def test_engines_and_inputs_are_checked_before_any_compute():
    config = tf.Config(**SMALL)
    with pytest.raises(ValueError, match="engine kind"):
        T.Engine("pmap", 2)
    with pytest.raises(ValueError, match="engine.lanes"):
        T.Engine("vmap", 0)
    with pytest.raises(ValueError, match=r"sequences has ids outside \[0, 13\)"):
        T.train(KEY, config, np.full((4, 6), 13), TCFG, progress=False)
    with pytest.raises(ValueError, match="share a window length"):
        T.train_many([T.Run(KEY, _windows(4)), T.Run(KEY, _windows(4, length=10))], config, TCFG, progress=False)
    with pytest.raises(ValueError, match="no penalty"):
        T.train_many([T.Run(KEY, _windows(4), 1.0)], config, TCFG, progress=False)
    with pytest.raises(ValueError, match="checkpoints"):
        T.train_many([T.Run(KEY, _windows(4))], config, TCFG, checkpoints=(21,), progress=False)
    with pytest.raises(ValueError, match="runs is empty"):
        T.train_many([], config, TCFG)
    with pytest.raises(ValueError, match="do not fit config.max_len"):
        T.train(KEY, config, _windows(4, length=13), TCFG, progress=False)


def test_default_engine_per_backend():
    assert T.default_engine("cpu") == T.Engine("vmap", 4)
    assert T.default_engine("gpu").lanes > T.default_engine("cpu").lanes
    assert T.SERIAL.tag == "scan1" and T.Engine("vmap", 4).tag == "vmap4"

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from isojax import pretrained, train
from isojax import transformer as tf

KEY = jax.random.PRNGKey(0)
GOLDEN = Path(__file__).parent / "golden" / "minilm_hidden.npz"


def test_decoder_is_causal_by_jacobian():
    cfg = tf.Config(vocab=11, d_model=16, heads=2, layers=2, mlp=32, max_len=8)
    params = tf.init(KEY, cfg)
    tokens = jnp.arange(6) % 11

    def hidden_from_embeddings(emb):
        p = params.replace(embed=params.embed.at[tokens].set(emb))
        return tf.forward(p, tokens, cfg)[0]

    jac = jax.jacobian(hidden_from_embeddings)(params.embed[tokens])  # [L+1, T, d, T, d]
    for i in range(6):
        assert float(jnp.abs(jac[:, i, :, i + 1:, :]).max(initial=0.0)) == 0.0
    # and the encoder is not causal
    enc = dataclasses.replace(cfg, causal=False)
    jac_enc = jax.jacobian(lambda e: tf.forward(params.replace(embed=params.embed.at[tokens].set(e)), tokens, enc)[0])(
        params.embed[tokens])
    assert float(jnp.abs(jac_enc[-1, 0, :, 5, :]).max()) > 0.0


def test_forward_shapes_and_bad_input():
    cfg = tf.Config(vocab=11, d_model=16, heads=4, layers=3, mlp=32, max_len=8)
    hidden, logits = tf.forward(tf.init(KEY, cfg), jnp.arange(5), cfg)
    assert hidden.shape == (4, 5, 16) and logits.shape == (5, 11)
    with pytest.raises(ValueError, match=r"tokens must have rank 1"):
        tf.forward(tf.init(KEY, cfg), jnp.zeros((2, 3), int), cfg)
    with pytest.raises(ValueError, match=r"config.d_model=10 must be divisible by config.heads=4"):
        tf.Config(vocab=5, d_model=10, heads=4)
    with pytest.raises(ValueError, match=r"sequences has ids outside \[0, 11\)"):
        train.train(KEY, cfg, jnp.full((4, 6), 11), train.TrainConfig(steps=1), progress=False)


def test_minilm_golden_hidden_states():
    """all-MiniLM-L6-v2 loaded into isojax's encoder against hidden states from the PyTorch reference
    (transformers BertModel), generated once into tests/golden (see its README)."""
    golden = np.load(GOLDEN)
    params, cfg = pretrained.load_minilm()
    ids, mask = pretrained.encode([str(t) for t in golden["texts"]])
    np.testing.assert_array_equal(ids, golden["ids"])
    hidden = jax.vmap(lambda t, m: tf.forward(params, t, cfg, key_mask=m)[0])(jnp.asarray(ids), jnp.asarray(mask))
    ours = np.asarray(hidden, np.float32)[:, golden["layers"]]
    real = np.broadcast_to(golden["mask"][:, None, :, None], ours.shape)
    assert np.max(np.abs(ours - golden["hidden"])[real]) < 1e-4
    assert cfg.layers == 6 and params.lm_head.shape == (30522, 384)

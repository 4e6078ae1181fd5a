"""The one transformer: causality, shapes, validation, and the switches the pre-trained families need."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from isojax import attention as att
from isojax import transformer as tf
from isojax.models import checkpoint

KEY = jax.random.PRNGKey(0)
T5_LIKE = dict(vocab=13, d_model=16, heads=2, d_head=12, layers=2, mlp=24, max_len=40, causal=False, norm="rms",
               activation="gelu_tanh", gated=True, bias=False, attn_scale=False, abs_pos=False, rel_buckets=8,
               rel_max_distance=20, final_norm_hidden=True)


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


@pytest.mark.float32_only  # shapes and refusals, not a value
def test_forward_shapes_and_bad_input():
    cfg = tf.Config(vocab=11, d_model=16, heads=4, layers=3, mlp=32, max_len=8)
    hidden, logits = tf.forward(tf.init(KEY, cfg), jnp.arange(5), cfg)
    assert hidden.shape == (4, 5, 16) and logits.shape == (5, 11)
    with pytest.raises(ValueError, match=r"tokens must have rank 1"):
        tf.forward(tf.init(KEY, cfg), jnp.zeros((2, 3), int), cfg)
    with pytest.raises(ValueError, match=r"tokens has length 9 > config.max_len=8"):
        tf.forward(tf.init(KEY, cfg), jnp.zeros((9,), int), cfg)
    with pytest.raises(ValueError, match=r"config.d_model=10 must be divisible by config.heads=4"):
        tf.Config(vocab=5, d_model=10, heads=4)


@pytest.mark.parametrize("bad,match", [
    (dict(norm="batch"), "config.norm='batch' must be one of"), (dict(activation="swish"), "config.activation"),
    (dict(d_head=-1), "config.d_head=-1"), (dict(rel_buckets=2), "config.rel_buckets=2 must be 0 or >= 4"),
    (dict(rel_max_distance=0), "config.rel_max_distance=0"), (dict(norm="rms", post_ln=True), "needs post_ln=False")])
def test_config_rejects_bad_switches(bad, match):
    with pytest.raises(ValueError, match=match):
        tf.Config(vocab=5, d_model=8, heads=2, **bad)
    tf.Config(vocab=5, d_model=10, heads=4, d_head=3)  # an explicit head width lifts the divisibility rule


def test_t5_like_config_initialises_and_runs():
    cfg = tf.Config(**T5_LIKE)
    params = tf.init(KEY, cfg)
    assert params.pos is None and params.rel_bias.shape == (8, 2)
    b = params.blocks[0]
    assert b.attn.w_q.shape == (2, 16, 12) and b.attn.w_o.shape == (2, 12, 16) and b.attn.b_q is None
    assert b.b_in is None and b.b_out is None and b.w_gate.shape == (16, 24) and b.ln_attn.bias is None
    hidden, logits = tf.forward(params, jnp.arange(30) % 13, cfg, key_mask=jnp.arange(30) < 25)
    assert hidden.shape == (3, 30, 16) and logits.shape == (30, 13) and bool(jnp.isfinite(hidden).all())


def test_checkpoint_round_trip_with_new_switches(tmp_path):
    cfg = tf.Config(**T5_LIKE)
    params = tf.init(KEY, cfg)
    loaded, cfg2, _ = checkpoint.load(checkpoint.save(tmp_path / "m.safetensors", params, cfg))
    assert cfg2 == cfg
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_rms_norm_has_unit_rms_and_ignores_positive_scale():
    p = tf.LayerNorm(jnp.ones((6,)))
    x = jax.random.normal(KEY, (4, 6)) + 3.0  # a mean that LayerNorm would remove and RMS norm keeps
    y = tf.rms_norm(p, x, 0.0)
    np.testing.assert_allclose(np.sqrt(np.mean(np.asarray(y) ** 2, -1)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(tf.rms_norm(p, 7.0 * x, 0.0), y, rtol=1e-5)
    assert float(jnp.abs(y.mean(-1)).min()) > 0.5  # not centred


def test_relative_position_buckets():
    """Exact buckets for small distances, one half per direction, log-spaced beyond, saturating past
    max_distance; the causal variant looks only backwards."""
    b = tf.relative_position_bucket(64, 16, 24, bidirectional=True)  # 8 buckets per direction, 4 exact
    rel = np.arange(64)[None, :] - np.arange(64)[:, None]
    near = np.abs(rel) < 4
    np.testing.assert_array_equal(b[near], np.where(rel > 0, 8, 0)[near] + np.abs(rel)[near])
    back, fwd = b[40, :41][::-1], b[0, :]  # distance 0, 1, 2, ... backwards / forwards
    assert (np.diff(back) >= 0).all() and (np.diff(fwd) >= 0).all()
    assert back.max() == 7 and fwd.max() == 15 and (back[24:] == 7).all() and (fwd[24:] == 15).all()
    far = np.arange(4, 41)  # the log range, by the formula in float64 (no distance here sits on an edge)
    np.testing.assert_array_equal(back[4:], np.minimum(7, 4 + np.floor(np.log(far / 4) / np.log(24 / 4) * 4)))
    np.testing.assert_array_equal(fwd[4:41], 8 + back[4:])
    c = tf.relative_position_bucket(10, 8, 20, bidirectional=False)
    assert (c[np.triu_indices(10, 1)] == 0).all() and c[9, 0] > c[9, 8] > 0


def test_relative_bias_is_shared_and_only_its_differences_matter():
    """A constant added to every bucket shifts every score row equally: softmax ignores it. Changing one
    bucket changes the output of every block, so the one bias reaches them all."""
    cfg = tf.Config(**T5_LIKE)
    params = tf.init(KEY, cfg)
    params = params.replace(rel_bias=jax.random.normal(KEY, params.rel_bias.shape))
    tokens = jnp.arange(30) % 13
    h = tf.forward(params, tokens, cfg)[0]
    shifted = tf.forward(params.replace(rel_bias=params.rel_bias + 5.0), tokens, cfg)[0]
    np.testing.assert_allclose(shifted, h, atol=1e-4)
    changed = tf.forward(params.replace(rel_bias=params.rel_bias.at[0].add(3.0)), tokens, cfg)[0]
    assert all(float(jnp.abs(changed[i] - h[i]).max()) > 1e-3 for i in (1, 2))


def test_final_norm_hidden_applies_the_final_norm_to_the_last_state_only():
    cfg = tf.Config(vocab=11, d_model=16, heads=2, layers=2, mlp=32, max_len=8, activation="gelu_tanh")
    params = tf.init(KEY, cfg)
    params = params.replace(ln_final=tf.LayerNorm(params.ln_final.scale * 2.0, params.ln_final.bias + 0.5))
    tokens = jnp.arange(6)
    raw, logits = tf.forward(params, tokens, cfg)
    normed, logits2 = tf.forward(params, tokens, dataclasses.replace(cfg, final_norm_hidden=True))
    np.testing.assert_array_equal(raw[:-1], normed[:-1])
    np.testing.assert_allclose(normed[-1], tf.layer_norm(params.ln_final, raw[-1], cfg.ln_eps), rtol=1e-6)
    np.testing.assert_allclose(logits, logits2, rtol=1e-6)
    np.testing.assert_allclose(logits, normed[-1] @ params.embed.T, rtol=1e-5, atol=1e-6)


def test_attention_score_bias_and_scale():
    """scale=1/√d_k is the default; a bias constant along each row changes nothing; a bias of -1e9 on a key
    removes it like the mask; a wrong bias shape is a ValueError."""
    p = att.init_attention(KEY, 8, 2, d_k=4)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 8))
    y = att.self_attention(p, x)
    np.testing.assert_allclose(att.self_attention(p, x, scale=0.5), y, rtol=1e-6)  # 1/√4
    assert float(jnp.abs(att.self_attention(p, x, scale=1.0) - y).max()) > 1e-3
    row_const = jnp.broadcast_to(jnp.arange(5.0)[None, :, None], (2, 5, 5))
    np.testing.assert_allclose(att.self_attention(p, x, bias=row_const), y, rtol=1e-5, atol=1e-6)
    drop_last = jnp.zeros((2, 5, 5)).at[:, :, 4].set(-1e9)
    key_mask = jnp.arange(5) < 4
    np.testing.assert_allclose(att.self_attention(p, x, bias=drop_last), att.self_attention(p, x, key_mask=key_mask),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"bias must have shape \(2, 5, 5\)"):
        att.self_attention(p, x, bias=jnp.zeros((5, 5)))

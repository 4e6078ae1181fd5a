"""Hugging Face checkpoints against their reference implementations (golden files, no PyTorch needed).

tests/golden/<family>/ holds a tiny randomly initialised checkpoint and reference.npz, the hidden states of
every layer computed by transformers / chronos-forecasting (tests/golden/make_golden.py). isojax must match
every layer on every real token to float32 rounding: max |error| <= TOL · max |reference| per layer.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from isojax import pretrained
from isojax import transformer as tf
from isojax.pretrained import bert

GOLDEN = Path(__file__).parent / "golden"
TOL = 1e-5  # relative to the layer's largest activation; float32 rounding gives ~6e-7 here
TEXT, NUMERIC = ("bert", "gpt2"), ("chronos", "chronos_gated")


def _ref(family):
    return np.load(GOLDEN / family / "reference.npz")


def _hidden(params, config, ids, mask):
    return np.asarray(jax.vmap(lambda t, m: tf.forward(params, t, config, key_mask=m)[0])(
        jnp.asarray(ids), jnp.asarray(mask)))


def _rel_error(ours, ref, mask) -> np.ndarray:
    """Per layer: max |ours - ref| / max |ref| over real tokens. ours, ref: [n, L + 1, T, d]; mask [n, T]."""
    real = np.broadcast_to(mask[:, None, :, None], ref.shape)
    err = np.where(real, np.abs(ours - ref), 0).max((0, 2, 3))
    return err / np.where(real, np.abs(ref), 0).max((0, 2, 3))


@pytest.mark.parametrize("family", TEXT + NUMERIC)
def test_every_layer_matches_the_reference(family):
    ref = _ref(family)
    params, config, _ = pretrained.load(GOLDEN / family)
    mask = ref["mask"].astype(bool)
    ours = _hidden(params, config, ref["ids"], mask)
    assert ours.shape == ref["hidden"].shape == (len(mask), config.layers + 1, mask.shape[1], config.d_model)
    assert _rel_error(ours, ref["hidden"], mask).max() < TOL


@pytest.mark.parametrize("family,broken", [
    ("bert", dict(post_ln=False)), ("bert", dict(activation="gelu_tanh")),
    ("gpt2", dict(activation="gelu")), ("gpt2", dict(final_norm_hidden=False)), ("gpt2", dict(causal=False)),
    ("chronos", dict(attn_scale=True)), ("chronos", dict(rel_max_distance=128)),
    ("chronos_gated", dict(activation="gelu")), ("chronos_gated", dict(norm="layer"))])
def test_the_golden_comparison_catches_a_wrong_architecture(family, broken):
    """Each family switch matters at TOL: flipping it breaks the match (so the test above can fail)."""
    ref = _ref(family)
    params, config, _ = pretrained.load(GOLDEN / family)
    if broken.get("norm") == "layer":  # LayerNorm needs a bias
        params = _with_zero_ln_bias(params)
    mask = ref["mask"].astype(bool)
    ours = _hidden(params, dataclasses.replace(config, **broken), ref["ids"], mask)
    assert _rel_error(ours, ref["hidden"], mask).max() > 10 * TOL  # erf vs tanh GELU: ~1e-4, the smallest


def _with_zero_ln_bias(params):
    def fix(ln):
        return tf.LayerNorm(ln.scale, jnp.zeros_like(ln.scale))

    return params.replace(ln_final=fix(params.ln_final), blocks=tuple(
        b.replace(ln_attn=fix(b.ln_attn), ln_mlp=fix(b.ln_mlp)) for b in params.blocks))


def test_chronos_shares_the_first_blocks_position_bias():
    """Zeroing the relative position bias (held by block 0, used by every block) breaks the match."""
    ref = _ref("chronos")
    params, config, _ = pretrained.load(GOLDEN / "chronos")
    mask = ref["mask"].astype(bool)
    ours = _hidden(params.replace(rel_bias=jnp.zeros_like(params.rel_bias)), config, ref["ids"], mask)
    assert _rel_error(ours, ref["hidden"], mask)[1:].min() > 100 * TOL


@pytest.mark.parametrize("family", TEXT)
def test_text_tokenization_matches_the_reference(family):
    ref = _ref(family)
    _, config, tok = pretrained.load(GOLDEN / family)
    ids, mask = bert.encode_with(tok, [str(t) for t in ref["texts"]], config.max_len)
    np.testing.assert_array_equal(ids[mask], ref["ids"][ref["mask"].astype(bool)])
    np.testing.assert_array_equal(mask, ref["mask"].astype(bool))


def test_gpt2_tied_head_matches_the_reference_logits():
    ref = _ref("gpt2")
    params, config, _ = pretrained.load(GOLDEN / "gpt2")
    mask = ref["mask"].astype(bool)
    logits = np.asarray(jax.vmap(lambda t, m: tf.forward(params, t, config, key_mask=m)[1])(
        jnp.asarray(ref["ids"]), jnp.asarray(mask)))
    err = np.abs(logits - ref["logits"])[mask].max() / np.abs(ref["logits"][mask]).max()
    assert err < TOL


@pytest.mark.parametrize("family", TEXT)
def test_embed_texts_rows_and_pooling_against_the_reference(family):
    """Token rows map back to (text, position); pooling is over real tokens only, computed here from the
    reference hidden states (an independent route)."""
    ref = _ref(family)
    texts, hidden, mask = [str(t) for t in ref["texts"]], ref["hidden"], ref["mask"].astype(bool)
    scale = np.abs(hidden).max()
    rows = pretrained.embed_texts(GOLDEN / family, texts)
    assert rows.hidden.shape == (hidden.shape[1], mask.sum(), hidden.shape[3])
    want = hidden[rows.input, :, rows.position].transpose(1, 0, 2)
    assert np.abs(np.asarray(rows.hidden) - want).max() < TOL * scale
    np.testing.assert_array_equal(rows.token, ref["ids"][rows.input, rows.position])
    lengths = mask.sum(1)
    pooled = {"mean": (hidden * mask[:, None, :, None]).sum(2) / lengths[:, None, None],
              "first": hidden[:, :, 0], "last": hidden[np.arange(len(texts)), :, lengths - 1]}
    model = pretrained.load(GOLDEN / family)
    for pooling, expect in pooled.items():
        got = pretrained.embed_texts(model, texts, pooling=pooling, batch=2)  # batch 2: chunks, the last padded
        assert got.hidden.shape == (hidden.shape[1], len(texts), hidden.shape[3])
        assert np.abs(np.asarray(got.hidden) - expect.transpose(1, 0, 2)).max() < TOL * scale, pooling
        np.testing.assert_array_equal(got.input, np.arange(len(texts)))


def test_embed_texts_truncates_to_max_len():
    rows = pretrained.embed_texts(GOLDEN / "bert", ["the numbers rise and fall over time, again and again"], max_len=5)
    assert rows.hidden.shape[1] == 5 and rows.position.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("family", NUMERIC)
def test_chronos_tokenizer_matches_the_reference(family):
    ref = _ref(family)
    tok = pretrained.load(GOLDEN / family).tokenizer
    for row, ids, mask, scale in zip(ref["series"], ref["ids"], ref["mask"], ref["scale"], strict=True):
        ours, our_mask, our_scale = tok.encode(row)  # the left padding is missing values: same length
        np.testing.assert_array_equal(ours, ids)
        np.testing.assert_array_equal(our_mask, mask)
        assert our_scale == pytest.approx(scale, rel=1e-6)


def test_chronos_bins_are_the_nearest_centre():
    """Each scaled value gets the token of its nearest bin centre (an independent route: argmin), values past
    the limits the end bins; missing values the pad token; the series ends with EOS."""
    tok = pretrained.MeanScaleUniformBins(n_tokens=64, n_special_tokens=2, low_limit=-15.0, high_limit=15.0,
                                          context_length=500)
    centres = tok.centers()
    np.testing.assert_allclose(centres, np.linspace(-15, 15, 61), atol=2e-6)
    x = np.random.default_rng(0).normal(0, 8, 400)
    x[[5, 9]] = np.nan
    ids, mask, scale = tok.encode(x)
    assert scale == pytest.approx(np.nanmean(np.abs(x)), rel=1e-6)
    nearest = np.argmin(np.abs(x[:, None] / scale - centres[None, :]), axis=1) + tok.n_special_tokens + 1
    observed = ~np.isnan(x)
    np.testing.assert_array_equal(ids[:-1][observed], nearest[observed])
    assert (ids[:-1][~observed] == tok.pad_token_id).all() and not mask[:-1][~observed].any()
    assert ids[-1] == tok.eos_token_id and mask[-1]
    np.testing.assert_allclose(tok.decode(ids[:-1][observed], scale), centres[nearest[observed] - 3] * scale)
    with pytest.raises(ValueError, match="must be in"):
        dataclasses.replace(tok, pad_token_id=5)


@pytest.mark.parametrize("family", NUMERIC)
def test_embed_series_against_the_reference(family):
    """Lists (right-padded inside) and the reference's left-padded batch give the reference's real tokens."""
    ref = _ref(family)
    hidden, mask = ref["hidden"], ref["mask"].astype(bool)
    series = [row[np.argmax(~np.isnan(row)):] for row in ref["series"]]  # the reference left-pads with NaN
    scale = np.abs(hidden).max()
    for inputs in (series, ref["series"]):
        rows = pretrained.embed_series(GOLDEN / family, inputs)
        inp, pos = np.nonzero(mask)  # the reference's real tokens, in order: same order as ours
        assert rows.hidden.shape == (hidden.shape[1], len(inp), hidden.shape[3])
        np.testing.assert_array_equal(rows.input, inp)
        assert np.abs(np.asarray(rows.hidden) - hidden[inp, :, pos].transpose(1, 0, 2)).max() < TOL * scale
        np.testing.assert_allclose(rows.scale, ref["scale"], rtol=1e-6)
    last = pretrained.embed_series(GOLDEN / family, series, pooling="last")  # the EOS token
    np.testing.assert_array_equal(last.position, [len(s) if len(s) < 48 else 48 for s in series])
    assert np.abs(np.asarray(last.hidden) - hidden[:, :, -1].transpose(1, 0, 2)).max() < TOL * scale


def _copy(tmp_path, family, drop=None, edit=None):
    folder = tmp_path / family
    shutil.copytree(GOLDEN / family, folder)
    if drop:
        (folder / drop).unlink()
    if edit:
        cfg = json.loads((folder / "config.json").read_text())
        edit(cfg)
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_gpt2_untied_head_needs_its_own_weights(tmp_path):
    """tie_word_embeddings=false: the head is lm_head.weight, which this (tied) checkpoint does not hold."""
    folder = _copy(tmp_path, "gpt2", edit=lambda c: c.update(tie_word_embeddings=False))
    with pytest.raises(ValueError, match="has no tensor 'lm_head.weight'"):
        pretrained.load(folder)


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        pretrained.load(tmp_path / "nowhere")
    for drop in ("config.json", "model.safetensors"):
        folder = _copy(tmp_path / drop, "bert", drop=drop)
        with pytest.raises(ValueError, match=f"missing file .*{drop}"):
            pretrained.load(folder)
    folder = _copy(tmp_path / "roberta", "bert", edit=lambda c: c.update(model_type="roberta"))
    with pytest.raises(ValueError, match=r"'roberta' is not supported \(supported: \('bert', 'gpt2', 't5'\)"):
        pretrained.load(folder)
    folder = _copy(tmp_path / "key", "gpt2", edit=lambda c: c.pop("n_embd"))
    with pytest.raises(ValueError, match="has no 'n_embd'"):
        pretrained.load(folder)
    folder = _copy(tmp_path / "layers", "chronos", edit=lambda c: c.update(num_layers=3))
    with pytest.raises(ValueError, match="has no tensor 'encoder.block.2"):
        pretrained.load(folder)
    folder = _copy(tmp_path / "act", "gpt2", edit=lambda c: c.update(activation_function="swish"))
    with pytest.raises(ValueError, match="activation 'swish' is not supported"):
        pretrained.load(folder)


def test_plain_t5_loads_its_encoder_without_the_numeric_tokenizer(tmp_path):
    """model_type t5 without chronos_config: the same encoder, the text tokenizer (none here), 512 positions."""
    folder = _copy(tmp_path, "chronos", edit=lambda c: c.pop("chronos_config"))
    params, config, tok = pretrained.load(folder)
    chronos_params, chronos_config, _ = pretrained.load(GOLDEN / "chronos")
    assert tok is None and config.max_len == 512 and chronos_config.max_len == 49
    assert dataclasses.replace(config, max_len=49) == chronos_config
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(chronos_params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_text_model_without_tokenizer_and_misuse(tmp_path):
    model = pretrained.load(_copy(tmp_path, "gpt2", drop="tokenizer.json"))
    assert model.tokenizer is None
    with pytest.raises(ValueError, match="no tokenizer.json"):
        pretrained.embed_texts(model, ["a"])
    with pytest.raises(ValueError, match="use embed_series"):
        pretrained.embed_texts(GOLDEN / "chronos", ["a"])
    with pytest.raises(ValueError, match="needs a Chronos model"):
        pretrained.embed_series(GOLDEN / "bert", [1.0, 2.0])
    with pytest.raises(ValueError, match="pooling must be one of"):
        pretrained.embed_texts(GOLDEN / "bert", ["a"], pooling="max")
    with pytest.raises(ValueError, match=r"texts \[1\] have no tokens"):
        pretrained.embed_texts(GOLDEN / "gpt2", ["a", ""])  # GPT-2 adds no special tokens
    with pytest.raises(ValueError, match="texts must be a non-empty list"):
        pretrained.embed_texts(GOLDEN / "bert", "a single string")
    with pytest.raises(ValueError, match=r"series\[1\] .* without ±inf"):
        pretrained.embed_series(GOLDEN / "chronos", [[1.0, 2.0], [1.0, np.inf]])
    with pytest.raises(ValueError, match=r"series\[0\] .* observed"):
        pretrained.embed_series(GOLDEN / "chronos", [np.nan, np.nan])
    with pytest.raises(ValueError, match="model must be a folder"):
        pretrained.embed_texts(42, ["a"])


def test_minilm_golden_hidden_states():
    """all-MiniLM-L6-v2 loaded into isojax's encoder against hidden states from the PyTorch reference
    (transformers BertModel), generated once into tests/golden (see its README)."""
    golden = np.load(GOLDEN / "minilm_hidden.npz")
    params, cfg = pretrained.load_minilm()
    ids, mask = pretrained.encode([str(t) for t in golden["texts"]])
    np.testing.assert_array_equal(ids, golden["ids"])
    hidden = jax.vmap(lambda t, m: tf.forward(params, t, cfg, key_mask=m)[0])(jnp.asarray(ids), jnp.asarray(mask))
    ours = np.asarray(hidden, np.float32)[:, golden["layers"]]
    real = np.broadcast_to(golden["mask"][:, None, :, None], ours.shape)
    assert np.max(np.abs(ours - golden["hidden"])[real]) < 1e-4
    assert cfg.layers == 6 and params.lm_head.shape == (30522, 384)
    # the same model through load("minilm") and embed_texts: the same rows
    rows = pretrained.embed_texts("minilm", [str(t) for t in golden["texts"]], max_len=128)
    want = golden["hidden"][rows.input, :, rows.position].transpose(1, 0, 2)
    assert np.max(np.abs(np.asarray(rows.hidden)[golden["layers"]] - want)) < 1e-4

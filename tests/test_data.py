import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from isojax.data import corpus, gp, real, teacher, tokens

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("kernel", ["rbf_0.1", "seasonality_24", "white_1", "dotproduct_1"])
def test_gp_sample_covariance_matches_kernel(kernel):
    length, draws = 24, 4000
    x = np.asarray(jax.vmap(lambda k: gp.sample(k, kernel, length))(jax.random.split(KEY, draws)), np.float64)
    emp = x.T @ x / draws
    k = np.asarray(gp.gram(gp.KERNELS[kernel], length), np.float64)
    # standard error of a sample second moment of zero-mean Gaussians: sqrt((K_ii K_jj + K_ij²) / draws)
    se = np.sqrt((np.outer(np.diag(k), np.diag(k)) + k**2) / draws)
    assert np.max(np.abs(emp - k) / (se + 1e-12)) < 6.0


def test_gp_bank_has_ten_kernels_and_default_length():
    assert len(gp.KERNELS) == 10
    assert gp.sample(KEY, "rbf_1").shape == (564,)
    with pytest.raises(ValueError, match="kernel must be one of"):
        gp.sample(KEY, "nope")
    composed = gp.compose(["rbf_1", "seasonality_24"], ["+"])
    assert gp.sample(KEY, composed, 32).shape == (32,)


_EIGH = jnp.linalg.eigh  # the real one, whatever a test patches


def _old_sample(key, kern, length):
    """gp.sample as it was before the decomposition was shared: one eigh per series."""
    lam, vecs = _EIGH(gp.gram(kern, length))
    return vecs @ (jnp.sqrt(jnp.maximum(lam, 0.0)) * jax.random.normal(key, (length,), vecs.dtype))


@pytest.mark.parametrize("kernel", ["seasonality_24", "dotproduct_1", "ks_003", "rbf_1+white_0.1"])
def test_gp_sample_many_equals_the_per_series_draws_bit_for_bit(kernel):
    draws = np.asarray(gp.sample_many(KEY, kernel, 5, 40))
    assert draws.shape == (5, 40)
    for i, k in enumerate(jax.random.split(KEY, 5)):
        np.testing.assert_array_equal(draws[i], np.asarray(gp.sample(k, kernel, 40)))
        np.testing.assert_array_equal(draws[i], np.asarray(_old_sample(k, gp.resolve(kernel), 40)))
    # a kernel function takes the same path, uncached
    np.testing.assert_array_equal(np.asarray(gp.sample_many(KEY, gp.resolve(kernel), 5, 40)), draws)


def test_gp_corpus_decomposes_each_kernel_once(monkeypatch):
    calls = []
    monkeypatch.setattr(gp.jnp.linalg, "eigh", lambda k: calls.append(k.shape) or _EIGH(k))
    gp._root.cache_clear()
    series = corpus._series("gp:rationalquadratic_1", KEY, 6, 48)
    assert calls == [(48, 48)]
    # the old kernels' corpus series are unchanged, number for number
    for s, k in zip(series, jax.random.split(KEY, 6)):
        np.testing.assert_array_equal(s, np.asarray(_old_sample(k, gp.KERNELS["rationalquadratic_1"], 48), np.float64))
    corpus._series("gp:rationalquadratic_1", jax.random.PRNGKey(5), 6, 48)  # a second corpus of the same kernel
    corpus._series("gp:rationalquadratic_1", KEY, 6, 40)  # another length: its own decomposition
    assert calls == [(48, 48), (40, 40)]


@pytest.mark.parametrize("name", ["ks_000", "ks_012", "ks_019", "(rbf_1+seasonality_24)*white_0.1"])
def test_gp_synthetic_sample_covariance_matches_its_kernel(name):
    length, draws = 24, 4000
    x = np.asarray(gp.sample_many(KEY, name, draws, length), np.float64)
    emp = x.T @ x / draws
    k = np.asarray(gp.gram(gp.resolve(name), length), np.float64)
    se = np.sqrt((np.outer(np.diag(k), np.diag(k)) + k**2) / draws)
    assert np.max(np.abs(emp - k) / (se + 1e-12)) < 6.0


def test_gp_compositions_are_left_to_right_and_spelled_one_way():
    names, ops = ["rbf_1", "seasonality_24", "white_0.1"], ["+", "*"]
    expr = gp.expression(names, ops)
    assert expr == "(rbf_1+seasonality_24)*white_0.1" and gp.parse(expr) == (names, ops)
    s = jnp.linspace(0.0, 1.0, 7)
    want = (gp.BANK["rbf_1"](s[:, None], s) + gp.BANK["seasonality_24"](s[:, None], s)) * gp.BANK["white_0.1"](
        s[:, None], s)
    np.testing.assert_allclose(gp.resolve(expr)(s[:, None], s), want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"must be written left to right .*'\(rbf_1\+seasonality_24\)\*white_0.1'"):
        gp.parse("rbf_1+seasonality_24*white_0.1")  # read with precedence this would be another kernel
    with pytest.raises(ValueError, match=r"names \['nope'\], not in the bank"):
        gp.parse("rbf_1+nope")
    with pytest.raises(ValueError, match="ops must be 1 of"):
        gp.compose(["rbf_1", "white_1"], ["-"])
    with pytest.raises(ValueError, match="kernel must be one of"):
        gp.sample_many(KEY, "ks_999", 2, 8)
    with pytest.raises(ValueError, match="count must be an integer >= 1"):
        gp.sample_many(KEY, "rbf_1", 0, 8)


def test_gp_bank_keeps_the_ten_kernels_first_and_in_order():
    assert list(gp.BANK)[:10] == list(gp.KERNELS) and len(gp.BANK) == 29
    assert all(gp.BANK[n] is gp.KERNELS[n] for n in gp.KERNELS)


def test_gp_synthetic_datasets_are_drawn_from_their_names():
    # every written-out entry is its name's KernelSynth draw: in float32 and in float64 (the composition must
    # not depend on JAX_ENABLE_X64), and asking twice or in another order gives the same
    assert len(gp.SYNTH) == 96 and all(gp.synth_kernel(n) == e for n, e in gp.SYNTH.items())
    assert [gp.synth_kernel(n) for n in ("ks_010", "ks_001")] == [gp.SYNTH["ks_010"], gp.SYNTH["ks_001"]]
    counts = [len(gp.parse(e)[0]) for e in gp.SYNTH.values()]
    assert set(counts) == {1, 2, 3, 4, 5}  # j ~ U{1..5}
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        gp.synth_kernel("")


@pytest.mark.float32_only  # the same table in float64 is checked by the test above, entry by entry
def test_gp_synthetic_bank_is_the_first_distinct_draws():
    # the selection rule on the first 24 names (the bank grows name by name, so a prefix is a smaller bank; all
    # 96 take ~10 s)
    assert gp.synth_bank(24) == dict(list(gp.SYNTH.items())[:24])
    # every entry a distinct dataset: its unit-trace Gram matrix U more than 1% (Frobenius) from the others' and
    # the 10 single kernels'. Cheaply: ‖U − S‖² over the first 64 rows bounds the full one from below, and
    # ‖S‖² ≤ (trace S)² = 1, so a pair more than 1e-4 apart there is distinct; the rest are checked in full
    names = [*gp.KERNELS, *gp.SYNTH]
    t = np.arange(564) / 564

    def rows(name, n):
        k = np.asarray(gp.resolve(name)(jnp.asarray(t[:n, None]), jnp.asarray(t[None, :])), np.float64)
        return k / np.trace(np.asarray(gp.gram(gp.resolve(name), 564), np.float64)) if n == 564 else k

    traces = np.array([np.sum(np.asarray(gp.resolve(n)(jnp.asarray(t), jnp.asarray(t)), np.float64)) for n in names])
    sub = np.stack([rows(n, 64).ravel() for n in names]) / traces[:, None]
    sq = np.sum(sub**2, 1)
    close = np.argwhere(np.triu(sq[:, None] + sq[None, :] - 2 * sub @ sub.T <= 1e-4, 1))
    full = {i: rows(names[i], 564) for i in set(close.ravel().tolist())}
    same = [(names[i], names[j]) for i, j in close
            if np.linalg.norm(full[i] - full[j]) <= 0.01 * max(np.linalg.norm(full[i]), np.linalg.norm(full[j]))]
    # white_0.1 and white_1 are one law up to scale (which mean scaling removes); no synthetic entry repeats one
    assert same == [("white_0.1", "white_1")]


def test_teacher_p_star_normalised_and_matches_sampling():
    t = teacher.make_teacher(KEY, vocab=8, dim=8, order=1)
    lp = teacher.log_p_star(t, jnp.arange(8)[:, None])
    np.testing.assert_allclose(jnp.exp(lp).sum(-1), 1.0, rtol=1e-5)
    seqs = np.asarray(teacher.sample_sequences(jax.random.PRNGKey(1), t, 4000, 3))
    prev, nxt = seqs[:, 1], seqs[:, 2]
    for s in range(8):
        sel = nxt[prev == s]
        freq = np.bincount(sel, minlength=8) / len(sel)
        p = np.exp(np.asarray(lp[s], np.float64))
        assert np.max(np.abs(freq - p) / np.sqrt(p * (1 - p) / len(sel) + 1e-12)) < 6.0


def test_teacher_entropy_rate_and_excess_ce():
    t = teacher.make_teacher(KEY, vocab=6, dim=4, order=2)
    h = float(teacher.stationary_entropy_rate(t))
    assert 0 < h < np.log(6)
    seqs = teacher.sample_sequences(jax.random.PRNGKey(2), t, 16, 10)
    exact = jnp.stack([teacher.log_p_star(t, seqs[:, max(i - 2, 0):i]) if i >= 2 else jnp.zeros((16, 6))
                       for i in range(10)], 1)
    assert float(teacher.excess_cross_entropy(t, seqs, exact)) == pytest.approx(0.0, abs=1e-5)
    uniform = jnp.full((16, 10, 6), -np.log(6.0))
    assert float(teacher.excess_cross_entropy(t, seqs, uniform)) > 0.05


def test_real_series_offline_six_sets_four_domains():
    names = list(real.SETS)
    assert len(names) >= 6 and len({real.SETS[n][0] for n in names}) >= 4
    for name in names:
        series = real.load(name)
        assert series and all(np.isfinite(s).all() and len(s) >= 50 for s in series)
    train, test = real.split_by_time(real.load("macrodata"), 0.25)
    assert all(len(a) + len(b) == 203 for a, b in zip(train, test))
    x, y = real.windows(real.load("nile"), 20, 5, stride=5)
    assert x.shape[1:] == (20,) and y.shape[1:] == (5,)
    with pytest.raises(ValueError, match="name must be one of"):
        real.load("electricity")


# Every finite float64, subnormals and the largest included, and the extremes drawn often: the tokenizers must
# give a defined scale (a positive normal float) or refuse clearly, whatever a series holds.
EXTREMES = [0.0, 5e-324, -5e-324, 1e-320, tokens.TINY, 1e-300, 1e300, 1e307, 1.7976931348623157e308,
            -1.7976931348623157e308]
FINITE = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(EXTREMES))
SERIES = st.lists(FINITE, min_size=1, max_size=30)


@settings(max_examples=1000)
@example([5e-324] * 3)  # found by hypothesis in CI: the scale underflowed to 0, then int64 overflowed in encode
@example([5e-324])
@example([-5e-324, 0.0, 5e-324])
@example([1.7976931348623157e308, -1.7976931348623157e308])
@example([1e300, -1e300, 1.0])
@example([0.0, 0.0])
@given(SERIES)
def test_digit_tokenizer_round_trip(xs):
    tok = tokens.DigitTokenizer(precision=2, digits=5)
    x = np.asarray(xs)
    try:
        ids, scale = tok.encode(x)
    except ValueError as err:  # the one refusal: decoded values would overflow float64, only near its limit
        assert "too large to tokenize" in str(err) and np.max(np.abs(x)) > 1e307
        return
    assert np.isfinite(scale) and scale >= tokens.TINY  # defined: never 0, never subnormal
    assert ids.min() >= 0 and ids.max() < tok.vocab
    back = tok.decode(ids, scale)
    assert back.shape == x.shape and np.isfinite(back).all()
    with np.errstate(over="ignore"):
        in_range = np.abs(x) / scale * 100 <= 10**5 - 1
    assert np.all(np.abs(back - x)[in_range] <= 0.5 * scale * 10**-2 * (1 + 1e-9))


@settings(max_examples=1000)
@example([5e-324] * 3)
@example([-5e-324, 0.0, 5e-324])
@example([1.7976931348623157e308] * 2)  # mean |x| must not overflow to inf
@example([1e308, 1e308, -1e308])
@example([1e300, -1e-300])
@example([0.0])
@given(SERIES)
def test_bin_tokenizer_round_trip_and_clipping(xs):
    tok = tokens.BinTokenizer(bins=100, low=-4, high=4)
    x = np.asarray(xs)
    try:
        ids, scale, clipped = tok.encode(x)
    except ValueError as err:
        assert "too large to tokenize" in str(err) and np.max(np.abs(x)) > 1e307
        return
    assert np.isfinite(scale) and scale >= tokens.TINY
    assert ids.min() >= tok.SPECIAL and ids.max() < tok.vocab
    back = tok.decode(ids, scale)
    assert np.isfinite(back).all()
    with np.errstate(over="ignore"):
        inside = np.abs(x / scale) <= 4
    assert clipped == int((~inside).sum())
    assert np.all(np.abs(back - x)[inside] <= tok.half_width * scale * (1 + 1e-9))
    assert tok.values.shape == (tok.vocab,)


def test_tokenizer_scales_are_defined_and_bad_scales_refused():
    digits, bins = tokens.DigitTokenizer(precision=2, digits=5), tokens.BinTokenizer()
    for tok in (digits, bins):
        assert tok.scale_for([5e-324, 5e-324]) == tokens.TINY  # raised to the least normal float
        assert tok.scale_for([0.0, 0.0]) == 1.0
        for bad in (0.0, -1.0, np.inf, np.nan):
            with pytest.raises(ValueError, match="scale must be a positive finite number"):
                tok.encode([1.0, 2.0], scale=bad)
        with pytest.raises(ValueError, match="holds complex values"):
            tok.encode(np.array([1.0 + 2j, 3.0]))
    assert bins.scale_for([1.7976931348623157e308] * 3) == 1.7976931348623157e308  # no overflow in the mean
    with pytest.raises(ValueError, match=r"precision <= digits <= 18"):
        tokens.DigitTokenizer(precision=1, digits=19)
    with pytest.raises(ValueError, match=r"precision <= digits <= 18"):
        tokens.DigitTokenizer(precision=4, digits=3)
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\]"):
        tokens.DigitTokenizer(percentile=0)
    with pytest.raises(ValueError, match=r"2 <= bins <= 2\^20 and finite low < high"):
        tokens.BinTokenizer(bins=2**21)
    with pytest.raises(ValueError, match=r"finite low < high"):
        tokens.BinTokenizer(low=-np.inf)


def test_tokenizer_bad_input():
    with pytest.raises(ValueError, match=r"x must be a non-empty 1-D series, got shape \(2, 2\)"):
        tokens.BinTokenizer().encode(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"x has non-finite values"):
        tokens.DigitTokenizer().encode([1.0, np.inf])


@pytest.mark.parametrize("tokenizer", ["bins", "digits"])
@pytest.mark.parametrize("source", ["teacher", "gp:rbf_0.1", "gp:ks_003", "real:nile"])
def test_corpus_every_source_gives_windows_and_held_out_series(source, tokenizer):
    c = corpus.build(source, tokenizer, KEY, seq_len=32, count=4, length=200)
    assert c.sequences.ndim == 2 and c.sequences.shape[1] == 32 and c.sequences.dtype == np.int32
    assert 0 <= c.sequences.min() and c.sequences.max() < c.tokenizer.vocab < c.vocab  # MASK stays unused
    assert len(c.contexts) == len(c.targets) > 0
    assert all(len(t) == 16 and np.isfinite(t).all() for t in c.targets)


def test_teacher_source_is_one_law_sampled_anew_per_key():
    t = teacher.make_teacher(jax.random.PRNGKey(corpus.TEACHER_KEY))
    for seed in (1, 2):  # the same fixed law, whatever the data key; the samples change with it
        got = corpus._series("teacher", jax.random.PRNGKey(seed), 3, 50)
        np.testing.assert_array_equal(np.stack(got),
                                      np.asarray(teacher.sample_series(jax.random.PRNGKey(seed), t, 3, 50)))
    assert not np.allclose(corpus._series("teacher", jax.random.PRNGKey(1), 1, 50)[0],
                           corpus._series("teacher", jax.random.PRNGKey(2), 1, 50)[0])


def test_corpus_bad_source():
    with pytest.raises(ValueError, match="source must be 'teacher'"):
        corpus.build("gaussian", "bins", KEY)
    with pytest.raises(ValueError, match="tokenizer must be 'bins' or 'digits'"):
        corpus.build("teacher", "words", KEY)

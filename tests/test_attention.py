import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from isojax import attention as att
from tests.conftest import X64, tol


def _relative(a, b):
    a, b = jax.tree.leaves(a), jax.tree.leaves(b)
    num = sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(a, b))
    den = sum(float(jnp.sum(y ** 2)) for y in b)
    return (num / den) ** 0.5


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_closed_form_vjp_equals_jax_vjp(causal, bias, padded):
    ks = jax.random.split(jax.random.PRNGKey(3), 4)
    params = att.init_attention(ks[0], 12, heads=3, d_k=4, d_v=5, bias=bias)
    x = jax.random.normal(ks[1], (9, 12))
    g_y = jax.random.normal(ks[2], (9, 12))
    key_mask = jnp.array([True, False, True, True, False, True, True, True, False]) if padded else None
    y, vjp = jax.vjp(lambda p, x_: att.self_attention(p, x_, causal, key_mask), params, x)
    auto_p, auto_x = vjp(g_y)
    y_cf, grads = att.attention_vjp(params, x, g_y, causal, key_mask)
    np.testing.assert_array_equal(y, y_cf)
    # docs/theory.md T3a: relative error ≤ 1e-10 in float64
    assert _relative((grads.params, grads.x), (auto_p, auto_x)) <= tol(1e-5, 1e-10)
    assert float(jnp.max(jnp.abs(grads.scores.sum(-1)))) <= tol(1e-5, 1e-13) * float(jnp.max(jnp.abs(grads.scores)))
    # custom_vjp route gives the same gradient under jax.grad
    cf_p, cf_x = jax.grad(lambda p, x_: jnp.sum(att.self_attention_closed_form(p, x_, causal, key_mask) * g_y),
                          argnums=(0, 1))(params, x)
    assert _relative((cf_p, cf_x), (auto_p, auto_x)) <= tol(1e-5, 1e-10)


def test_init_attention_weights_are_those_every_model_was_trained_from():
    # init_from_normal holds the rule now; the draws, and so every trained model's start, are what they were:
    # standard normals from keys 0-7 of split(key, 8), weights over √fan_in, biases times 0.1
    ks = jax.random.split(jax.random.PRNGKey(3), 8)
    params = att.init_attention(jax.random.PRNGKey(3), 12, heads=3, d_k=4, d_v=5)
    shapes = [(3, 12, 4), (3, 12, 4), (3, 12, 5), (3, 5, 12), (3, 4), (3, 4), (3, 5), (12,)]
    scales = [12 ** -0.5] * 3 + [15 ** -0.5] + [0.1] * 4
    for i, name in enumerate(("w_q", "w_k", "w_v", "w_o", "b_q", "b_k", "b_v", "b_o")):
        draw = jax.random.normal(ks[i], shapes[i], params.w_q.dtype)
        expected = draw / (12 ** 0.5 if i < 3 else 15 ** 0.5) if i < 4 else 0.1 * draw
        np.testing.assert_array_equal(getattr(params, name), expected, err_msg=name)
        assert abs(float(jnp.std(getattr(params, name))) / scales[i] - 1.0) < 0.8
    assert att.init_attention(jax.random.PRNGKey(3), 12, 3, 4, 5, bias=False).b_q is None


_MASKS = {"none": (False, None), "causal": (True, None), "padding": (False, [True, False, True, True, False, True]),
          "both": (True, [True, False, True, True, False, True]),
          "blind": (True, [False, False, True, True, False, True])}  # causal + padding: queries 0, 1 see no key


@pytest.mark.parametrize("mask", sorted(_MASKS))
@pytest.mark.parametrize("scale", [None, 1.0, 0.1, 0.25])  # 1/√d_k, T5's 1, any, 1/d_k (d_k = 4)
@pytest.mark.parametrize("with_bias", [False, True])
def test_every_scale_bias_and_mask_agrees_with_jax_vjp(mask, scale, with_bias):
    """docs/theory.md T3a with the options the models use: the forward records scale and bias in its cache, the
    closed-form backward honours them (∂ℓ/∂B = G_S and ∂ℓ/∂s included), attention_vjp and the closed-form
    custom_vjp take them, and all of it equals jax.vjp of `self_attention`, the wrapper the transformer runs."""
    causal, key_mask = _MASKS[mask]
    key_mask = None if key_mask is None else jnp.array(key_mask)
    ks = jax.random.split(jax.random.PRNGKey(17), 4)
    params = att.init_attention(ks[0], 8, heads=2, d_k=4, d_v=3)
    x = jax.random.normal(ks[1], (6, 8), params.w_q.dtype)
    g_y = jax.random.normal(ks[2], (6, 8), params.w_q.dtype)
    bias = jax.random.normal(ks[3], (2, 6, 6), params.w_q.dtype) if with_bias else None
    s = None if scale is None else jnp.asarray(scale, params.w_q.dtype)

    def wrapper(p, x_, b, s_):
        return att.self_attention(p, x_, causal, key_mask, b, s_)

    y, vjp = jax.vjp(wrapper, params, x, bias, s) if s is not None else \
        jax.vjp(lambda p, x_, b: wrapper(p, x_, b, None), params, x, bias)
    auto = vjp(g_y)
    y_cf, grads = att.attention_vjp(params, x, g_y, causal, key_mask, bias, scale)
    _, cache = att.attention_forward(params, x, causal, key_mask, bias, scale)
    np.testing.assert_array_equal(y, y_cf)
    assert float(cache.scale) == pytest.approx(0.5 if scale is None else scale, rel=1e-7)
    assert (cache.bias is None) == (bias is None)
    closed = (grads.params, grads.x) + ((grads.bias,) if with_bias else ()) + ((grads.scale,) if s is not None else ())
    wanted = tuple(auto[:2]) + ((auto[2],) if with_bias else ()) + ((auto[-1],) if s is not None else ())
    assert _relative(closed, wanted) <= tol(2e-6, 1e-13)
    assert (grads.bias is None) == (bias is None)
    # the closed-form custom_vjp under jax.grad: every parameter (biases included), x, the score bias and scale
    loss = lambda p, x_, b, s_: jnp.sum(att.self_attention_closed_form(p, x_, causal, key_mask, b, s_) * g_y)
    if s is None:
        cf = jax.grad(lambda p, x_, b: loss(p, x_, b, None), argnums=(0, 1, 2))(params, x, bias)
    else:
        cf = jax.grad(loss, argnums=(0, 1, 2, 3))(params, x, bias, s)
    assert _relative(tuple(c for c in cf if c is not None), wanted) <= tol(2e-6, 1e-13)
    np.testing.assert_allclose(att.self_attention_closed_form(params, x, causal, key_mask, bias, scale), y,
                               rtol=0, atol=0)


def test_a_cache_without_options_means_the_default_scale():
    ks = jax.random.split(jax.random.PRNGKey(19), 3)
    params = att.init_attention(ks[0], 8, heads=2, d_k=4)
    x, g_y = jax.random.normal(ks[1], (5, 8)), jax.random.normal(ks[2], (5, 8))
    _, cache = att.attention_forward(params, x)
    old_style = att.AttentionCache(*cache[:5])  # written by code that knows nothing of scale and bias
    a, b = att.attention_backward(params, x, cache, g_y), att.attention_backward(params, x, old_style, g_y)
    assert _relative((a.params, a.x), (b.params, b.x)) <= tol(1e-7, 1e-15)


def test_bad_scale_and_bias_are_refused():
    params = att.init_attention(jax.random.PRNGKey(0), 8, heads=2)
    x = jnp.ones((4, 8))
    with pytest.raises(ValueError, match="scale must be finite"):
        att.self_attention(params, x, scale=float("inf"))
    with pytest.raises(ValueError, match="scale must be a number or a 0-d array"):
        att.self_attention(params, x, scale=jnp.ones(2))
    with pytest.raises(ValueError, match=r"bias must have shape \(2, 4, 4\) \[H, T, T\], got shape \(4, 4\)"):
        att.attention_vjp(params, x, x, bias=jnp.zeros((1, 4, 4))[0])
    with pytest.raises(ValueError, match=r"bias must have shape \(2, 4, 4\)"):
        att.self_attention_closed_form(params, x, bias=jnp.zeros((3, 4, 4)))


@pytest.mark.parametrize("causal", [False, True])
def test_check_grads_numerical(causal):
    ks = jax.random.split(jax.random.PRNGKey(5), 2)
    params = att.init_attention(ks[0], 6, heads=2, d_k=3)
    x = jax.random.normal(ks[1], (5, 6))
    # Numerical differences need float64 for a tight check; in float32 the step and tolerance are looser.
    kwargs = dict(eps=1e-6, atol=1e-7, rtol=1e-6) if X64 else dict(eps=1e-2, atol=5e-2, rtol=5e-2)
    check_grads(lambda p, x_: att.self_attention_closed_form(p, x_, causal), (params, x), order=1,
                modes=["rev"], **kwargs)


@pytest.mark.parametrize("causal", [False, True])
def test_key_bias_gradient_is_zero(causal):
    ks = jax.random.split(jax.random.PRNGKey(7), 3)
    params = att.init_attention(ks[0], 8, heads=2, d_k=4)
    x = jax.random.normal(ks[1], (6, 8))
    # an arbitrary non-linear loss
    loss = lambda p: jnp.sum(jnp.tanh(att.self_attention(p, x, causal)) ** 3)
    g = jax.grad(loss)(params)
    scale = float(jnp.linalg.norm(g.b_q))
    assert float(jnp.linalg.norm(g.b_k)) <= tol(1e-5, 1e-13) * scale


def test_causal_output_ignores_future():
    ks = jax.random.split(jax.random.PRNGKey(9), 2)
    params = att.init_attention(ks[0], 8, heads=2)
    x = jax.random.normal(ks[1], (6, 8))
    jac = jax.jacobian(lambda x_: att.self_attention(params, x_, causal=True))(x)  # [T, d, T, d]
    for i in range(6):
        assert float(jnp.abs(jac[i, :, i + 1:, :]).max(initial=0.0)) == 0.0


@pytest.mark.parametrize("call, match", [
    (lambda p: att.self_attention(p, jnp.ones((4,))), r"x must have rank 2 \[T, d_model\], got shape \(4,\)"),
    (lambda p: att.self_attention(p, jnp.ones((4, 5))), r"x and params.w_q disagree on d_model: 5 vs 8"),
    (lambda p: att.self_attention(p, jnp.ones((4, 8)), key_mask=jnp.ones(3, bool)), r"key_mask must have shape \(4,\)"),
    (lambda p: att.self_attention(p, jnp.full((4, 8), jnp.nan)), r"x has non-finite values \(shape \(4, 8\)\)"),
    (lambda p: att.attention_vjp(p, jnp.ones((4, 8)), jnp.ones((3, 8))), r"g_y must have the output's shape \(4, 8\)"),
    (lambda p: att.init_attention(jax.random.PRNGKey(0), 0, 2), r"d_model must be an integer >= 1"),
])
def test_bad_input(call, match):
    params = att.init_attention(jax.random.PRNGKey(0), 8, heads=2)
    with pytest.raises(ValueError, match=match):
        call(params)


def test_query_that_sees_no_key_gets_b_o_and_zero_gradients():
    ks = jax.random.split(jax.random.PRNGKey(11), 3)
    params = att.init_attention(ks[0], 8, heads=2, d_k=3, d_v=5)
    x = jax.random.normal(ks[1], (5, 8))
    g_y = jax.random.normal(ks[2], (5, 8))
    key_mask = jnp.array([False, False, True, True, False])  # causal: queries 0 and 1 see no key
    y, cache = att.attention_forward(params, x, True, key_mask)
    np.testing.assert_array_equal(y[:2], jnp.broadcast_to(params.b_o, (2, 8)))
    assert float(jnp.abs(cache.a[:, :2]).max()) == 0.0
    auto_p, auto_x = jax.vjp(lambda p, x_: att.self_attention(p, x_, True, key_mask), params, x)[1](g_y)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves((auto_p, auto_x)))
    _, grads = att.attention_vjp(params, x, g_y, True, key_mask)
    assert float(jnp.abs(grads.scores[:, :2]).max()) == 0.0
    assert _relative((grads.params, grads.x), (auto_p, auto_x)) <= tol(1e-5, 1e-10)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_jacobian_blocks_through_keys_and_values_equal_the_mask(causal, padded):
    """Both ways: ∂y_i/∂x_j ≠ 0 (queries held fixed by W_Q = 0) exactly where query i may see key j."""
    ks = jax.random.split(jax.random.PRNGKey(13), 2)
    params = att.init_attention(ks[0], 6, heads=2, d_k=2, d_v=4)
    params = params.replace(w_q=jnp.zeros_like(params.w_q))
    x = jax.random.normal(ks[1], (6, 6))
    key_mask = jnp.array([True, False, True, True, False, True]) if padded else None
    jac = jax.jacobian(lambda x_: att.self_attention(params, x_, causal, key_mask))(x)  # [T, d, T, d]
    seen = np.asarray(jnp.any(jac != 0, axis=(1, 3)))
    expected = np.array([[(j <= i or not causal) and (key_mask is None or bool(key_mask[j])) for j in range(6)]
                         for i in range(6)])
    np.testing.assert_array_equal(seen, expected)

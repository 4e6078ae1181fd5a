import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from isojax import head
from tests.conftest import tol


def _head(key, vocab=7, dim=4):
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, (vocab, dim)), jax.random.normal(k2, (dim,))


@given(shift=st.floats(-1e4, 1e4), z_scale=st.floats(0.0, 1e3), seed=st.integers(0, 2**31 - 1))
def test_shift_invariance_any_shift(shift, z_scale, seed):
    phi, h = _head(jax.random.PRNGKey(seed))
    b = z_scale * jax.random.uniform(jax.random.PRNGKey(seed + 1), (phi.shape[0],), minval=-1, maxval=1)
    a = jnp.asarray(shift, b.dtype)
    scale = float(jnp.finfo(b.dtype).eps) * (abs(shift) + float(jnp.max(jnp.abs(head.logits(phi, h, b)))) + 1.0)
    np.testing.assert_allclose(head.log_probs(phi, h, b + a), head.log_probs(phi, h, b), atol=16 * scale, rtol=0)
    np.testing.assert_allclose(head.probs(phi, h, b + a), head.probs(phi, h, b), atol=16 * scale, rtol=0)
    np.testing.assert_allclose(head.log_partition(phi, h, b + a) - a, head.log_partition(phi, h, b),
                               atol=16 * scale, rtol=0)


def test_stable_for_logits_in_the_thousands(key):
    phi, h = _head(key)
    b = jnp.linspace(-3000.0, 3000.0, phi.shape[0])
    p = head.probs(phi, h, b)
    assert bool(jnp.all(jnp.isfinite(p))) and float(p.sum()) == pytest.approx(1.0, abs=1e-6)
    assert bool(jnp.isfinite(head.log_partition(phi, h, b)))


def test_batched_shapes(key):
    phi, _ = _head(key, 9, 5)
    hs = jax.random.normal(key, (3, 2, 5))
    assert head.logits(phi, hs).shape == (3, 2, 9)
    assert head.log_partition(phi, hs).shape == (3, 2)
    assert head.fisher(phi, hs).shape == (3, 2, 5, 5)
    y = jnp.zeros((3, 2), jnp.int32)
    assert head.cross_entropy(phi, hs, y).shape == (3, 2)
    assert head.conditional_mean(phi, hs, jnp.arange(9.0)).shape == (3, 2)
    # vmap over a batch gives the same as the broadcast form
    np.testing.assert_allclose(jax.vmap(lambda x: head.log_probs(phi, x))(hs.reshape(6, 5)),
                               head.log_probs(phi, hs).reshape(6, 9), rtol=tol(1e-5, 1e-12), atol=tol(1e-5, 1e-12))


def test_fisher_is_hessian_of_kl_and_covariance(key):
    phi, h = _head(key, 11, 4)
    lp = head.log_probs(phi, h)
    hess = jax.hessian(lambda lam: head.kl_divergence(lp, head.log_probs(phi, h + lam)))(jnp.zeros(4))
    f = head.fisher(phi, h)
    np.testing.assert_allclose(f, hess, rtol=tol(1e-4, 1e-10), atol=tol(1e-5, 1e-12))
    p = np.asarray(jnp.exp(lp), np.float64)
    cov = np.cov(np.asarray(phi, np.float64).T, aweights=p, bias=True)
    np.testing.assert_allclose(f, cov, rtol=tol(1e-4, 1e-10), atol=tol(1e-5, 1e-12))


def test_closed_form_gradients_match_autodiff(key):
    phi, h = _head(key, 6, 3)
    b = jnp.arange(6.0) / 6
    y = jnp.asarray(2)
    g_phi, g_h, g_b = jax.grad(lambda p, x, c: head.cross_entropy(p, x, y, c), argnums=(0, 1, 2))(phi, h, b)
    np.testing.assert_allclose(head.grad_logits(phi, h, y, b), g_b, rtol=tol(1e-5, 1e-12), atol=tol(1e-6, 1e-14))
    np.testing.assert_allclose(head.grad_h(phi, h, y, b), g_h, rtol=tol(1e-4, 1e-12), atol=tol(1e-6, 1e-14))
    np.testing.assert_allclose(head.grad_phi(phi, h, y, b), g_phi, rtol=tol(1e-5, 1e-12), atol=tol(1e-6, 1e-14))


def test_conditional_mean_and_kl(key):
    phi, h = _head(key, 5, 3)
    values = jnp.arange(5.0)
    p = head.probs(phi, h)
    assert float(head.conditional_mean(phi, h, values)) == pytest.approx(float(p @ values), rel=1e-5)
    lp = head.log_probs(phi, h)
    assert float(head.kl_divergence(lp, lp)) == pytest.approx(0.0, abs=1e-6)
    assert float(head.kl_divergence(lp, jnp.log(jnp.full(5, 0.2)))) > 0


@pytest.mark.parametrize("call, match", [
    (lambda: head.logits(jnp.ones(4), jnp.ones(4)), r"phi must have rank 2 \[V, d\], got shape \(4,\)"),
    (lambda: head.logits(jnp.ones((3, 4)), jnp.ones(5)),
     r"phi and h disagree on the embedding dimension d: 4 vs 5"),
    (lambda: head.logits(jnp.ones((3, 4)), jnp.ones(4), jnp.ones(2)),
     r"phi and b disagree on the vocabulary size V: 3 vs 2"),
    (lambda: head.probs(jnp.ones((0, 4)), jnp.ones(4)), r"phi is empty \(shape \(0, 4\)\)"),
    (lambda: head.probs(jnp.ones((3, 4)).at[1, 1].set(jnp.nan), jnp.ones(4)),
     r"phi has non-finite values \(shape \(3, 4\)\)"),
    (lambda: head.probs(jnp.ones((3, 4)), jnp.full(4, jnp.inf)), r"h has non-finite values \(shape \(4,\)\)"),
    (lambda: head.cross_entropy(jnp.ones((3, 4)), jnp.ones(4), 3), r"y has ids outside \[0, 3\)"),
    (lambda: head.cross_entropy(jnp.ones((3, 4)), jnp.ones((2, 4)), jnp.zeros(3, jnp.int32)),
     r"y must have shape \(2,\)"),
    (lambda: head.conditional_mean(jnp.ones((3, 4)), jnp.ones(4), jnp.ones(2)),
     r"phi and values disagree on the vocabulary size"),
])
def test_bad_input_names_argument_and_shape(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_kl_divergence_rejects_nan_and_propagates_it_under_jit():
    lp = jnp.log(jnp.array([0.5, 0.5, 0.0]))  # -inf is a zero probability, allowed
    assert float(head.kl_divergence(lp, jnp.log(jnp.array([0.25, 0.25, 0.5])))) == pytest.approx(np.log(2.0), rel=1e-6)
    bad = lp.at[1].set(jnp.nan)
    with pytest.raises(ValueError, match=r"log_p has NaN values \(shape \(3,\)\)"):
        head.kl_divergence(bad, lp)
    with pytest.raises(ValueError, match=r"log_q has NaN values"):
        head.kl_divergence(lp, bad)
    out = jax.jit(head.kl_divergence)(jnp.stack([lp, bad]), jnp.stack([lp, lp]))
    assert float(out[0]) == 0.0 and bool(jnp.isnan(out[1]))

"""Post-hoc isotropy transforms against a NumPy reference (float64 SVD), and what they do to the measures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from isojax import isotropy
from isojax.isotropy import transforms as T
from tests.conftest import tol

KEY = jax.random.PRNGKey(0)


def _cloud(n=200, d=12, seed=0):
    """An anisotropic cloud with a common vector and a few strong directions."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.geomspace(6.0, 0.5, d) @ np.linalg.qr(rng.normal(size=(d, d)))[0] + 3.0


def _np_pca(x):
    """Mean, eigenvalues and directions (rows, sklearn's signs) of the covariance, from an SVD in float64."""
    x = np.asarray(x, np.float64)
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
    return mean, s**2 / (len(x) - 1), vt * signs[:, None]


def _np_transform(kind, x, fit_on, components=2, eps=1e-6):
    mean, lam, vt = _np_pca(fit_on)
    c = np.asarray(x, np.float64) - mean
    if kind == "centre":
        return c
    if kind == "abtt":
        u = vt[:components]
        return c - c @ u.T @ u
    w = vt.T / np.sqrt(lam + eps * lam.mean())
    return c @ w @ vt if kind == "zca" else c @ w


CASES = {"centre": T.centre(), "abtt": T.all_but_the_top(2), "zca": T.whiten("zca"), "pca": T.whiten("pca")}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_transforms_match_the_numpy_reference_on_fitted_and_new_rows(kind):
    x, new = _cloud(), _cloud(50, seed=1)
    t = CASES[kind]
    state = t.fit(jnp.asarray(x))
    for rows in (x, new):  # fit on one set, apply to another
        np.testing.assert_allclose(t.transform(state, jnp.asarray(rows)), _np_transform(kind, rows, x),
                                   rtol=tol(2e-4, 1e-9), atol=tol(2e-4, 1e-9))
    # a frozen pytree: jit takes it as it is, and jit(fit) gives the same state
    jitted = jax.jit(t.fit)(jnp.asarray(x))
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(a, b, rtol=tol(1e-4, 1e-10), atol=tol(1e-5, 1e-12))
    np.testing.assert_allclose(jax.jit(t.transform)(state, jnp.asarray(new)), t.transform(state, jnp.asarray(new)),
                               rtol=tol(1e-5, 1e-12), atol=tol(1e-5, 1e-12))


def test_what_each_transform_guarantees():
    x = jnp.asarray(_cloud(400, 10))
    for kind in ("zca", "pca"):
        y = np.asarray(T.fit_transform(T.whiten(kind), x)[1], np.float64)
        # identity covariance up to the regulariser: λ / (λ + ε·mean λ), about 1 - 3e-5 at this cloud's smallest λ
        np.testing.assert_allclose(np.cov(y.T), np.eye(10), atol=tol(1e-3, 1e-4))
    state, y = T.fit_transform(T.all_but_the_top(3), x)
    np.testing.assert_allclose(np.asarray(y) @ np.asarray(state.components).T, 0.0, atol=tol(1e-3, 1e-9))
    np.testing.assert_allclose(np.asarray(state.components) @ np.asarray(state.components).T, np.eye(3),
                               atol=tol(1e-5, 1e-12))
    # ZCA is the whitening closest to the input: nearer to the centred cloud than PCA's rotated coordinates
    centred = np.asarray(x - x.mean(0))
    zca, pca = (np.asarray(T.fit_transform(T.whiten(k), x)[1]) for k in ("zca", "pca"))
    assert np.linalg.norm(zca - centred) < np.linalg.norm(pca - centred)


def test_whitening_makes_a_cloud_isotropic_and_zca_and_pca_agree_on_every_measure():
    x = jnp.asarray(_cloud(300, 8))
    before = isotropy.measure(x, seed=0, measures=["isoscore", "cosine", "top1_variance", "lid"])
    after = {k: isotropy.measure(T.fit_transform(T.whiten(k), x)[1], seed=0,
                                 measures=["isoscore", "cosine", "top1_variance", "lid"]) for k in ("zca", "pca")}
    assert before["isoscore"] < 0.5 < 0.95 < after["zca"]["isoscore"]
    assert before["cosine"] > 0.5 > 0.05 > abs(after["zca"]["cosine"])  # the common vector is gone
    for name, value in after["zca"].items():  # a rotation apart: every measure the same
        assert after["pca"][name] == pytest.approx(value, rel=tol(1e-3, 1e-9), abs=tol(1e-5, 1e-12)), name


def test_chain_is_the_composition():
    x = jnp.asarray(_cloud())
    t = T.chain(T.all_but_the_top(1), T.whiten("zca"))
    states, y = T.fit_transform(t, x)
    s1, z = T.fit_transform(T.all_but_the_top(1), x)
    np.testing.assert_allclose(y, T.fit_transform(T.whiten("zca"), z)[1], rtol=tol(1e-4, 1e-10), atol=tol(1e-4, 1e-10))
    assert isinstance(states, tuple) and len(states) == 2


@pytest.mark.parametrize("scale", [1e-30, 1e-5, 1e5, 1e30])
def test_every_scale_is_fitted_alike_without_overflow(scale):
    # 1e±5 are not rescaled internally: there an absolute eps would swamp (or vanish beside) the eigenvalues
    x = _cloud(100, 6)
    for kind in ("abtt", "zca"):
        t = CASES[kind]
        small = np.asarray(t.transform(t.fit(jnp.asarray(x * scale)), jnp.asarray(x * scale)))
        expected = _np_transform(kind, x, x) * (scale if kind == "abtt" else 1.0)
        np.testing.assert_allclose(small, expected, rtol=tol(2e-3, 1e-9), atol=tol(2e-3, 1e-9) * abs(expected).max())


@pytest.mark.parametrize("call, match", [
    (lambda: T.all_but_the_top(-1), r"components must be an integer >= 0, got -1"),
    (lambda: T.all_but_the_top(5).fit(jnp.ones((4, 3)) * jnp.arange(3.0)[:, None].T + jnp.arange(4.0)[:, None]),
     r"components must be smaller than both n and d of x, got 5 for x of shape \(4, 3\)"),
    (lambda: T.whiten("sphere"), r"kind must be one of \['zca', 'pca'\], got 'sphere'"),
    (lambda: T.whiten(eps=0.0), r"eps must be positive"),
    (lambda: T.whiten().fit(jnp.ones(5)), r"x must have rank 2 \[n, d\], got shape \(5,\)"),
    (lambda: T.whiten().fit(jnp.ones((6, 3))), r"x is a point mass"),
    (lambda: T.centre().transform(T.centre().fit(jnp.ones((6, 3))), jnp.ones((2, 4))),
     r"x and the fitted state disagree on the dimension d: 4 vs 3"),
    (lambda: T.chain(), r"chain needs one or more Transform"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()

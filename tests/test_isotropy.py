import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from isojax import cluster, distributions, isotropy
from tests.conftest import tol

KEY = jax.random.PRNGKey(0)


def _clusters(key, n=600, d=32, k=4, sep=6.0):
    k1, k2, k3 = jax.random.split(key, 3)
    centres = jax.random.normal(k1, (k, d)) * sep / np.sqrt(2)
    labels = jax.random.randint(k2, (n,), 0, k)
    return centres[labels] + jax.random.normal(k3, (n, d)), labels


def test_isoscore_invariances_and_extremes():
    x = jax.random.normal(KEY, (4000, 8))
    base = float(isotropy.isoscore(x))
    assert base > 0.95
    rot, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(1), (8, 8)))
    for moved in (x + 7.0, x @ rot, 3.0 * x):
        assert float(isotropy.isoscore(moved)) == pytest.approx(base, abs=tol(1e-4, 1e-10))
    rank_one = jax.random.normal(KEY, (500, 1)) * jnp.ones((1, 8))
    assert float(isotropy.isoscore(rank_one)) == pytest.approx(0.0, abs=1e-4)
    assert float(isotropy.isoscore_star(x, 0.0)) == pytest.approx(base, abs=1e-3)
    # differentiable, for use as a penalty
    g = jax.grad(lambda y: isotropy.isoscore_star(y, 0.1))(x[:100])
    assert bool(jnp.all(jnp.isfinite(g)))


def test_d80_and_top3():
    lam = jnp.array([5.0, 3.0, 1.0, 0.5, 0.5])
    x = jax.random.normal(KEY, (20000, 5)) * jnp.sqrt(lam)
    assert int(isotropy.d_80(x)) == 2  # (5+3)/10 = 0.8
    np.testing.assert_allclose(isotropy.top3_variance_ratio(x), [0.5, 0.3, 0.1], atol=0.02)


def test_mean_cosine_matches_pairwise():
    x = jax.random.normal(KEY, (50, 6)) + 1.0
    u = np.asarray(x / jnp.linalg.norm(x, axis=1, keepdims=True), np.float64)
    c = u @ u.T
    expected = (c.sum() - np.trace(c)) / (50 * 49)
    assert float(isotropy.mean_cosine(x)) == pytest.approx(expected, abs=tol(1e-5, 1e-12))


def test_silhouette_equals_sklearn():
    x, labels = _clusters(KEY, n=300, k=3, sep=2.0)
    labels = np.asarray(labels).copy()
    labels[:1] = 2  # and a few points in odd places
    dist = isotropy.pairwise_distances(x)
    ours = float(cluster.silhouette_from_distances(dist, jnp.asarray(labels), 16))
    assert ours == pytest.approx(silhouette_score(np.asarray(x, np.float64), labels), abs=tol(1e-4, 1e-10))


def test_silhouette_singleton_clusters_are_zero():
    x = jnp.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0]])
    labels = jnp.array([0, 0, 1])
    ours = float(cluster.silhouette_from_distances(isotropy.pairwise_distances(x), labels, 4))
    assert ours == pytest.approx(silhouette_score(np.asarray(x), np.asarray(labels)), abs=1e-5)


def test_clustered_cosine_finds_k_like_sklearn_and_is_near_zero():
    for k in (3, 5):
        x, _ = _clusters(jax.random.PRNGKey(k), n=800, d=32, k=k, sep=8.0)
        res = isotropy.clustered_cosine(x, KEY)
        xs = np.asarray(x - x.mean(0), np.float64)
        sils = [silhouette_score(xs, KMeans(j, n_init=4, random_state=0).fit(xs).labels_) for j in range(2, 17)]
        assert int(res.best_k) == k == int(np.argmax(sils)) + 2
        # up to the true k the optimum is unique, so both find the same clustering
        np.testing.assert_allclose(res.silhouettes[:k - 1], sils[:k - 1], atol=0.02)
        assert abs(float(res.score)) < 0.05


def test_clustered_cosine_falls_back_to_one_cluster_and_sees_a_cone():
    iso = isotropy.clustered_cosine(jax.random.normal(KEY, (500, 16)), KEY)
    assert int(iso.best_k) == 1 and abs(float(iso.score)) < 0.05
    # re-centred symmetric clusters score near 0; a skewed, elongated cloud (log-normal along one axis) does not
    z = jax.random.normal(KEY, (500, 16))
    skewed = z.at[:, 0].set(3 * jnp.exp(2 * z[:, 0])) * jnp.concatenate([jnp.ones(1), 0.05 * jnp.ones(15)])
    assert float(isotropy.clustered_cosine(skewed, KEY).score) > 0.3


def test_partition_isotropy_and_lid():
    assert float(isotropy.local_intrinsic_dimension(jax.random.normal(KEY, (1500, 3)) @ jax.random.normal(KEY, (3, 20)), 20)) == pytest.approx(3.0, rel=0.2)


@pytest.mark.parametrize("family", sorted(distributions.FAMILIES))
def test_families_isotropic_at_zero_and_vmappable(family):
    x = distributions.sample(family, KEY, 2000, 16, 0.0)
    assert x.shape == (2000, 16)
    assert float(isotropy.isoscore(x)) > 0.9
    batch = jax.vmap(lambda k, a: distributions.FAMILIES[family](k, 200, 16, a))(
        jax.random.split(KEY, 3), jnp.array([0.0, 1.0, 2.0]))
    assert batch.shape == (3, 200, 16)
    strong = distributions.sample(family, KEY, 2000, 16, 3.0)
    # every family moves at least one measure away from isotropy as its knob grows
    moved = [float(isotropy.isoscore(strong)) < 0.8, float(isotropy.mean_cosine(strong)) > 0.3]
    assert any(moved)


@pytest.mark.parametrize("call, match", [
    (lambda: isotropy.isoscore(jnp.ones(5)), r"x must have rank 2 \[n, d\], got shape \(5,\)"),
    (lambda: isotropy.isoscore(jnp.ones((1, 5))), r"x needs at least 2 points, got shape \(1, 5\)"),
    (lambda: isotropy.clustered_cosine(jnp.ones((10, 3)), KEY), r"k_max=16 must be smaller than the number of points, x has shape \(10, 3\)"),
    (lambda: isotropy.mean_cosine(jnp.full((4, 2), jnp.nan)), r"x has non-finite values \(shape \(4, 2\)\)"),
    (lambda: distributions.sample("banana", KEY, 10, 3), r"family must be one of"),
    (lambda: isotropy.local_intrinsic_dimension(jnp.ones((5, 2)), 9), r"k must be in \[2, n\)"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()

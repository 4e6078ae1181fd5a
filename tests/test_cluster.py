import jax
import jax.numpy as jnp
import numpy as np

from isojax import cluster

KEY = jax.random.PRNGKey(0)


def _lloyd(x, seeds):
    """Plain Lloyd in numpy from given seeds until no centroid moves: the independent route."""
    c = seeds.copy()
    for _ in range(300):
        labels = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        new = np.array([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(len(c))])
        if np.array_equal(new, c):
            break
        c = new
    return labels, ((x - c[labels]) ** 2).sum()


def test_incremental_lloyd_matches_plain_lloyd_for_every_k_and_restart():
    k1, k2, k3 = jax.random.split(KEY, 3)
    centres = np.asarray(jax.random.normal(k1, (5, 6))) * 4
    x = centres[np.asarray(jax.random.randint(k2, (150,), 0, 5))] + np.asarray(jax.random.normal(k3, (150, 6)))
    x = (x - x.mean(0)).astype(np.float32)
    fit = cluster.kmeans_all_k(KEY, jnp.asarray(x), 2, 7, restarts=3, tol=0.0)  # tol 0: every run to a fixed point
    seeds = np.asarray(jax.vmap(lambda k: cluster.kmeans_plus_plus(k, jnp.asarray(x), 7))(jax.random.split(KEY, 3)))
    for i, k in enumerate(range(2, 8)):
        runs = [_lloyd(x.astype(np.float64), seeds[r, :k].astype(np.float64)) for r in range(3)]
        best = min(runs, key=lambda run: run[1])
        np.testing.assert_array_equal(np.asarray(fit.labels[i]), best[0])
        np.testing.assert_allclose(float(fit.inertia[i]), best[1], rtol=1e-4)

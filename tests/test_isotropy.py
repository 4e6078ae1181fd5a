import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from isojax import cluster, distributions, isotropy
from tests.conftest import ROOT, X64, tol

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
    x = jax.random.normal(KEY, (1500, 3)) @ jax.random.normal(KEY, (3, 20))
    assert float(isotropy.local_intrinsic_dimension(x, 20)) == pytest.approx(3.0, rel=0.2)


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
    (lambda: isotropy.clustered_cosine(jnp.ones((10, 3)), KEY),
     r"k_max=16 must be smaller than the number of points, x has shape \(10, 3\)"),
    (lambda: isotropy.mean_cosine(jnp.full((4, 2), jnp.nan)), r"x has non-finite values \(shape \(4, 2\)\)"),
    (lambda: distributions.sample("banana", KEY, 10, 3), r"family must be one of"),
    (lambda: isotropy.local_intrinsic_dimension(jnp.ones((5, 2)), 9), r"k must be in \[2, n\)"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- degenerate inputs


def _np_mean_cosine(x):
    u = np.asarray(x, np.float64)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    c = u @ u.T
    return (c.sum() - np.trace(c)) / (len(u) * (len(u) - 1))


def test_zero_rows_are_left_out_of_cosines_and_reported():
    x = jax.random.normal(KEY, (40, 6)) + 1.0
    padded = jnp.concatenate([x, jnp.zeros((40, 6))])
    expected = _np_mean_cosine(x)
    assert float(isotropy.mean_cosine(padded)) == pytest.approx(expected, abs=tol(1e-5, 1e-12))
    with pytest.warns(UserWarning, match="40 zero rows"):
        out = isotropy.measure(padded, measures=["cosine"])
    assert out["zero_rows"] == 40 and out["cosine"] == pytest.approx(expected, abs=tol(1e-5, 1e-12))
    with pytest.raises(ValueError, match="fewer than 2 nonzero rows"):
        isotropy.mean_cosine(jnp.zeros((5, 3)).at[0, 0].set(1.0))


def test_point_mass_raises_eagerly_and_is_nan_inside_jit():
    x = jnp.ones((30, 4)) * jnp.arange(1.0, 5.0)
    for fn in (isotropy.isoscore, isotropy.d_80, isotropy.top3_variance_ratio, isotropy.local_intrinsic_dimension,
               lambda y: isotropy.clustered_cosine(y, KEY, k_max=4), lambda y: isotropy.mean_cosine(y, centre=True),
               isotropy.measure):
        with pytest.raises(ValueError, match="point mass|nonzero rows"):
            fn(x)
    assert float(isotropy.mean_cosine(x)) == pytest.approx(1.0)  # raw cosine of one direction is defined
    assert np.isnan(float(jax.jit(isotropy.isoscore)(x)))
    assert np.isnan(float(jax.jit(isotropy.local_intrinsic_dimension)(x)))
    assert int(jax.jit(isotropy.d_80)(x)) == 0
    np.testing.assert_array_equal(isotropy.covariance_spectrum(x), np.zeros(4))


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e-10, 1e10, 1e20, 1e30])
def test_scale_invariance_over_the_float_range(scale):
    x = jax.random.normal(KEY, (150, 8)) * jnp.linspace(1.0, 3.0, 8) + 0.5
    y = x * scale
    for fn in (isotropy.isoscore, isotropy.mean_cosine, lambda z: isotropy.mean_cosine(z, centre=True),
               isotropy.local_intrinsic_dimension, lambda z: isotropy.clustered_cosine(z, KEY, k_max=4).score,
               lambda z: isotropy.isoscore_star(z, 0.1), lambda z: isotropy.all_measures(z, KEY)["top1_variance"]):
        assert float(fn(y)) == pytest.approx(float(fn(x)), rel=tol(2e-3, 1e-9), abs=tol(1e-5, 1e-12))
    assert int(isotropy.d_80(y)) == int(isotropy.d_80(x))


def test_without_rescaling_extreme_scales_break(monkeypatch):
    from isojax.isotropy import _cloud
    x = jax.random.normal(KEY, (150, 8))
    base = float(isotropy.isoscore(x))
    monkeypatch.setattr(_cloud, "SAFE_EXPONENT", 10**6)  # the guard switched off
    big = 1e160 if X64 else 1e20  # squares overflow / underflow the float type
    broken = [float(isotropy.isoscore(x * big)), float(isotropy.isoscore(x / big))]
    assert not all(b == pytest.approx(base, abs=1e-3) for b in broken)


def test_covariance_spectrum_keeps_its_scale_and_refuses_overflow():
    x = jax.random.normal(KEY, (100, 5))
    np.testing.assert_allclose(isotropy.covariance_spectrum(x * 2.0**40), isotropy.covariance_spectrum(x) * 2.0**80,
                               rtol=tol(1e-5, 1e-12))
    if not X64:
        with pytest.raises(ValueError, match="beyond the range"):
            isotropy.covariance_spectrum(x * 1e25)


@pytest.mark.parametrize("low", [jnp.float16, jnp.bfloat16])
def test_half_precision_is_computed_in_float32(low):
    x = (jax.random.normal(KEY, (120, 6)) + 0.3).astype(low)
    up = x.astype(jnp.float32)
    assert float(isotropy.isoscore(x)) == float(isotropy.isoscore(up))
    assert isotropy.covariance_spectrum(x).dtype == jnp.float32
    assert float(isotropy.partition_isotropy(x)) == float(isotropy.partition_isotropy(up))
    assert isotropy.measure(x, measures=["isoscore", "lid"]) == isotropy.measure(up, measures=["isoscore", "lid"])


def test_too_large_is_refused_before_compute():
    with pytest.raises(ValueError, match=r"covariance \[d, d\] = \[60000, 60000\]"):
        isotropy.isoscore(jnp.zeros((2, 60000)))
    with pytest.raises(ValueError, match=r"pairwise distances \[n, n\] = \[50000, 50000\]"):
        isotropy.local_intrinsic_dimension(jax.ShapeDtypeStruct((50000, 2), jnp.float32) and jnp.zeros((50000, 2)))


# ----------------------------------------------------------------------------- measure API


@pytest.mark.float32_only  # return types, the same in both dtypes
def test_measure_returns_python_numbers_like_all_measures():
    x = distributions.sample("mixture", KEY, 300, 8, 2.0)
    out = isotropy.measure(x, seed=3)
    assert set(out) == set(isotropy.MEASURES) | {"zero_rows"}
    assert all(type(v) is float for k, v in out.items() if k not in ("best_k", "zero_rows"))
    assert type(out["best_k"]) is int and out["zero_rows"] == 0
    ref = isotropy.all_measures(x, jax.random.PRNGKey(3))
    for name, value in ref.items():
        assert out[name] == pytest.approx(float(value), rel=tol(1e-4, 1e-9), abs=tol(1e-6, 1e-12)), name
    assert isotropy.measure(x, seed=jax.random.PRNGKey(3), measures=["best_k"]) == {"best_k": out["best_k"],
                                                                                   "zero_rows": 0}


def test_measure_selects_names_and_refuses_unknown_ones():
    x = jax.random.normal(KEY, (50, 4))
    assert set(isotropy.measure(x, measures=["isoscore", "lid"])) == {"isoscore", "lid", "zero_rows"}
    with pytest.raises(ValueError, match=r"unknown measures \['banana'\]; valid names are \['isoscore'"):
        isotropy.measure(x, measures=["isoscore", "banana"])
    with pytest.raises(ValueError, match="seed must be an int or a PRNG key"):
        isotropy.measure(x, seed=1.5)
    with pytest.raises(ValueError, match=r"x has non-finite values"):
        isotropy.measure(x.at[0, 0].set(jnp.nan))


def test_measure_small_cloud_says_which_k_it_used():
    x = jax.random.normal(KEY, (10, 3))
    with pytest.warns(UserWarning) as record:
        out = isotropy.measure(x, measures=["clustered_cosine", "lid"])
    messages = " ".join(str(w.message) for w in record)
    assert "k_max = 9" in messages and "k = 9 neighbours" in messages
    assert np.isfinite(out["clustered_cosine"]) and np.isfinite(out["lid"])
    with pytest.raises(ValueError, match="at least 3 points"):
        isotropy.measure(x[:2], measures=["lid"])


def test_measure_layers_accepts_arrays_lists_and_dicts():
    hidden = jax.random.normal(KEY, (3, 60, 5)) * jnp.array([1.0, 2.0, 3.0])[:, None, None]
    names = ["isoscore", "cosine", "lid"]
    rows = isotropy.measure_layers(hidden, seed=1, measures=names)
    assert [r["layer"] for r in rows] == [0, 1, 2]
    for i, row in enumerate(rows):
        assert row == {"layer": i, **isotropy.measure(hidden[i], jax.random.fold_in(jax.random.PRNGKey(1), i), names)}
    named = isotropy.measure_layers({"emb": hidden[0], "out": np.asarray(hidden[2])}, seed=1, measures=names)
    assert [r["layer"] for r in named] == ["emb", "out"] and named[1]["isoscore"] == rows[2]["isoscore"]
    assert isotropy.measure_layers(list(hidden), seed=1, measures=names) == rows
    with pytest.raises(ValueError, match=r"hidden must have rank 3 \[layers, n, d\]"):
        isotropy.measure_layers(hidden[0])


def test_layer_summary_is_the_experiments_row():
    x = distributions.sample("spiked", KEY, 200, 12, 2.0)
    key = jax.random.fold_in(KEY, 2)
    cc = isotropy.clustered_cosine(x, key, k_max=16)
    lam = isotropy.covariance_spectrum(x)
    assert isotropy.layer_summary(x, key) == {
        "clustered_cosine": float(cc.score), "best_k": int(cc.best_k),
        "best_silhouette": float(jnp.max(cc.silhouettes)), "isoscore": float(isotropy.isoscore_from_spectrum(lam)),
        "d80_fraction": float(isotropy.d_80_from_spectrum(lam)) / 12}


_SWEEP = """
import sys
import jax
from isojax import distributions, isotropy, sweep
def cell(key, family, n, d, knob, replicate=0):
    k1, k2 = jax.random.split(key)
    return isotropy.all_measures(distributions.sample(family, k1, n, d, knob), k2)
grid = {"family": ["spiked", "mixture"], "n": [200], "d": [16], "knob": [0.0, 1.0], "replicate": [0, 1]}
sweep.run_sweep(cell, grid, sys.argv[1], seed=0, name="isotropy_measures", progress=False)
"""


@pytest.mark.float32_only  # a device layout, not a dtype path: run in the float32 pass only
def test_all_measures_table_is_bit_identical_on_1_and_2_devices(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tables = []
    for devices in (1, 2):
        out = tmp_path / f"d{devices}.csv"
        env = {**os.environ, "PYTHONPATH": str(root), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        proc = subprocess.run([sys.executable, "-c", _SWEEP, str(out)], env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        tables.append(out.read_text())
    assert "lid" in tables[0].splitlines()[0] and len(tables[0].splitlines()) == 9
    assert tables[0] == tables[1]


# ----------------------------------------------------------------------------- defined numerics (issue 20)


def test_isoscore_in_one_dimension_is_refused_eagerly_and_nan_inside_all_measures():
    x = jax.random.normal(KEY, (40, 1))
    for call in (lambda: isotropy.isoscore(x), lambda: isotropy.isoscore_star(x, 0.1), lambda: isotropy.measure(x),
                 lambda: isotropy.layer_summary(x, KEY)):
        with pytest.raises(ValueError, match=r"x has d = 1 \(shape \(40, 1\)\): IsoScore is undefined"):
            call()
    assert np.isnan(float(jax.jit(isotropy.all_measures)(x, KEY)["isoscore"]))
    out = isotropy.measure(x, measures=["cosine", "lid", "d80_fraction"])  # the other measures are defined
    assert out["d80_fraction"] == 1.0 and np.isfinite(out["lid"])


def _np_lid(x, k):
    """Levina-Bickel pooled LID in float64 NumPy with exact distances, over distinct rows, each weighted by its
    number of copies: the independent route."""
    unique, counts = np.unique(np.asarray(x, np.float64), axis=0, return_counts=True)
    dist = np.sqrt(((unique[:, None] - unique[None]) ** 2).sum(-1)) + np.diag(np.full(len(unique), np.inf))
    nearest = np.sort(dist, axis=1)[:, :k]
    inv = np.log(nearest[:, -1:] / nearest[:, :-1]).mean(1)
    return counts.sum() / (counts * inv).sum()


def test_lid_of_a_cloud_with_copies_is_the_lid_of_its_distinct_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4)) * np.array([1.0, 2.0, 3.0, 4.0])
    k = 5
    base = _np_lid(x, k)
    assert float(isotropy.local_intrinsic_dimension(x, k)) == pytest.approx(base, rel=tol(1e-4, 1e-10))
    for copies in (2, k + 1):  # k + 1 copies: a point's k nearest rows are all its own copies (was NaN)
        for scale in (1.0, 1e3, 1e-3):  # the old floor at the smallest normal float overflowed at some scales only
            got = float(isotropy.local_intrinsic_dimension(np.repeat(x, copies, axis=0) * scale, k))
            assert got == pytest.approx(base, rel=tol(1e-4, 1e-10)), (copies, scale)
    some = np.concatenate([x, x[:4], x[:2]])  # a few rows with one or two copies
    assert float(isotropy.local_intrinsic_dimension(some, k)) == pytest.approx(_np_lid(some, k), rel=tol(1e-4, 1e-10))
    assert isotropy.measure(some, measures=["lid"])["lid"] == pytest.approx(_np_lid(some, 20), rel=tol(1e-4, 1e-10))
    few = np.repeat(x[:5], 6, axis=0)  # 5 distinct rows: no point has k = 5 neighbours that differ from it
    with pytest.raises(ValueError, match=r"x has 5 distinct rows \(shape \(30, 4\)\): the local intrinsic dimension"):
        isotropy.local_intrinsic_dimension(few, k)
    with pytest.raises(ValueError, match=r"x has 5 distinct rows"):
        isotropy.measure(few, measures=["lid"])
    assert np.isnan(float(jax.jit(isotropy.local_intrinsic_dimension, static_argnums=1)(few, k)))


def test_a_nan_row_inside_jit_makes_every_measure_nan():
    x = jax.random.normal(KEY, (60, 6)).at[7].set(jnp.nan)
    out = jax.jit(isotropy.all_measures)(x, KEY)
    assert set(out) == set(isotropy.MEASURES[:7]) | {"clustered_cosine", "best_k"}
    bad = {k: float(v) for k, v in out.items() if not np.isnan(float(v))}
    assert not bad  # d80_fraction was 0.0 and best_k 1.0
    assert int(jax.jit(isotropy.d_80)(x)) == 0  # an int cannot be NaN: 0, as for a point mass


def test_subnormal_rows_are_named_and_a_subnormal_cloud_is_refused():
    tiny = float(np.finfo(np.dtype(jnp.zeros(()).dtype)).tiny)
    x = np.array(jax.random.normal(KEY, (40, 5)) + 1.0)
    x[:3] = tiny / 4  # nonzero, but XLA flushes them to zero
    with pytest.warns(UserWarning, match=r"3 zero rows \(3 of them subnormal") as record:
        out = isotropy.measure(x, measures=["cosine"])
    assert out["zero_rows"] == 3 and "smallest normal" in str(record[0].message)
    with pytest.raises(ValueError, match=r"x is subnormal \(shape \(40, 5\)\): its largest \|x\|"):
        isotropy.measure(np.asarray(jax.random.normal(KEY, (40, 5))) * tiny / 8, measures=["isoscore"])


@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1e12, 1e30])
def test_every_measure_but_partition_isotropy_is_scale_invariant(scale):
    x = np.asarray(jax.random.normal(KEY, (120, 6)) * jnp.linspace(1.0, 3.0, 6) + 0.5)
    base, moved = isotropy.measure(x, seed=1), isotropy.measure(x * scale, seed=1)
    for name in set(isotropy.MEASURES) - {"partition_isotropy"}:
        assert moved[name] == pytest.approx(base[name], rel=tol(2e-3, 1e-9), abs=tol(1e-5, 1e-12)), name
    # partition isotropy is not: it runs from 1 (scale -> 0) to 0 (scale -> inf), as the README says
    assert moved["partition_isotropy"] == pytest.approx(1.0 if scale < 1 else 0.0, abs=1e-6)


def test_the_readme_lists_partition_isotropy_as_not_scale_invariant():
    section = (ROOT / "README.md").read_text().split("## Your own embeddings")[1].split("\n## ")[0]
    assert "`partition_isotropy` is not scale-invariant" in section and "every measure is invariant" not in section


def test_clustered_cosine_of_copies_only_is_refused_not_a_silent_nan():
    points = np.asarray(jax.random.normal(KEY, (5, 8)))
    x = np.repeat(points, 6, axis=0)  # five distinct rows: k = 5 clusters of copies, no pair to average
    for call in (lambda: isotropy.clustered_cosine(x, KEY, k_max=8), lambda: isotropy.layer_summary(x, KEY),
                 lambda: isotropy.measure(x, measures="clustered_cosine")):
        with pytest.raises(ValueError, match=r"clustered cosine is undefined: its clustering \(k = 5\) has no cluster"):
            call()
    assert np.isnan(float(jax.jit(isotropy.all_measures)(x, KEY)["clustered_cosine"]))  # inside jit: NaN

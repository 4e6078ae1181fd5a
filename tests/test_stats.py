import numpy as np
import pytest
from scipy import stats as sps

from isojax import stats


def test_within_group_spearman_removes_the_group_confound():
    # within each dataset the more isotropic run forecasts better (ρ = -1), but the easy dataset is the more
    # isotropic one overall, so the pooled ρ is positive: only the within-group ρ sees the -1
    rows = [{"data": d, "iso": base + i, "nmse": scale * (3 - i)} for d, base, scale in (("a", 0, 1.0), ("b", 10, 100.0))
            for i in range(3)]
    rho, lo, hi, n = stats.within_group_spearman(rows, "iso", "nmse", "data")
    assert n == 2 and rho == lo == hi == -1.0
    assert stats.spearman_bootstrap([r["iso"] for r in rows], [r["nmse"] for r in rows])[0] > 0
    assert np.isnan(stats.within_group_spearman(rows[:3], "iso", "nmse", "data")[0])  # one group: no interval


def test_spearman_bootstrap_matches_scipy_and_brackets_it():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    rho, lo, hi = stats.spearman_bootstrap(x, y, seed=1)
    assert rho == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    assert lo < rho < hi and 0 < lo


def test_spearman_bootstrap_refuses_bad_shapes():
    with pytest.raises(ValueError, match="1-D of one length"):
        stats.spearman_bootstrap([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="1-D of one length"):
        stats.spearman_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0])

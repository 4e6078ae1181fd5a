"""Rank statistics with bootstrap intervals, for the study's isotropy-vs-error questions."""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["spearman_bootstrap", "within_group_spearman"]


def spearman_bootstrap(x, y, seed: int = 0, draws: int = 2000) -> tuple[float, float, float]:
    """Spearman ρ of the pairs (x, y) [n] and a percentile bootstrap 95% interval over the pairs.
    -> (ρ, low, high)"""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"x and y must be 1-D of one length >= 3, got shapes {x.shape} and {y.shape}")
    rho = stats.spearmanr(x, y).statistic
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(draws):
        idx = rng.integers(0, len(x), len(x))
        if len(np.unique(x[idx])) > 1 and len(np.unique(y[idx])) > 1:
            boots.append(stats.spearmanr(x[idx], y[idx]).statistic)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(rho), float(lo), float(hi)


def within_group_spearman(rows: list[dict], x: str, y: str, group: str, seed: int = 0,
                          draws: int = 2000) -> tuple[float, float, float, int]:
    """Mean over groups (with >= 3 rows) of the Spearman ρ between columns x and y within the group, and a
    bootstrap 95% interval over groups. Where y differs by orders of magnitude between groups, a pooled ρ
    mostly ranks the groups; this asks whether, within one group, a larger x goes with a larger y.
    -> (ρ, low, high, number of groups), NaN where fewer than 2 groups qualify."""
    per = []
    for g in dict.fromkeys(r[group] for r in rows):
        sel = [r for r in rows if r[group] == g]
        xs, ys = [r[x] for r in sel], [r[y] for r in sel]
        if len(sel) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1:
            per.append(stats.spearmanr(xs, ys).statistic)
    if len(per) < 2:
        return float("nan"), float("nan"), float("nan"), len(per)
    per = np.asarray(per)
    rng = np.random.default_rng(seed)
    boots = [np.mean(per[rng.integers(0, len(per), len(per))]) for _ in range(draws)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(np.mean(per)), float(lo), float(hi), len(per)

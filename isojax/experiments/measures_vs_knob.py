"""Every isotropy measure against the anisotropy knob of every synthetic family: which measure sees what."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from isojax import distributions, isotropy, plots, sweep

MEASURES = [
    ("isoscore", "IsoScore"),
    ("d80_fraction", "d(0.8) / d"),
    ("top1_variance", "top PC variance ratio"),
    ("cosine", "mean cosine (raw)"),
    ("cosine_centred", "mean cosine (centred)"),
    ("clustered_cosine", "clustered cosine"),
    ("partition_isotropy", "partition isotropy I"),
    ("lid", "local intrinsic dim."),
]


def cell(key, family, n, d, knob, replicate=0):
    k1, k2 = jax.random.split(key)
    x = distributions.sample(family, k1, n, d, knob)
    # partition isotropy depends on scale: measure clouds scaled to unit mean squared norm
    x_unit = x / np.sqrt(d)
    out = isotropy.all_measures(x, k2)
    out["partition_isotropy"] = isotropy.partition_isotropy(isotropy.after(x_unit, out["partition_isotropy"]))
    return out


def run(out: Path, quick: bool = True, seed: int = 0, tiny: bool = False) -> list[Path]:
    out = Path(out)
    n, d, reps = (120, 16, 1) if tiny else (500, 64, 2) if quick else (2000, 768, 5)
    knobs = [0.0, 1.0, 3.0] if tiny else [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0]
    families = ["cone", "mixture"] if tiny else sorted(distributions.FAMILIES)
    grid = {"family": families, "n": [n], "d": [d], "knob": knobs, "replicate": list(range(reps))}
    rows = sweep.run_sweep(cell, grid, out / "results" / f"measures_vs_knob{'_tiny' if tiny else '_quick' if quick else ''}.csv",
                           seed=seed, name="measures_vs_knob", per_device=7)
    fig, axes = plots.figure(2, 4, width=plots.DOUBLE, height=3.6)
    for ax, (col, label) in zip(axes.ravel(), MEASURES):
        for family in grid["family"]:
            sel = [r for r in rows if r["family"] == family]
            ks = np.array([float(r["knob"]) for r in sel])
            vs = np.array([float(r[col]) for r in sel])
            mean = [vs[ks == k].mean() for k in knobs]
            ax.plot(knobs, mean, marker="o", label=family)
        ax.set_xlabel("anisotropy knob (0 = isotropic)")
        ax.set_ylabel(label)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    fig.suptitle(f"Isotropy measures on synthetic clouds (n = {n}, d = {d}, mean of {reps} seeds)")
    return plots.save(fig, out / "figures", "measures_vs_knob")

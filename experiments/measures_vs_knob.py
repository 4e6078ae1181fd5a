"""Every isotropy measure against the anisotropy knob of every synthetic family: which measure sees what."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/<name>.py`: import this folder as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

from experiments import runner
from isojax import distributions, isotropy, plots
from isojax.runs import results, sweep

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
    """Every isotropy measure of one cloud from `family` at `knob` (partition isotropy of the unit-scaled cloud)."""
    k1, k2 = jax.random.split(key)
    x = distributions.sample(family, k1, n, d, knob)
    # partition isotropy depends on scale: measure clouds scaled to unit mean squared norm
    x_unit = x / np.sqrt(d)
    out = isotropy.all_measures(x, k2)
    out["partition_isotropy"] = isotropy.partition_isotropy(isotropy.after(x_unit, out["partition_isotropy"]))
    return out


SIZES = {
    "tiny": dict(n=120, d=16, replicates=1, knobs=[0.0, 1.0, 3.0], families=["cone", "mixture"]),
    "quick": dict(n=500, d=64, replicates=2, knobs=[0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0],
                  families=sorted(distributions.BUILTIN_FAMILIES)),
    "full": dict(n=2000, d=768, replicates=5, knobs=[0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0],
                 families=sorted(distributions.BUILTIN_FAMILIES)),
}


def _table(out: Path, size: str) -> Path:
    return Path(out) / "results" / f"measures_vs_knob{runner.tag(size)}.csv"


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Sweep table measures_vs_knob: every measure of every family at every knob, several seeds."""
    cfg = SIZES[size]
    grid = {"family": cfg["families"], "n": [cfg["n"]], "d": [cfg["d"]], "knob": cfg["knobs"],
            "replicate": list(range(cfg["replicates"]))}
    sweep.run_sweep(cell, grid, _table(out, size), seed=seed, name="measures_vs_knob", per_device=7)
    return [_table(out, size)]


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure measures_vs_knob: one panel per measure, one line per family (mean over seeds)."""
    cfg = SIZES[size]
    n, d, reps, knobs = cfg["n"], cfg["d"], cfg["replicates"], cfg["knobs"]
    rows = results.read_table(_table(out, size))
    fig, axes = plots.figure(2, 4, width=plots.DOUBLE, height=3.6)
    for ax, (col, label) in zip(axes.ravel(), MEASURES):
        for family in cfg["families"]:
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
    return plots.save(fig, Path(out) / "figures", "measures_vs_knob")


if __name__ == "__main__":
    raise SystemExit(runner.main(__file__))

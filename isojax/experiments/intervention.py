"""T6 as a causal question: train the same numeric LMs with a differentiable isotropy penalty (−IsoScore* of
every block's hidden states) at several strengths, positive (towards isotropy) and negative (away from it),
over seeds; does forecasting NMSE move with isotropy?"""

from __future__ import annotations

import zlib
from pathlib import Path

import jax
import numpy as np

from isojax import isotropy, plots, sweep
from isojax.experiments import _lm


def neg_isoscore_star(h):
    """The penalty: −IsoScore*(h, ζ = 0.1); adding w × this to the loss pushes isotropy up for w > 0."""
    return -isotropy.isoscore_star(h, 0.1)


def run(out: Path, quick: bool = True, seed: int = 0, tiny: bool = False) -> list[Path]:
    out = Path(out)
    strengths = [-1.0, 0.0, 1.0] if tiny else [-1.0, -0.3, 0.0, 0.3, 1.0] if quick else [-3.0, -1.0, -0.3, 0.0, 0.3, 1.0, 3.0]
    seeds = [0] if tiny else [0, 1] if quick else [0, 1, 2]
    datasets = ["gp:seasonality_24", "real:sunspots"] if quick else ["gp:seasonality_24", "real:sunspots", "teacher"]
    steps = 10 if tiny else 100 if quick else 400
    datasets = datasets[:1] if tiny else datasets
    rows, layer_rows = [], []
    for source in datasets:
        for w in strengths:
            for s in seeds:
                # crc32, not hash(): str hashes change from one Python process to the next
                key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), s), zlib.crc32(source.encode()) % 1000)
                res, per_layer, _ = _lm.train_and_measure(key, source, "bins", "decoder", steps,
                                                          penalty=neg_isoscore_star, penalty_weight=w,
                                                          cache=out / "results" / "models")
                rows.append({"data": source, "strength": w, "seed": s, **res,
                             "isoscore_mean": float(np.mean([p["isoscore"] for p in per_layer[1:]]))})
                layer_rows += [{"data": source, "strength": w, "seed": s, **p} for p in per_layer]
    sweep.save_table(rows, out / "results" / "intervention.csv", {"name": "intervention", "seed": seed, "steps": steps})
    sweep.save_table(layer_rows, out / "results" / "intervention_layers.csv", {"name": "intervention_layers", "seed": seed})

    fig, axes = plots.figure(1, 2, width=plots.SINGLE * 1.8, height=2.2)
    for j, source in enumerate(datasets):
        sel = [r for r in rows if r["data"] == source]
        for ax, col in zip(axes[0], ("isoscore_mean", "nmse")):
            mean = [np.mean([r[col] for r in sel if r["strength"] == w]) for w in strengths]
            err = [np.std([r[col] for r in sel if r["strength"] == w]) for w in strengths]
            ax.errorbar(strengths, mean, err, fmt="o-", color=f"C{j}", capsize=2, label=source)
    axes[0, 0].set_ylabel("IsoScore, mean over blocks")
    axes[0, 1].set_ylabel("forecast NMSE")
    for ax in axes[0]:
        ax.set_xlabel("penalty strength w (> 0: towards isotropy)")
    axes[0, 0].legend(frameon=False)
    axes[0, 0].set_title(f"the penalty moves isotropy ({len(seeds)} seeds)")
    axes[0, 1].set_title("does NMSE follow?")
    return plots.save(fig, out / "figures", "intervention")

"""T6 as a causal question: train the same numeric LMs with a differentiable isotropy penalty (−IsoScore* of
every block's hidden states) at several strengths, positive (towards isotropy) and negative (away from it),
over seeds; does forecasting NMSE move with isotropy?"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from isojax import experiment, isotropy, keys, lm, plots, sweep

SIZES = {
    "tiny": dict(strengths=[-1.0, 0.0, 1.0], seeds=[0], datasets=["gp:seasonality_24"], steps=10),
    "quick": dict(strengths=[-1.0, -0.3, 0.0, 0.3, 1.0], seeds=[0, 1], datasets=["gp:seasonality_24", "real:sunspots"],
                  steps=100),
    "full": dict(strengths=[-3.0, -1.0, -0.3, 0.0, 0.3, 1.0, 3.0], seeds=[0, 1, 2],
                 datasets=["gp:seasonality_24", "real:sunspots", "teacher"], steps=400),
}


def neg_isoscore_star(h):
    """The penalty: −IsoScore*(h, ζ = 0.1); adding w × this to the loss pushes isotropy up for w > 0."""
    return -isotropy.isoscore_star(h, 0.1)


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Tables intervention (one row per dataset, strength and seed: NMSE and mean block IsoScore) and
    intervention_layers (per layer)."""
    out, cfg = Path(out), SIZES[size]
    rows, layer_rows = [], []
    for source in cfg["datasets"]:
        for w in cfg["strengths"]:
            for s in cfg["seeds"]:
                # the dataset's stable number modulo 1000: the rule the published runs were keyed with
                key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), s), keys.name_to_int(source, 1000))
                res, per_layer, _ = lm.train_and_measure(key, source, "bins", "decoder", cfg["steps"],
                                                         penalty=neg_isoscore_star, penalty_weight=w,
                                                         cache=out / "results" / "models")
                rows.append({"data": source, "strength": w, "seed": s, **res,
                             "isoscore_mean": float(np.mean([p["isoscore"] for p in per_layer[1:]]))})
                layer_rows += [{"data": source, "strength": w, "seed": s, **p} for p in per_layer]
    return [sweep.save_table(rows, out / "results" / "intervention.csv",
                             {"name": "intervention", "seed": seed, "steps": cfg["steps"]}),
            sweep.save_table(layer_rows, out / "results" / "intervention_layers.csv",
                             {"name": "intervention_layers", "seed": seed})]


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure intervention: IsoScore and NMSE against the penalty strength, mean ± sd over seeds."""
    out, cfg = Path(out), SIZES[size]
    strengths = cfg["strengths"]
    rows = experiment.read_rows(out / "results" / "intervention.csv")
    fig, axes = plots.figure(1, 2, width=plots.SINGLE * 1.8, height=2.2)
    for j, source in enumerate(cfg["datasets"]):
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
    axes[0, 0].set_title(f"the penalty moves isotropy ({len(cfg['seeds'])} seeds)")
    axes[0, 1].set_title("does NMSE follow?")
    return plots.save(fig, out / "figures", "intervention")


if __name__ == "__main__":
    raise SystemExit(experiment.main(__file__))

"""T6 as a causal question: train the same numeric LMs with a differentiable isotropy penalty (−IsoScore* of
every block's hidden states) at several strengths, positive (towards isotropy) and negative (away from it),
over seeds; does forecasting NMSE move with isotropy?"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/<name>.py`: import this folder as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

from experiments import runner
from isojax import isotropy, plots, stats
from isojax.models import ensemble
from isojax.runs import results

SIZES = {
    "tiny": dict(strengths=[-1.0, 0.0, 1.0], seeds=[0], datasets=["gp:seasonality_24"], steps=10,
                 evaluation=dict(windows=4, samples=4, draws=200, rows=256)),
    "quick": dict(strengths=[-1.0, -0.3, 0.0, 0.3, 1.0], seeds=[0, 1], datasets=["gp:seasonality_24", "real:sunspots"],
                  steps=100),
    "full": dict(strengths=[-3.0, -1.0, -0.3, 0.0, 0.3, 1.0, 3.0], seeds=[0, 1, 2],
                 datasets=["gp:seasonality_24", "real:sunspots", "teacher"], steps=400),
}


def neg_isoscore_star(h):
    """The penalty: −IsoScore*(h, ζ = 0.1); adding w × this to the loss pushes isotropy up for w > 0."""
    return -isotropy.isoscore_star(h, 0.1)


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Tables intervention (one row per dataset, strength and seed: NMSE and mean block IsoScore),
    intervention_layers (per layer), and from them intervention_effects and intervention_spearman (`analyse`).
    Every run of a dataset is one ensemble member of the same decoder, trained together."""
    out, cfg = Path(out), SIZES[size]
    runs = [ensemble.NumericRun(f"{source}|w {w:g}|seed {s}", source, "bins", "decoder", seed=s, penalty_weight=w)
            for source in cfg["datasets"] for w in cfg["strengths"] for s in cfg["seeds"]]
    evaluation = ensemble.Evaluation(**cfg.get("evaluation", {}))
    evaluated, _ = ensemble.train_and_evaluate(runs, jax.random.PRNGKey(seed), cfg["steps"],
                                               out / "results" / "models", penalty=neg_isoscore_star,
                                               evaluation=evaluation, log=lambda line: print(line, flush=True))
    rows, layer_rows = [], []
    for e in evaluated:
        r = e.run
        rows.append({"data": r.data, "strength": r.penalty_weight, "seed": r.seed, **e.forecast,
                     "final_loss": e.final_loss, "head_partition_isotropy": e.head_partition_isotropy,
                     "isoscore_mean": float(np.mean([p["isoscore"] for p in e.layers[1:]]))})
        layer_rows += [{"data": r.data, "strength": r.penalty_weight, "seed": r.seed, **p} for p in e.layers]
    return [results.save_table(rows, out / "results" / "intervention.csv",
                             {"name": "intervention", "seed": seed, "steps": cfg["steps"],
                              "evaluation": dataclasses.asdict(evaluation)}),
            results.save_table(layer_rows, out / "results" / "intervention_layers.csv",
                             {"name": "intervention_layers", "seed": seed})] + analyse(out / "results", seed)


def effect_rows(rows: list[dict]) -> list[dict]:
    """Per dataset, measure (NMSE, mean block IsoScore) and strength: mean, sample sd (ddof = 1), n and the
    t interval of the mean; and Welch's test of that strength against w = 0 (difference, t, df, p, interval;
    p_holm: Holm-adjusted over the strengths of one dataset and measure; mde: the difference that test detects
    with 80% power at alpha 0.05, from its se and Welch df). "isotropy helps" predicts a lower
    NMSE for w > 0 (diff < 0) and a higher one for w < 0 (diff > 0). The w = 0 row has no test (empty)."""
    from statsmodels.stats.multitest import multipletests

    out = []
    for source in dict.fromkeys(r["data"] for r in rows):
        for measure in ("nmse", "isoscore_mean"):
            values = {}
            for r in rows:
                if r["data"] == source:
                    values.setdefault(float(r["strength"]), []).append(float(r[measure]))
            ref, group = values.get(0.0), []
            for w in sorted(values):
                # one seed (the tiny size) has a mean but no sd, interval or test: those cells stay empty
                m = stats.mean_interval(values[w]) if len(values[w]) > 1 else None
                row = {"data": source, "measure": measure, "strength": w, "mean": float(np.mean(values[w])),
                       **dict(zip(("sd", "n", "mean_low", "mean_high"),
                                  (m.sd, m.n, m.low, m.high) if m else ("", len(values[w]), "", ""), strict=True))}
                testable = ref is not None and w != 0.0 and len(ref) > 1 and len(values[w]) > 1
                test = stats.welch(values[w], ref) if testable else None
                cols = ("diff_vs_0", "t", "df", "p", "diff_low", "diff_high", "mde")
                row.update(dict(zip(cols, (*test, stats.minimum_detectable_effect(test.diff / test.t, df=test.df)),
                                    strict=True)) if test else dict.fromkeys(cols, ""))
                row["supports_if"] = ("" if measure != "nmse" or w == 0.0 else "diff < 0" if w > 0 else "diff > 0")
                group.append(row)
            tested = [r for r in group if r["p"] != ""]
            adjusted = multipletests([r["p"] for r in tested], method="holm")[1] if tested else []
            for r in group:
                r["p_holm"] = ""
            for r, p in zip(tested, adjusted, strict=True):
                r["p_holm"] = float(p)
            out += group
    return out


def spearman_rows(rows: list[dict], seed: int = 0) -> list[dict]:
    """Per dataset, Spearman ρ(mean block IsoScore, NMSE) over all its runs (strengths × seeds), with a
    bootstrap 95% interval; "isotropy helps" predicts ρ < 0."""
    out = []
    for source in dict.fromkeys(r["data"] for r in rows):
        sel = [r for r in rows if r["data"] == source]
        rho, lo, hi = stats.spearman_bootstrap([r["isoscore_mean"] for r in sel], [r["nmse"] for r in sel], seed)
        out.append({"data": source, "spearman_rho": rho, "ci_low": lo, "ci_high": hi, "runs": len(sel),
                    "supports_if": "rho < 0"})
    return out


def analyse(folder: Path, seed: int = 0) -> list[Path]:
    """From results/intervention.csv alone (no training): the tables intervention_effects and
    intervention_spearman, written next to it."""
    folder = Path(folder)
    rows = results.read_table(folder / "intervention.csv")
    config = {"seed": seed, "source": "intervention.csv", "runs": len(rows)}
    return [results.save_table(effect_rows(rows), folder / "intervention_effects.csv",
                             {"name": "intervention_effects", **config}),
            results.save_table(spearman_rows(rows, seed), folder / "intervention_spearman.csv",
                             {"name": "intervention_spearman", **config})]


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure intervention: IsoScore and NMSE against the penalty strength, mean ± sample sd (ddof = 1) over
    seeds."""
    out, cfg = Path(out), SIZES[size]
    strengths = cfg["strengths"]
    rows = results.read_table(out / "results" / "intervention.csv")
    fig, axes = plots.figure(1, 2, width=plots.SINGLE * 1.8, height=2.2)
    for j, source in enumerate(cfg["datasets"]):
        sel = [r for r in rows if r["data"] == source]
        for ax, col in zip(axes[0], ("isoscore_mean", "nmse"), strict=True):
            mean = [np.mean([r[col] for r in sel if r["strength"] == w]) for w in strengths]
            # the sample sd (ddof = 1): with 2-3 seeds the population sd understates the spread by 18-29%
            vals = [[r[col] for r in sel if r["strength"] == w] for w in strengths]
            err = [np.std(v, ddof=1) if len(v) > 1 else np.nan for v in vals]  # no bar from a single seed
            ax.errorbar(strengths, mean, err, fmt="o-", color=f"C{j}", capsize=2, label=source)
    axes[0, 0].set_ylabel("IsoScore, mean over blocks")
    axes[0, 1].set_ylabel("forecast NMSE")
    for ax in axes[0]:
        ax.set_xlabel("penalty strength w (> 0: towards isotropy)")
    axes[0, 0].legend(frameon=False)
    axes[0, 0].set_title(f"the penalty moves isotropy (mean ± sample sd, {len(cfg['seeds'])} seeds)")
    axes[0, 1].set_title("does NMSE follow? (isotropy helps: lower for w > 0)")
    return plots.save(fig, out / "figures", "intervention")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--analyse"]:  # `--analyse DIR`: the analysis tables from DIR/intervention.csv, no training
        print("\n".join(str(p) for p in analyse(Path(sys.argv[2]))))
        raise SystemExit(0)
    raise SystemExit(runner.main(__file__))

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

# seeds: how many per arm on each dataset (seeds 0 .. n - 1). --full: the power analysis' choice before the run
# (docs/statistics.md): three arms, and the seeds per arm that detect a 20% change of NMSE against w = 0 with
# 80% power after Dunnett's adjustment, at the pilot's 80% upper bound of each dataset's seed sd
# size parameters that are a whole mapping {dataset: seeds}: `--set seeds=real:nile=4,teacher=2` names every
# dataset the intervention runs on, with its seeds per arm
MAPPINGS = ("seeds",)

SIZES = {
    "tiny": dict(strengths=[-1.0, 0.0, 1.0], seeds={"gp:seasonality_24": 2}, steps=10,
                 evaluation=dict(windows=4, samples=4, draws=200, rows=256)),
    # the same design, small: no power (a demonstration that fits the quick budget)
    "quick": dict(strengths=[-1.0, 0.0, 1.0], seeds={"gp:seasonality_24": 2, "real:sunspots": 2}, steps=100,
                  evaluation=dict(windows=8, samples=8, draws=500, rows=512, boot=100)),
    "full": dict(strengths=[-1.0, 0.0, 1.0], seeds={"gp:seasonality_24": 100, "real:sunspots": 63, "teacher": 3},
                 steps=400, evaluation=dataclasses.asdict(ensemble.Evaluation(boot=200))),
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
            for source, seeds in cfg["seeds"].items() for w in cfg["strengths"] for s in range(seeds)]
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


MEASURES = {"log_nmse": "log NMSE", "isoscore_mean": "IsoScore, mean over blocks"}


def _values(rows: list[dict], source: str, measure: str) -> dict[float, np.ndarray]:
    out: dict[float, list] = {}
    for r in rows:
        if r["data"] == source:
            value = np.log(float(r["nmse"])) if measure == "log_nmse" else float(r[measure])
            out.setdefault(float(r["strength"]), []).append(value)
    return {w: np.asarray(v) for w, v in sorted(out.items())}


def effect_rows(rows: list[dict]) -> list[dict]:
    """Per dataset, measure (log NMSE, mean block IsoScore) and strength: mean, sample sd (ddof = 1), n and the t
    interval of the mean; and Dunnett's comparison with w = 0 (one variance pooled over every arm): the
    difference, its simultaneous 95% interval, the adjusted p and the difference it detects with 80% power
    (mde: (Dunnett's critical value + t_0.8) × the difference's se on the pooled df). "Isotropy helps" predicts
    a lower log NMSE for w > 0 (diff < 0) and a higher one for w < 0 (diff > 0). The w = 0 row has no test."""
    from scipy import stats as sps

    out = []
    for source in dict.fromkeys(r["data"] for r in rows):
        for measure in MEASURES:
            values = _values(rows, source, measure)
            ref = values.get(0.0)
            others = [w for w in values if w != 0.0]
            testable = ref is not None and len(ref) > 1 and others and all(len(values[w]) > 1 for w in others)
            test = stats.dunnett([values[w] for w in others], ref) if testable else None
            if test is not None:
                pooled = np.sqrt(sum(np.sum((v - v.mean()) ** 2) for v in values.values()) / test.df)
                crit = stats.dunnett_critical(len(others), test.df)
                power_q = float(sps.t.ppf(0.8, test.df))
            for w, v in values.items():
                m = stats.mean_interval(v) if len(v) > 1 else None
                row = {"data": source, "measure": measure, "strength": w, "mean": float(np.mean(v)),
                       **dict(zip(("sd", "n", "mean_low", "mean_high"),
                                  (m.sd, m.n, m.low, m.high) if m else ("", len(v), "", ""), strict=True))}
                cols = ("diff_vs_0", "diff_low", "diff_high", "p_dunnett", "df", "mde")
                if test is not None and w != 0.0:
                    i = others.index(w)
                    se = pooled * np.sqrt(1 / len(v) + 1 / len(ref))
                    row.update(dict(zip(cols, (float(test.diff[i]), float(test.low[i]), float(test.high[i]),
                                               float(test.p[i]), test.df, float((crit + power_q) * se)), strict=True)))
                else:
                    row.update(dict.fromkeys(cols, ""))
                row["supports_if"] = ("" if measure != "log_nmse" or w == 0.0 else "diff < 0" if w > 0 else "diff > 0")
                out.append(row)
    return out


def dose_rows(rows: list[dict]) -> list[dict]:
    """Per dataset and measure: the quadratic dose-response fit of the measure against w with one variance
    pooled over the arms (`stats.dose_response`): the linear term b1 (the average push effect; "isotropy helps"
    predicts b1 < 0 for log NMSE) and the curvature b2 (an inverted U), each with its t interval and p, and the
    lack-of-fit test where there are more arms than coefficients."""
    from scipy import stats as sps

    out = []
    for source in dict.fromkeys(r["data"] for r in rows):
        for measure in MEASURES:
            values = _values(rows, source, measure)
            y = np.concatenate(list(values.values()))
            dose = np.concatenate([np.full(len(v), w) for w, v in values.items()])
            if len(values) < 3 or len(y) <= 3 or 0.0 not in values:
                continue
            fit = stats.dose_response(y, dose, degree=2)
            q = sps.t.ppf(0.975, fit.df)
            row = {"data": source, "measure": measure, "arms": len(values), "runs": len(y), "df": fit.df,
                   "pooled_sd": fit.sigma, "pure_sd": fit.pure_sd, "lack_of_fit_p": fit.lack_p,
                   "supports_if": "b1 < 0" if measure == "log_nmse" else ""}
            for j, name in ((1, "b1"), (2, "b2")):
                b, se = float(fit.coef[j]), float(fit.se[j])
                row.update({name: b, f"{name}_se": se, f"{name}_low": b - q * se, f"{name}_high": b + q * se,
                            f"{name}_p": float(2 * sps.t.sf(abs(b / se), fit.df)) if se > 0 else float("nan"),
                            f"{name}_mde": stats.minimum_detectable_effect(se, df=fit.df) if se > 0 else float("nan")})
            out.append(row)
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
    """From results/intervention.csv alone (no training): the tables intervention_effects (Dunnett per arm),
    intervention_dose (the quadratic dose-response) and intervention_spearman, written next to it."""
    folder = Path(folder)
    rows = results.read_table(folder / "intervention.csv")
    config = {"seed": seed, "source": "intervention.csv", "runs": len(rows)}
    return [results.save_table(effect_rows(rows), folder / "intervention_effects.csv",
                             {"name": "intervention_effects", **config}),
            results.save_table(dose_rows(rows), folder / "intervention_dose.csv",
                               {"name": "intervention_dose", **config}),
            results.save_table(spearman_rows(rows, seed), folder / "intervention_spearman.csv",
                             {"name": "intervention_spearman", **config})]


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure intervention: mean block IsoScore and log NMSE against the penalty strength, mean and 95% t
    interval over seeds per arm (an arm of one seed: its point alone, no interval), one line per dataset."""
    out = Path(out)
    rows = results.read_table(out / "results" / "intervention.csv")
    fig, axes = plots.figure(1, 2, width=plots.SINGLE * 1.8, height=2.2)
    sources = list(dict.fromkeys(r["data"] for r in rows))
    for j, source in enumerate(sources):
        for ax, measure in zip(axes[0], MEASURES, strict=True):
            values = _values(rows, source, measure)
            w = np.array(list(values))
            mean = np.array([v.mean() for v in values.values()])
            half = np.array([(stats.mean_interval(v).high - v.mean()) if len(v) > 1 else np.nan
                             for v in values.values()])
            n = sorted({len(v) for v in values.values()})
            ax.errorbar(w, mean, half, fmt="o-", color=f"C{j}", capsize=2,
                        label=f"{source} ({'/'.join(map(str, n))} seeds per arm)")
    layers = results.read_table(out / "results" / "intervention_layers.csv")
    null = [r["isoscore_null"] for r in layers if r["layer"] > 0 and r.get("isoscore_null", "") != ""]
    panel = dict(zip(MEASURES, axes[0], strict=True))
    if null:  # every run measured on the same rows: one isotropic reference for the IsoScore panel
        panel["isoscore_mean"].axhline(float(np.mean(null)), color="0.5", ls="--", lw=0.6,
                                       label="isotropic Gaussian, same n and d")
    for measure, ax in panel.items():
        ax.set_ylabel(MEASURES[measure])
        ax.set_xlabel("penalty strength w (> 0: towards isotropy)")
        ax.legend(frameon=False, fontsize=5)
    panel["isoscore_mean"].set_title("the penalty moves isotropy (mean, 95% t interval)")
    panel["log_nmse"].set_title("does NMSE follow? (isotropy helps: lower for w > 0)")
    return plots.save(fig, out / "figures", "intervention")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--analyse"]:  # `--analyse DIR`: the analysis tables from DIR/intervention.csv, no training
        print("\n".join(str(p) for p in analyse(Path(sys.argv[2]))))
        raise SystemExit(0)
    raise SystemExit(runner.main(__file__))

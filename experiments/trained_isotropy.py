"""T6: per-layer isotropy of numeric LMs trained here, across datasets, architectures and tokenizers, and its
relation to forecasting NMSE (Spearman ρ with a bootstrap 95% interval). The study's own figure types."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/<name>.py`: import this folder as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dataclasses
import json

import jax
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from experiments import runner
from isojax import plots, stats
from isojax.data import gp, real
from isojax.models import ensemble
from isojax.runs import results

# the 10 GP kernels, the real sets and the teacher. fertility is left out: its 40 series of 54 yearly values
# are shorter than one 64-token window of the bin tokenizer (one token per value)
DATASETS = [f"gp:{k}" for k in gp.KERNELS] + [f"real:{n}" for n in real.SETS if n != "fertility"] + ["teacher"]
# the design's extra datasets: the first 16 KernelSynth compositions (docs/statistics.md, the power analysis)
SYNTH = [f"gp:{name}" for name in list(gp.SYNTH)[:16]]
# the smaller sizes' datasets
CORE = ["gp:rbf_0.1", "gp:seasonality_24", "gp:white_1", "real:sunspots", "real:nile", "teacher"]
# (tokenizer, architecture): the columns of the by-layer figures. The deep-wide decoder (recipes.ARCHITECTURES)
# costs 4x to train and is left out of the design (docs/statistics.md)
VARIANTS = [("bins", "decoder"), ("bins", "encoder"), ("digits", "decoder"), ("digits", "encoder")]
LABEL = {"decoder": "decoder", "encoder": "encoder", "decoder-deep-wide": "deep-wide dec.", "bins": "bin tokens",
         "digits": "digit tokens"}
PCA_SOURCES = ["gp:rbf_0.1", "gp:seasonality_24", "real:sunspots", "teacher"]
# "per sd" of the design's target: the pilot's sd of last-layer IsoScore net of the dataset and variant effects
# (full/tables/t6_design_components.csv), a fixed unit so that every run and analysis is judged on one scale
DESIGN_UNIT = 0.0543
TARGET = float(np.log(1.2))  # the effect the design is powered for: NMSE × 1.2 per unit


MEASURES = ("isoscore_last", "clustered_cosine_last", "isoscore_mean", "isoscore_last_rel")
# what each measure measures: the hypothesis "isotropy helps forecasting" predicts a negative slope of log NMSE
# on an isotropy measure (IsoScore) and a positive one on an anisotropy measure (clustered cosine).
# isoscore_last_rel is last-layer IsoScore relative to an isotropic Gaussian cloud of the same n and d (1 = as
# isotropic as the null, 0 = one direction): with every run measured on the same rows it is an affine map of
# the raw value and gives the same slope per sd; where a dataset is too short for the rows it corrects for n.
DIRECTION = {"isoscore_last": "isotropy", "clustered_cosine_last": "anisotropy", "isoscore_mean": "isotropy",
             "isoscore_last_rel": "isotropy"}
# the last layer's uncertainty columns copied into the runs table (present when the evaluation's boot > 0)
_EXTRA_SUFFIXES = ("low", "high", "null", "null_sd", "rel")


def _last_layer_extras(last: dict) -> dict:
    """{isoscore_last_low: ..., clustered_cosine_last_rel: ...} from the last layer's row, where measured."""
    return {f"{m}_last_{suffix}": last[f"{m}_{suffix}"] for m in ("isoscore", "clustered_cosine")
            for suffix in _EXTRA_SUFFIXES if f"{m}_{suffix}" in last}
# forecast errors the slope is fitted to: the study's NMSE first, then scale-free and probabilistic ones
OUTCOMES = ("nmse", "mase", "scaled_crps")


def _design(datasets, seeds, steps, evaluation=None):
    out = dict(runs=[(d, t, a) for t, a in VARIANTS for d in datasets], steps=steps, seeds=list(seeds))
    return out if evaluation is None else {**out, "evaluation": evaluation}


# runs: which (dataset, tokenizer, architecture) triples train, for how many steps, with which seeds.
SIZES = {
    # three runs per dataset (a within-dataset Spearman ρ needs three) and two seeds per cell (the within slope)
    "tiny": dict(runs=[(d, t, a) for d in ("gp:rbf_0.1", "real:nile", "teacher") for t, a in VARIANTS[::3]],
                 steps=10, seeds=[0, 1], evaluation=dict(windows=4, samples=4, draws=200, rows=256, boot=20)),
    # the same design, small: no power (a demonstration of the pipeline that fits the quick budget)
    "quick": _design(CORE, [0, 1], 100, dict(windows=8, samples=8, draws=500, rows=512, boot=100)),
    # the design the power analysis chose before it ran: 33 datasets × 4 variants × 5 seeds, within-cell slope
    "full": _design(DATASETS + SYNTH, range(5), 400, dataclasses.asdict(ensemble.Evaluation(boot=200))),
}


def short(source: str) -> str:
    """A dataset's name without its source prefix (gp:rbf_0.1 -> rbf_0.1)."""
    return source.split(":", 1)[-1]


def _results(out: Path) -> Path:
    return Path(out) / "results"


def plan(size: str) -> list[ensemble.NumericRun]:
    """The runs of a size: one per (dataset, tokenizer, architecture, seed), named "<data>|<tok>|<arch>|seed s"."""
    cfg = SIZES[size]
    return [ensemble.NumericRun(f"{source}|{tok}|{arch}|seed {s}", source, tok, arch, seed=s)
            for s in cfg["seeds"] for source, tok, arch in cfg["runs"]]


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Train every run of the plan as ensembles (cached under out/results/models) and write the tables
    trained_isotropy_runs (one row per run), trained_isotropy_layers (one row per run and layer),
    trained_isotropy_spearman (isotropy against NMSE, pooled and within dataset) and trained_isotropy_pca
    (3-D PCA of each layer for the first variant on a few datasets)."""
    out, cfg = Path(out), SIZES[size]
    runs = plan(size)
    evaluation = ensemble.Evaluation(**cfg.get("evaluation", {}))
    evaluated, baselines = ensemble.train_and_evaluate(runs, jax.random.PRNGKey(seed), cfg["steps"],
                                                       _results(out) / "models", evaluation=evaluation,
                                                       log=lambda line: print(line, flush=True))
    summary, layers_rows, pca_rows, forecast_rows = [], [], [], []
    for e in evaluated:
        run, per_layer = e.run, e.layers
        name = f"{run.data}|{run.tokenizer}|{run.arch}"
        summary.append({"run": name, "seed": run.seed, "data": run.data, "tokenizer": run.tokenizer, "arch": run.arch,
                        **e.forecast, "final_loss": e.final_loss, "head_partition_isotropy": e.head_partition_isotropy,
                        "clustered_cosine_last": per_layer[-1]["clustered_cosine"],
                        "isoscore_last": per_layer[-1]["isoscore"],
                        "isoscore_mean": float(np.mean([p["isoscore"] for p in per_layer[1:]])),
                        **_last_layer_extras(per_layer[-1])})
        layers_rows += [{"run": name, "seed": run.seed, **p} for p in per_layer]
        forecast_rows += [{"run": name, "seed": run.seed, "data": run.data, **r} for r in e.forecast_rows]
        if (run.tokenizer, run.arch) == VARIANTS[0] and run.data in PCA_SOURCES and run.seed == cfg["seeds"][0]:
            pca_rows += _pca_rows(run.data, e.hidden)
    steps = cfg["steps"]
    folder = _results(out)
    tables = [results.save_table(summary, folder / "trained_isotropy_runs.csv",
                               {"name": "trained_isotropy", "seed": seed, "steps": steps,
                                "evaluation": dataclasses.asdict(evaluation)}),
              results.save_table(layers_rows, folder / "trained_isotropy_layers.csv",
                               {"name": "trained_isotropy_layers", "seed": seed}),
              results.save_table(pca_rows, folder / "trained_isotropy_pca.csv",
                                 {"name": "trained_isotropy_pca", "seed": seed}),
              results.save_table(forecast_rows + [{"run": b["forecaster"], "seed": "", "data": d, **b}
                                                  for d, rows in baselines.items() for b in rows],
                                 folder / "trained_isotropy_forecasts.csv",
                                 {"name": "trained_isotropy_forecasts", "seed": seed,
                                  "evaluation": dataclasses.asdict(evaluation)})]
    nmse = [s["nmse"] for s in summary]
    corr = {m: stats.spearman_bootstrap([s[m] for s in summary], nmse, seed) for m in _measured(summary)}
    within = {m: stats.within_group_spearman(summary, m, "nmse", "data", seed) for m in _measured(summary)}
    tables.append(results.save_table(
        [{"measure": m, "scope": "pooled over runs", "spearman_rho": r, "ci_low": lo, "ci_high": hi,
          "runs": len(summary), "datasets": len({s["data"] for s in summary})} for m, (r, lo, hi) in corr.items()]
        + [{"measure": m, "scope": "within dataset, mean", "spearman_rho": r, "ci_low": lo, "ci_high": hi,
            "runs": len(summary), "datasets": n} for m, (r, lo, hi, n) in within.items()],
        folder / "trained_isotropy_spearman.csv", {"name": "trained_isotropy_spearman", "seed": seed}))
    return tables + analyse(folder, seed)


def _factors(summary: list[dict]) -> dict:
    """Indicator effects of the fixed-effects analysis: the dataset and the variant (tokenizer × architecture)."""
    return {"data": [s["data"] for s in summary], "variant": [f"{s['tokenizer']}|{s['arch']}" for s in summary]}


def _verdict(low: float, high: float, slope: float, sign: int) -> str:
    if low > 0 or high < 0:
        return "supports" if np.sign(slope) == sign else "contradicts"
    return "no effect detected"


def effect_rows(summary: list[dict], seed: int = 0, draws: int = 2000) -> list[dict]:
    """Per outcome (log NMSE, log MASE, log scaled CRPS) and measure, two analyses of the slope of log error on
    the measure, with the sign that would support "isotropy helps forecasting":
    - "within cell" (the design's primary analysis): one effect per dataset × tokenizer × architecture cell, so
      the slope comes from seed-to-seed variation alone (`stats.within_slope`; CR2 interval clustered by dataset
      on its Bell–McCaffrey df, and the MDE at 80% power on those df);
    - "additive" (secondary: between configurations): dataset and variant effects (`stats.fixed_effects`, its
      cluster bootstrap over datasets).
    Slopes per unit of the measure, per its sd net of the dataset and variant effects (this run's), and for
    last-layer IsoScore per the design's fixed unit (DESIGN_UNIT, with the target log 1.2 beside it)."""
    factors, rows = _factors(summary), []
    cells = [f"{s['data']}|{s['tokenizer']}|{s['arch']}" for s in summary]
    data = [s["data"] for s in summary]
    seeds = len({s.get("seed", 0) for s in summary})
    for outcome in OUTCOMES:
        if outcome not in summary[0]:
            continue
        y = np.log([s[outcome] for s in summary])
        for m in _measured(summary):
            x = [s[m] for s in summary]
            sign = -1 if DIRECTION[m] == "isotropy" else 1
            fe = stats.fixed_effects(y, x, factors, data, draws=draws, seed=seed)
            unit = DESIGN_UNIT if m == "isoscore_last" else float("nan")
            base = {"outcome": f"log {outcome}", "measure": m, "measures": DIRECTION[m],
                    "supports_if": "slope < 0" if sign < 0 else "slope > 0", "x_resid_sd": fe.x_resid_sd,
                    "design_unit": unit, "target_per_unit": TARGET if m == "isoscore_last" else float("nan"),
                    "runs": len(summary), "datasets": len(set(data)), "seeds": seeds}
            if seeds > 1:
                w = stats.within_slope(y, x, cells, data, draws=draws, seed=seed)
                mde = stats.minimum_detectable_effect(w.se_cluster, df=w.df_cluster)
                rows.append({**base, "analysis": "within cell", "slope": w.slope, "ci_low": w.low, "ci_high": w.high,
                             "se": w.se_cluster, "df": w.df_cluster, "p": w.p_cluster, "mde": mde,
                             "slope_per_sd": w.slope * fe.x_resid_sd, "ci_low_per_sd": w.low * fe.x_resid_sd,
                             "ci_high_per_sd": w.high * fe.x_resid_sd, "mde_per_sd": mde * fe.x_resid_sd,
                             "slope_per_unit": w.slope * unit, "ci_low_per_unit": w.low * unit,
                             "ci_high_per_unit": w.high * unit, "mde_per_unit": mde * unit,
                             "x_within_sd": w.x_within_sd, "resid_sd": w.resid_sd, "cells": w.cells,
                             "clusters": w.clusters, "boot_low": w.boot_low, "boot_high": w.boot_high,
                             "verdict": _verdict(w.low, w.high, w.slope, sign)})
            mde = stats.minimum_detectable_effect(fe.boot_se)
            rows.append({**base, "analysis": "additive", "slope": fe.slope, "ci_low": fe.low, "ci_high": fe.high,
                         "se": fe.boot_se, "df": fe.df, "p": fe.p, "mde": mde,
                         "slope_per_sd": fe.slope * fe.x_resid_sd, "ci_low_per_sd": fe.low * fe.x_resid_sd,
                         "ci_high_per_sd": fe.high * fe.x_resid_sd, "mde_per_sd": mde * fe.x_resid_sd,
                         "slope_per_unit": fe.slope * unit, "ci_low_per_unit": fe.low * unit,
                         "ci_high_per_unit": fe.high * unit, "mde_per_unit": mde * unit,
                         "x_within_sd": float("nan"), "resid_sd": fe.resid_sd, "cells": len(set(cells)),
                         "clusters": fe.clusters, "boot_low": fe.low, "boot_high": fe.high,
                         "verdict": _verdict(fe.low, fe.high, fe.slope, sign)})
    return rows


def skill_rows(summary: list[dict]) -> list[dict]:
    """Per variant (tokenizer × architecture) and over all runs: how many runs beat seasonal-naive (their MASE
    skill interval below 1, on the same windows), and the median and quartiles of each metric's skill."""
    groups = {f"{t}|{a}": [s for s in summary if (s["tokenizer"], s["arch"]) == (t, a)] for t, a in _variants(summary)}
    groups["all runs"] = summary
    rows = []
    for name, sel in groups.items():
        row = {"variant": name, "runs": len(sel), "beat_seasonal_naive": int(sum(bool(s["beats_seasonal_naive"])
                                                                                 for s in sel))}
        for metric in OUTCOMES:
            skill = np.array([s[f"{metric}_skill"] for s in sel], float)
            q = np.nanpercentile(skill, [25, 50, 75]) if np.isfinite(skill).any() else [np.nan] * 3
            row.update({f"{metric}_skill_q25": float(q[0]), f"{metric}_skill_median": float(q[1]),
                        f"{metric}_skill_q75": float(q[2])})
        rows.append(row)
    return rows


def _measured(summary: list[dict]) -> list[str]:
    """The MEASURES the runs have: isoscore_last_rel only where they were measured with their null."""
    return [m for m in MEASURES if m in summary[0]]


def confound_rows(summary: list[dict]) -> list[dict]:
    """Share of the variance of each measure (and of log NMSE) explained by the dataset, and of what is left
    within datasets by the tokenizer, the architecture and the variant: a measure the tokenizer sets is
    confounded with everything else the tokenizer does to NMSE."""
    data = {"data": [s["data"] for s in summary]}
    by = {"tokenizer": {"tokenizer": [s["tokenizer"] for s in summary]},
          "architecture": {"arch": [s["arch"] for s in summary]}, "variant": {"variant": _factors(summary)["variant"]},
          # the tokenizer's effect differing between datasets: what additive dataset and tokenizer effects leave
          "dataset × tokenizer": {"data_tokenizer": [f"{s['data']}|{s['tokenizer']}" for s in summary]}}
    rows = []
    for m in (*_measured(summary), "log_nmse"):
        y = np.log([s["nmse"] for s in summary]) if m == "log_nmse" else [s[m] for s in summary]
        rows.append({"measure": m, "factor": "dataset", "within": "all runs", "share": stats.variance_share(y, data)})
        rows += [{"measure": m, "factor": f, "within": "dataset", "share": stats.variance_share(y, fac, base=data)}
                 for f, fac in by.items()]
    return rows


def by_tokenizer_rows(summary: list[dict]) -> list[dict]:
    """Mean of each measure and geometric-mean NMSE per dataset and tokenizer (over architectures and seeds)."""
    rows = []
    for d in dict.fromkeys(s["data"] for s in summary):
        for tok in dict.fromkeys(s["tokenizer"] for s in summary):
            sel = [s for s in summary if (s["data"], s["tokenizer"]) == (d, tok)]
            if sel:
                rows.append({"data": d, "tokenizer": tok, "runs": len(sel),
                             **{m: float(np.mean([s[m] for s in sel])) for m in _measured(summary)},
                             "nmse_geomean": float(np.exp(np.mean(np.log([s["nmse"] for s in sel]))))})
    return rows


def analyse(folder: Path, seed: int = 0) -> list[Path]:
    """From results/trained_isotropy_runs.csv alone (no training): the tables trained_isotropy_effects
    (within-cell and additive slopes, intervals, MDE), trained_isotropy_skill (who beats seasonal-naive),
    trained_isotropy_confound (variance shares) and
    trained_isotropy_by_tokenizer, written next to it. Runs without a seed column count as seed 0."""
    folder = Path(folder)
    summary = results.read_table(folder / "trained_isotropy_runs.csv")
    config = {"seed": seed, "source": "trained_isotropy_runs.csv", "runs": len(summary),
              "seeds": sorted({s.get("seed", 0) for s in summary})}
    # runs evaluated before the baselines existed (the first rounds' tables: NMSE only) have no skill table
    skill = ([results.save_table(skill_rows(summary), folder / "trained_isotropy_skill.csv",
                                 {"name": "trained_isotropy_skill", **config})]
             if "beats_seasonal_naive" in summary[0] else [])
    return [results.save_table(effect_rows(summary, seed), folder / "trained_isotropy_effects.csv",
                             {"name": "trained_isotropy_effects", "draws": 2000, **config}), *skill,
            results.save_table(confound_rows(summary), folder / "trained_isotropy_confound.csv",
                             {"name": "trained_isotropy_confound", **config}),
            results.save_table(by_tokenizer_rows(summary), folder / "trained_isotropy_by_tokenizer.csv",
                             {"name": "trained_isotropy_by_tokenizer", **config})]


def _pca_rows(source: str, hidden: np.ndarray) -> list[dict]:
    """Every 4th point of each layer's hidden states [L+1, rows, d] on its top 3 principal components, with
    the variance ratio of each component."""
    rows = []
    for layer in range(hidden.shape[0]):
        x = hidden[layer]
        x = x - x.mean(0)
        _, sv, vt = np.linalg.svd(x, full_matrices=False)
        ratio = sv[:3] ** 2 / np.sum(sv**2)
        proj = x @ vt[:3].T
        rows += [{"data": source, "layer": layer, "point": i, "pc1": float(p[0]), "pc2": float(p[1]),
                  "pc3": float(p[2]), "var1": float(ratio[0]), "var2": float(ratio[1]), "var3": float(ratio[2])}
                 for i, p in enumerate(proj[::4])]
    return rows


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figures t6_{clustered_cosine,best_k,isoscore}_by_layer, t6_pca_grid and t6_isotropy_vs_nmse, from the
    tables alone."""
    folder = _results(out)
    summary = results.read_table(folder / "trained_isotropy_runs.csv")
    layers_rows = results.read_table(folder / "trained_isotropy_layers.csv")
    steps = json.loads((folder / "trained_isotropy_runs.csv.json").read_text())["config"]["steps"]
    rho = results.read_table(folder / "trained_isotropy_spearman.csv")
    corr = {r["measure"]: (r["spearman_rho"], r["ci_low"], r["ci_high"]) for r in rho
            if r["scope"] == "pooled over runs"}
    within = {r["measure"]: (r["spearman_rho"], r["ci_low"], r["ci_high"], int(r["datasets"])) for r in rho
              if r["scope"] != "pooled over runs"}
    # the headline slope of each measure: log NMSE, the design's analysis (within cell) where there are seeds
    effects = {}
    for r in results.read_table(folder / "trained_isotropy_effects.csv"):
        if r["outcome"] == "log nmse" and (r["measure"] not in effects or r["analysis"] == "within cell"):
            effects[r["measure"]] = r
    fig_dir = Path(out) / "figures"
    # the by-layer figures show one seed (the first); the scatter shows every run
    first = min(s.get("seed", 0) for s in summary)
    paths = by_layer_figures([s for s in summary if s.get("seed", 0) == first],
                             [r for r in layers_rows if r.get("seed", 0) == first], int(steps), fig_dir)
    paths += pca_figure(results.read_table(folder / "trained_isotropy_pca.csv"), fig_dir)
    paths += isotropy_vs_nmse_figure(summary, corr, within, fig_dir, effects)
    return paths


def _variants(summary: list[dict]) -> list[tuple[str, str]]:
    return [v for v in VARIANTS if any((s["tokenizer"], s["arch"]) == v for s in summary)]


def by_layer_figures(summary: list[dict], layers_rows: list[dict], steps: int, fig_dir: Path) -> list[Path]:
    """Clustered cosine, best k and IsoScore by layer: rows = GP kernels | real series and teacher, columns =
    (architecture, tokenizer); one colour per dataset with its NMSE in each column in the legend."""
    paths, variants = [], _variants(summary)
    groups = [("GP kernels", [d for d in dict.fromkeys(s["data"] for s in summary) if d.startswith("gp:")]),
              ("real series and teacher",
               [d for d in dict.fromkeys(s["data"] for s in summary) if not d.startswith("gp:")])]
    groups = [g for g in groups if g[1]]
    by_run = {s["run"]: s for s in summary}
    for measure, fname, ylabel in (("clustered_cosine", "t6_clustered_cosine_by_layer", "clustered cosine"),
                                   ("best_k", "t6_best_k_by_layer", "best k (1 = no clusters)"),
                                   ("isoscore", "t6_isoscore_by_layer", "IsoScore")):
        # one y-range for every panel: the panels are compared with each other
        fig, axes = plots.figure(len(groups), len(variants), width=plots.DOUBLE, height=2.0 * len(groups),
                                 sharey=True)
        null = [r[f"{measure}_null"] for r in layers_rows if r.get(f"{measure}_null", "") != ""]
        for row, (group, sources) in enumerate(groups):
            for col, (tok, arch) in enumerate(variants):
                ax = axes[row, col]
                for j, source in enumerate(sources):
                    run_name = f"{source}|{tok}|{arch}"
                    vals = [r[measure] for r in layers_rows if r["run"] == run_name]
                    if vals:
                        ax.plot(range(len(vals)), vals, "o-", color=f"C{j % 10}", markersize=2)
                if null:  # every run is measured on the same rows, so one null serves the panel
                    ax.axhline(float(np.mean(null)), color="0.5", ls="--", lw=0.6,
                               label="isotropic Gaussian, same n and d" if (row, col) == (0, 0) else None)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_title(f"{LABEL[arch]}\n{LABEL[tok]}" if row == 0 else "")
                ax.set_xlabel("layer" if row == len(groups) - 1 else "")
                ax.set_ylabel(f"{ylabel}\n{group}" if col == 0 else "")
            handles = [plt.Line2D([], [], color=f"C{j % 10}", marker="o", markersize=2) for j in range(len(sources))]
            labels = [short(d) + " (" + ", ".join(f"{by_run[f'{d}|{t}|{a}']['nmse']:.2f}" if f"{d}|{t}|{a}" in by_run
                                                   else "–" for t, a in variants) + ")" for d in sources]
            axes[row, -1].legend(handles, labels, frameon=False, fontsize=5, loc="upper left",
                                 bbox_to_anchor=(1.02, 1.0), title="data (NMSE by column)", title_fontsize=5)
        fig.suptitle(f"{ylabel} of each layer's hidden states (layer 0 = embeddings), {steps} training steps"
                     + ("; dashed: an isotropic Gaussian cloud of the same n and d" if null else ""), fontsize=7)
        paths += plots.save(fig, fig_dir, fname)
    return paths


def pca_figure(rows: list[dict], fig_dir: Path) -> list[Path]:
    """3-D PCA scatter of every layer of each dataset (rows of the trained_isotropy_pca table)."""
    sources = list(dict.fromkeys(r["data"] for r in rows))
    n_layers = max(r["layer"] for r in rows) + 1 if rows else 0
    fig = plots.figure(1, 1, width=plots.DOUBLE, height=1.6 * max(len(sources), 1))[0]
    fig.clf()
    for r, source in enumerate(sources):
        for layer in range(n_layers):
            sel = [p for p in rows if p["data"] == source and p["layer"] == layer]
            proj = np.array([[p["pc1"], p["pc2"], p["pc3"]] for p in sel])
            ratio = [sel[0]["var1"], sel[0]["var2"], sel[0]["var3"]]
            ax = fig.add_subplot(len(sources), n_layers, r * n_layers + layer + 1, projection="3d")
            ax.scatter(proj[:, 0], proj[:, 1], proj[:, 2], s=0.5, alpha=0.5)
            ax.set_title(f"{source} L{layer}\nvar {ratio[0]:.2f}/{ratio[1]:.2f}/{ratio[2]:.2f}", fontsize=5)
            ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    return plots.save(fig, fig_dir, "t6_pca_grid")


def isotropy_vs_nmse_figure(summary: list[dict], corr: dict, within: dict, fig_dir: Path,
                            effects: dict | None = None) -> list[Path]:
    """Last-layer isotropy against NMSE over all runs (colour = architecture, marker = tokenizer), with ρ and,
    where `effects` (rows of trained_isotropy_effects by measure) is given, the headline slope."""
    variants = _variants(summary)
    fig, axes = plots.figure(1, 2, width=plots.SINGLE * 1.8, height=2.3)
    archs = list(dict.fromkeys(a for _, a in variants))
    for ax, m in zip(axes[0], ("isoscore_last", "clustered_cosine_last")):
        for tok, arch in variants:
            sel = [s for s in summary if (s["tokenizer"], s["arch"]) == (tok, arch)]
            ax.scatter([s[m] for s in sel], [s["nmse"] for s in sel], s=8, color=f"C{archs.index(arch)}",
                       marker="o" if tok == "bins" else "^", label=f"{arch}, {tok}")
        r, lo, hi = corr[m]
        rw, lw, hw, n = within[m]
        inside = f"{rw:.2f} [{lw:.2f}, {hw:.2f}] ({n} sets)" if n >= 2 else "n/a (< 2 sets with ≥ 3 runs)"
        title = f"pooled ρ = {r:.2f} [{lo:.2f}, {hi:.2f}]\nwithin dataset ρ = {inside}"
        if effects and m in effects:
            e = effects[m]
            title += (f"\n{e['analysis']} slope of log NMSE per sd = {e['slope_per_sd']:.2f} "
                      f"[{e['ci_low_per_sd']:.2f}, {e['ci_high_per_sd']:.2f}], MDE {e['mde_per_sd']:.2f}; "
                      f"supports if {e['supports_if']}")
        null = [s[f"{m}_null"] for s in summary if s.get(f"{m}_null", "") != ""]
        if null:  # where an isotropic cloud of the same n and d sits on this axis
            ax.axvline(float(np.mean(null)), color="0.5", ls="--", lw=0.6)
            title += "\ndashed: isotropic Gaussian, same n and d"
        ax.set_title(title, fontsize=5)
        ax.set_xlabel({"isoscore_last": "IsoScore, last layer",
                       "clustered_cosine_last": "clustered cosine, last layer"}[m])
        ax.set_ylabel("forecast NMSE")
        ax.set_yscale("log")
    axes[0, 0].legend(frameon=False, fontsize=5)
    seeds = len({s.get("seed", 0) for s in summary})
    fig.suptitle(f"{len(summary)} runs ({seeds} seed{'s' if seeds > 1 else ''}); Spearman ρ (bootstrap 95%) and the "
                 "slope of log NMSE (within dataset × variant cells where there are seeds: CR2 95%)", fontsize=6)
    return plots.save(fig, fig_dir, "t6_isotropy_vs_nmse")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--analyse"]:  # `--analyse DIR`: the analysis tables from DIR's runs table, no training
        print("\n".join(str(p) for p in analyse(Path(sys.argv[2]))))
        raise SystemExit(0)
    raise SystemExit(runner.main(__file__))

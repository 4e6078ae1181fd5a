"""The design of T6 and the intervention, decided before they run: a power analysis from a pilot's runs.

Run: PYTHONPATH=. python experiments/t6_design.py [--pilot DIR] [--out DIR] [--sims N] [--train-small S]
     [--train-deep S] [--eval S] [--penalty-factor F] [--target R] [--confidence C]

DIR holds trained_isotropy_runs.csv (T6: any number of seeds per configuration) and, optionally,
intervention.csv with intervention_layers.csv (seeds per penalty strength). Default: full/tables, the committed
--full pilot (one seed per T6 configuration; 3 seeds per intervention arm). Writes t6_design_components.csv,
t6_design.csv and intervention_design.csv (with JSON sidecars) to --out (default: the pilot folder) and prints
the chosen designs. Nothing here trains: it reruns in seconds on a new pilot (e.g. the --quick tables).

T6. The target: a slope of log NMSE on last-layer IsoScore of log(1.2) per sd (NMSE × 1.2 per sd) detected
with 80% power at alpha 0.05, two-sided. The sd is a fixed unit, the pilot's sd of the measure net of the
dataset and variant effects (the `x_resid_sd` of the fixed-effects table, 0.054 in the --full pilot), so every
design and analysis is judged on one scale. The model: log NMSE = β·x + dataset + variant + u_cell + e, with
u the cell (dataset × variant) effect, Var u = σ²_cell, and e the seed-to-seed noise, Var e = σ²_seed; x
likewise varies between cells beyond the additive effects (σ²_x,cell) and from seed to seed (σ²_x,seed).
Three analyses (`stats.slope_variance`):
- "additive": today's OLS with dataset and variant effects; u stays in the residual, so seeds barely help.
- "within": one effect per cell (`stats.within_slope`); the slope comes from seed-to-seed variation only, u
  cannot bias it, and its noise is σ²_seed alone.
- "mixed": random cell effects (GLS with known components, what a MixedLM fit approaches): uses both, but its
  between-cell part carries any dataset × variant confound (the tokenizer sets much of isotropy) into β.
Each variance rests on a stated number of df; the design is judged at one-sided `--confidence` bounds (upper
for the noise σ²_seed, σ²_cell; lower for the signal σ²_x,seed, σ²_x,cell). x's seed-to-seed variation is
modelled two ways, and the worse is used: a constant sd, or an sd proportional to the cell's level of x (the
pilot's seed-to-seed coefficient of variation times the level of each pilot cell: digit-token cells, whose
IsoScore is ~4x lower, then vary ~4x less). Beside the formula, a simulation resamples the pilot itself: whole
pilot datasets (their cells' x and log NMSE, less the pilot's own slope) and observed seed-to-seed deviation
pairs (δx, δy), adds β·x, and runs the analysis's test (cluster-robust by dataset, t on datasets − 1 df).

Intervention. Per dataset, log NMSE against the penalty weight w: the dose-response fit with a quadratic term
(`stats.dose_response`, one variance pooled across arms), its contrast ŷ(±1) − ŷ(0) (a moderate push either
way), and Dunnett's comparison of each arm with w = 0 (`stats.dunnett`). Seeds per arm for a change of 20%
(log 1.2), from the pooled within-arm variance at its upper bound; simulated by resampling the pilot's
within-arm residuals.

Cost: runs × seconds per run (training by architecture, plus evaluation), parameters because they are to be
measured on the new model stack; the default is the estimate for 400 steps with runs trained 4-16 at a time.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from scipy import stats as sps

from isojax import stats
from isojax.runs import results

MEASURE = "isoscore_last"
VARIANT_SETS = {  # (tokenizer, architecture) pairs trained on every dataset
    "6: bins, digits × decoder, encoder, deep-wide": [(t, a) for t in ("bins", "digits")
                                                      for a in ("decoder", "encoder", "decoder-deep-wide")],
    "4: bins, digits × decoder, encoder": [(t, a) for t in ("bins", "digits") for a in ("decoder", "encoder")],
    "2: bins, digits × decoder": [("bins", "decoder"), ("digits", "decoder")],
}
DATASETS = (17, 33, 49, 65, 81, 113)  # the 17 of the pilot (10 GP kernels, 6 real sets, teacher) + 0-96 KernelSynth
SEEDS = (1, 2, 3, 4, 5, 6, 8)
ARMS = {"7: w = 0, ±0.3, ±1, ±3": (-3.0, -1.0, -0.3, 0.0, 0.3, 1.0, 3.0),
        "5: w = 0, ±0.3, ±1": (-1.0, -0.3, 0.0, 0.3, 1.0),
        "3: w = 0, ±1": (-1.0, 0.0, 1.0),
        "3: w = 0, ±0.3": (-0.3, 0.0, 0.3)}


# ------------------------------------------------------------------------------------------------ the pilot

def _t6_rows(folder: Path, measure: str, outcome: str = "nmse") -> list[dict]:
    rows = results.read_table(folder / "trained_isotropy_runs.csv")
    return [{"data": r["data"], "variant": (r["tokenizer"], r["arch"]), "seed": r.get("seed", 0),
             "y": float(np.log(r[outcome])), "x": float(r[measure])} for r in rows]


def _intervention_rows(folder: Path, measure: str, outcome: str = "nmse") -> list[dict]:
    """Intervention runs with the log of the outcome and the measure (last-layer values from
    intervention_layers.csv)."""
    if not (folder / "intervention.csv").is_file():
        return []
    runs = results.read_table(folder / "intervention.csv")
    if measure == "isoscore_mean":
        values = {(r["data"], r["strength"], r["seed"]): r["isoscore_mean"] for r in runs}
    else:
        layers = results.read_table(folder / "intervention_layers.csv")
        last = {}
        for r in layers:
            k = (r["data"], r["strength"], r["seed"])
            if r["layer"] >= last.get(k, (-1, 0))[0]:
                last[k] = (r["layer"], r[{"isoscore_last": "isoscore",
                                          "clustered_cosine_last": "clustered_cosine"}[measure]])
        values = {k: v for k, (_, v) in last.items()}
    return [{"data": r["data"], "strength": float(r["strength"]), "seed": r["seed"],
             "y": float(np.log(r[outcome])), "x": float(values[(r["data"], r["strength"], r["seed"])])}
            for r in runs]


def _seed_pairs(cells: dict) -> dict:
    """From replicated cells {cell: [(x, y), ...]}: pooled seed-to-seed variances (Σ squares about the cell
    mean / Σ (m − 1)) of y, x and x / x̄_cell with their df, and the deviation pairs (δx, δx / x̄_cell, δy),
    each scaled by sqrt(m / (m − 1)) so that its mean square estimates the variance (m = the cell's runs);
    δy net of the pilot's own within slope, so that resampled pairs satisfy the null."""
    dx, dr, dy, ss = [], [], [], np.zeros(3)
    for pts in cells.values():
        if len(pts) < 2:
            continue
        x, y = np.array(pts, float).T
        scale = np.sqrt(len(x) / (len(x) - 1))
        cx, cr, cy = x - x.mean(), x / x.mean() - 1, y - y.mean()
        ss += [np.sum(cy**2), np.sum(cx**2), np.sum(cr**2)]
        dx, dr, dy = dx + list(cx * scale), dr + list(cr * scale), dy + list(cy * scale)
    df = sum(len(p) - 1 for p in cells.values() if len(p) > 1)
    if df == 0:
        return {"df": 0}
    dx, dr, dy = np.array(dx), np.array(dr), np.array(dy)
    slope = float(dx @ dy / (dx @ dx)) if dx @ dx > 0 else 0.0
    slope_r = float(dr @ dy / (dr @ dr)) if dr @ dr > 0 else 0.0
    # δy net of the pilot's own within slope on δx (for the "const" model) or on δx / x̄ (for "cv")
    return {"df": df, "var_y": ss[0] / df, "var_x": ss[1] / df, "cv2": ss[2] / df, "dx": dx, "dr": dr,
            "dy_const": dy - slope * dx, "dy_cv": dy - slope_r * dr, "slope": slope,
            "cells": sum(len(p) > 1 for p in cells.values())}


def _additive_residual(values: np.ndarray, factors: dict) -> np.ndarray:
    design = np.column_stack([np.ones(len(values)), stats._indicators(factors, len(values))])
    return values - design @ np.linalg.lstsq(design, values, rcond=None)[0]


def complete_datasets(t6: list[dict], variants: list[tuple]) -> list[str]:
    """The pilot's datasets on which every one of `variants` was trained (sorted)."""
    have: dict = {}
    for r in t6:
        have.setdefault(r["data"], set()).add(r["variant"])
    return sorted(d for d, v in have.items() if set(variants) <= v)


def t6_pilot(t6: list[dict], seed_cells: dict, variants: list[tuple]) -> dict:
    """The pilot's pieces for designs on `variants`: the seed-to-seed variances (pooled over the replicated
    cells of T6 and of `seed_cells`), the variance components of log NMSE and of x at the cell level under
    both models of x's seed variation, and for the simulation the pilot's cell means [datasets, variants]
    (log NMSE less the pilot's additive slope) and the seed deviation pairs. Only the pilot's datasets that
    have every one of `variants` count (`complete_datasets`); ValueError when fewer than 3 do."""
    datasets = complete_datasets(t6, variants)
    if len(datasets) < 3:
        raise ValueError(f"the pilot trains every variant of {variants} on {len(datasets)} datasets; 3 are needed")
    sel = [r for r in t6 if r["variant"] in variants and r["data"] in datasets]
    cells: dict = {}
    for r in sel:
        cells.setdefault((r["data"], r["variant"]), []).append((r["x"], r["y"]))
    seeds = _seed_pairs({**{("T6", *k): v for k, v in cells.items()}, **seed_cells})
    if seeds["df"] == 0:
        raise ValueError("the pilot has no replicated cell (two seeds of one configuration): the seed-to-seed "
                         "variance cannot be estimated; pass a pilot folder with intervention.csv or seeds")
    y, x = np.array([r["y"] for r in sel]), np.array([r["x"] for r in sel])
    factors = {"data": [r["data"] for r in sel], "variant": [str(r["variant"]) for r in sel]}
    cell = [f"{r['data']}|{r['variant']}" for r in sel]
    levels = np.array([[np.mean([p[0] for p in cells[(d, v)]]) for v in variants] for d in datasets])
    ymean = np.array([[np.mean([p[1] for p in cells[(d, v)]]) for v in variants] for d in datasets])
    slope = stats.fixed_effects(y, x, factors, factors["data"], draws=2).slope
    vc_y = stats.variance_components(y, factors, cell, within=(seeds["var_y"], seeds["df"]))
    out = {"datasets": len(datasets), "variants": variants, "seeds": seeds, "cell_y": vc_y.cell,
           "cell_df": vc_y.residual_df, "levels": levels, "ybase": ymean - slope * levels, "additive_slope": slope,
           "mean_level2": float(np.mean(levels**2))}
    # x's seed variance: constant, or cv² × level² (its mean over the pilot's cells)
    for model, var_xw in (("const", seeds["var_x"]), ("cv", seeds["cv2"] * out["mean_level2"])):
        out[f"cell_x_{model}"] = stats.variance_components(x, factors, cell, within=(var_xw, seeds["df"])).cell
    return out


def unit_sd(t6: list[dict]) -> float:
    """The fixed unit of "per sd": the sd (ddof = 1) of x net of dataset and variant effects over the pilot."""
    x = np.array([r["x"] for r in t6])
    factors = {"data": [r["data"] for r in t6], "variant": [str(r["variant"]) for r in t6]}
    return float(np.std(_additive_residual(x, factors), ddof=1))


def components(pilot: dict, model: str, confidence: float | None) -> dict:
    """σ²_seed, σ²_cell (of log NMSE) and σ²_x,seed, σ²_x,cell for one model of x's seed variation, at the
    point estimates (confidence None) or at one-sided bounds: upper for the noise, lower for x's variation."""
    s, df_seed, df_cell = pilot["seeds"], pilot["seeds"]["df"], pilot["cell_df"]
    var_xw = s["var_x"] if model == "const" else s["cv2"] * pilot["mean_level2"]
    point = {"seed_y": s["var_y"], "cell_y": pilot["cell_y"], "seed_x": var_xw, "cell_x": pilot[f"cell_x_{model}"]}
    if confidence is None:
        return point
    return {"seed_y": stats.variance_bound(point["seed_y"], df_seed, confidence),
            "cell_y": stats.variance_bound(point["cell_y"], df_cell, confidence),
            "seed_x": stats.variance_bound(point["seed_x"], df_seed, confidence, upper=False),
            "cell_x": stats.variance_bound(point["cell_x"], df_cell, confidence, upper=False)}


def expected_df(pilot: dict, model: str, datasets: int) -> float:
    """The Bell–McCaffrey df of the within slope's CR2 se for `datasets` datasets cycling through the pilot's:
    datasets − 1 when x varies as much from seed to seed in every cell ("const"), fewer when its seed variation
    follows the cells' levels ("cv"), so that datasets with high IsoScore carry most of it."""
    if model == "const":
        return float(datasets - 1)
    weight = np.sum(pilot["levels"] ** 2, 1)
    shares = np.resize(weight, datasets)
    return stats.cr2_df(shares / np.sum(shares))


def mde_per_sd(comp: dict, analysis: str, datasets: int, variants: int, seeds: int, unit: float,
               df: float | None = None) -> float:
    """The minimum detectable slope (80% power, alpha 0.05, t on `df`, default datasets − 1) per `unit` of x, in
    a balanced design: A = (D − 1)(V − 1)·(σ²_x,cell + σ²_x,seed / S), W = D·V·(S − 1)·σ²_x,seed."""
    if analysis == "within" and seeds < 2:
        return float("nan")
    a = (datasets - 1) * (variants - 1) * (comp["cell_x"] + comp["seed_x"] / seeds)
    w = datasets * variants * (seeds - 1) * comp["seed_x"]
    var = stats.slope_variance(analysis, a, w, comp["cell_y"], comp["seed_y"], seeds)
    return stats.minimum_detectable_effect(float(np.sqrt(var)), df=datasets - 1 if df is None else df) * unit


def simulated_power(pilot: dict, analysis: str, datasets: int, seeds: int, beta: float, model: str, sims: int,
                    seed: int = 0, chunk: int = 200) -> float:
    """The share of `sims` resampled designs in which the analysis's test rejects at alpha 0.05: datasets drawn
    with replacement from the pilot's (their cells' x and log NMSE less the pilot's slope), each run a pilot
    cell plus a resampled seed deviation pair (δx: absolute for "const", relative to the cell's x for "cv";
    δy net of the pilot's within slope), y += beta·x; the test is the slope's t with the CR1 se clustered by
    dataset ("within": cell effects, CR2 on its Bell–McCaffrey df; "additive": dataset and variant effects,
    CR1 on datasets − 1 df)."""
    if analysis == "within" and seeds < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    levels, ybase, s = pilot["levels"], pilot["ybase"], pilot["seeds"]
    n_pilot, v = levels.shape
    dev_x = s["dr"] if model == "cv" else s["dx"]
    n = datasets * v * seeds
    k = 1 if analysis == "within" else v + 1
    factor = datasets / (datasets - 1) * (n - 1) / (n - k)
    crit = sps.t.ppf(0.975, datasets - 1)
    hits = 0
    for start in range(0, sims, chunk):
        c = min(chunk, sims - start)
        pick = rng.integers(0, n_pilot, (c, datasets))
        j = rng.integers(0, len(dev_x), (c, datasets, v, seeds))
        lev = levels[pick][..., None]
        x = lev * (1 + dev_x[j]) if model == "cv" else lev + dev_x[j]
        y = ybase[pick][..., None] + s[f"dy_{model}"][j] + beta * x
        if analysis == "within":
            xt, yt = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
        else:  # balanced two-way effects: x − dataset mean − variant mean + grand mean
            xt = x - x.mean((2, 3), keepdims=True) - x.mean((1, 3), keepdims=True) + x.mean((1, 2, 3), keepdims=True)
            yt = y - y.mean((2, 3), keepdims=True) - y.mean((1, 3), keepdims=True) + y.mean((1, 2, 3), keepdims=True)
        sxx = np.sum(xt**2, (1, 2, 3))
        b = np.sum(xt * yt, (1, 2, 3)) / sxx
        score = np.sum(xt * (yt - b[:, None, None, None] * xt), (2, 3))
        if analysis == "within":  # CR2 with its Bell–McCaffrey df, as `stats.within_slope` tests
            share = np.sum(xt**2, (2, 3)) / sxx[:, None]
            d, r2 = share / (1 - share), share**2 / (1 - share)
            dof = 1 / (np.sum(d**2, 1) - 2 * np.sum(d * r2, 1) + np.sum(r2, 1) ** 2)
            se = np.sqrt(np.sum(score**2 / (1 - share), 1)) / sxx
            hits += int(np.sum(np.abs(b / se) > sps.t.ppf(0.975, dof)))
        else:  # CR1 on datasets − 1 df
            se = np.sqrt(factor * np.sum(score**2, 1)) / sxx
            hits += int(np.sum(np.abs(b / se) > crit))
    return hits / sims


def t6_cost(datasets: int, variants: list[tuple], seeds: int, cost: dict) -> float:
    """Hours of training and evaluation for datasets × variants × seeds runs."""
    per = sum((cost["deep"] if arch == "decoder-deep-wide" else cost["small"]) + cost["eval"] for _, arch in variants)
    return datasets * seeds * per / 3600


def t6_rows(t6: list[dict], seed_cells: dict, confidence: float, target: float, sims: int, cost: dict,
            unit: float | None = None) -> tuple:
    """One row per candidate design and analysis, the components table and the unit sd (`unit_sd` of the
    pilot unless given)."""
    unit = unit_sd(t6) if unit is None else unit
    rows, comp_rows = [], []
    for label, variants in VARIANT_SETS.items():
        if len(complete_datasets(t6, variants)) < 3:
            print(f"variant set {label}: the pilot trains all of it on fewer than 3 datasets; left out")
            continue
        pilot = t6_pilot(t6, seed_cells, variants)
        for model in ("const", "cv"):
            point, bound = components(pilot, model, None), components(pilot, model, confidence)
            for name in point:
                df = pilot["seeds"]["df"] if name.startswith("seed") else pilot["cell_df"]
                comp_rows.append({"variants": label, "x_seed_model": model, "component": name,
                                  "estimate": point[name], "df": df, "bound": bound[name],
                                  "bound_side": "upper" if name.endswith("y") else "lower", "confidence": confidence})
        for d, s, analysis in itertools.product(DATASETS, SEEDS, ("additive", "within", "mixed")):
            if analysis == "within" and s < 2:
                continue
            row = {"datasets": d, "variants": label, "n_variants": len(variants), "seeds": s, "analysis": analysis,
                   "runs": d * len(variants) * s, "hours": t6_cost(d, variants, s, cost)}
            for model in ("const", "cv"):
                dof = expected_df(pilot, model, d) if analysis == "within" else None
                row[f"mde_sd_{model}"] = mde_per_sd(components(pilot, model, None), analysis, d, len(variants), s,
                                                    unit, dof)
                row[f"mde_sd_{model}_bound"] = mde_per_sd(components(pilot, model, confidence), analysis, d,
                                                          len(variants), s, unit, dof)
                row[f"df_{model}"] = dof if analysis == "within" else float(d - 1)
            row["mde_sd_bound"] = max(row["mde_sd_const_bound"], row["mde_sd_cv_bound"])
            for model in ("const", "cv"):
                simulate = analysis != "mixed" and sims > 0
                row[f"power_sim_{model}"] = (simulated_power(pilot, analysis, d, s, target / unit, model, sims)
                                             if simulate else float("nan"))
            simulate = analysis != "mixed" and sims > 0
            row["size_sim_cv"] = simulated_power(pilot, analysis, d, s, 0.0, "cv", sims, seed=1) if simulate else np.nan
            # the formula against the resampling: the simulated power at the formula's point MDE (80% if they agree)
            row["power_sim_at_mde_cv"] = (simulated_power(pilot, analysis, d, s, row["mde_sd_cv"] / unit, "cv", sims,
                                                          seed=2) if simulate else np.nan)
            row["meets"] = bool(row["mde_sd_bound"] <= target and analysis != "mixed"
                                and (sims == 0 or min(row["power_sim_const"], row["power_sim_cv"]) >= 0.8))
            rows.append(row)
    return rows, comp_rows, unit


# ------------------------------------------------------------------------------------------- intervention

def intervention_pilot(rows: list[dict]) -> dict:
    """Per dataset: the within-arm variance of log NMSE pooled over arms (and its df), the scaled within-arm
    deviations for resampling, the variance at w = 0 alone, and the quadratic's lack of fit on the pilot's arms
    (all of them, and those with |w| <= 1)."""
    out = {}
    for data in dict.fromkeys(r["data"] for r in rows):
        sel = [r for r in rows if r["data"] == data]
        arms: dict = {}
        for r in sel:
            arms.setdefault(r["strength"], []).append(r["y"])
        ss = sum(float(np.sum((np.array(v) - np.mean(v)) ** 2)) for v in arms.values())
        df = sum(len(v) - 1 for v in arms.values())
        dev = np.concatenate([(np.array(v) - np.mean(v)) * np.sqrt(len(v) / (len(v) - 1))
                              for v in arms.values() if len(v) > 1])
        ref = np.array(arms.get(0.0, []))
        y, w = np.array([r["y"] for r in sel]), np.array([r["strength"] for r in sel])
        near = np.abs(w) <= 1.0
        out[data] = {"var": ss / df, "df": df, "dev": dev, "var_w0": float(np.var(ref, ddof=1)), "df_w0": len(ref) - 1,
                     "lack_p_all": stats.dose_response(y, w).lack_p,
                     "lack_p_near": stats.dose_response(y[near], w[near]).lack_p if len(set(w[near])) > 3 else np.nan}
    return out


def _dose_se(arms: tuple, n: int, contrast: tuple = (0.0, 1.0, 1.0)) -> tuple[float, int]:
    """sd-free se of a contrast of the quadratic fit's coefficients (b0, b1, b2) with n runs per arm (default
    ŷ(1) − ŷ(0) = b1 + b2; (0, 1, 0) is the linear term), and the residual df."""
    design = np.vander(np.repeat(arms, n), 3, increasing=True)
    c = np.array(contrast)
    return float(np.sqrt(c @ np.linalg.inv(design.T @ design) @ c)), len(arms) * n - 3


def _dunnett_mde(sd: float, n: int, k: int) -> float:
    """The difference Dunnett's test of k arms (n runs each, and the control) detects with 80% power."""
    from scipy import optimize
    high = (stats.dunnett_critical(k, (k + 1) * (n - 1)) + 4.0) * sd * np.sqrt(2 / n)  # power > 0.99 there
    return float(optimize.brentq(lambda d: stats.dunnett_power(d, sd, n, k) - 0.8, 1e-9, high))


def intervention_power(dev: np.ndarray, arms: tuple, n: int, delta: float, sims: int, seed: int = 0) -> tuple:
    """(Dunnett power, dose-response power) by resampling a dataset's within-arm deviations. Dunnett: the arm of
    the largest positive w <= 1 alone is shifted by delta, the test its |t| (pooled variance) against Dunnett's
    critical value. Dose-response: log NMSE = delta·w + deviation (so that ŷ(1) − ŷ(0) = delta), the test the
    t of the quadratic fit's contrast ŷ(1) − ŷ(0) on its residual df (where the arms include w = 1)."""
    rng = np.random.default_rng(seed)
    k, w = len(arms) - 1, np.repeat(arms, n)
    e = dev[rng.integers(0, len(dev), (sims, len(arms), n))]
    shifted_arm = arms.index(max(a for a in arms if 0 < a <= 1))
    shifted = e + delta * (np.arange(len(arms)) == shifted_arm)[None, :, None]
    means = shifted.mean(2)
    pooled = np.sqrt(np.sum((shifted - means[..., None]) ** 2, (1, 2)) / (len(arms) * (n - 1)))
    t = (means[:, shifted_arm] - means[:, arms.index(0.0)]) / (pooled * np.sqrt(2 / n))
    dunnett = float(np.mean(np.abs(t) > stats.dunnett_critical(k, len(arms) * (n - 1))))
    if 1.0 not in arms:
        return dunnett, float("nan")
    design = np.vander(w, 3, increasing=True)
    c = np.array([0.0, 1.0, 1.0])
    y = delta * w + e.reshape(sims, -1)
    coef = y @ np.linalg.pinv(design).T
    df = len(w) - 3
    se = np.sqrt(np.sum((y - coef @ design.T) ** 2, 1) / df * (c @ np.linalg.inv(design.T @ design) @ c))
    return dunnett, float(np.mean(np.abs(coef @ c / se) > sps.t.ppf(0.975, df)))


def intervention_rows(pilot: dict, confidence: float, target: float, sims: int, cost: dict) -> list[dict]:
    """One row per dataset and arm set: the pooled within-arm sd of log NMSE (point and upper bound, its df), the
    seeds per arm Dunnett's test needs to see a change of `target` with 80% power at each, runs and hours at the
    bound, the quadratic dose-response fit's MDE there for ŷ(1) − ŷ(0) (where the arms include w = 1) and for
    its linear term b1, the quadratic's lack of fit on the pilot, and the simulated powers at the bound's
    seeds."""
    rows = []
    per_run = cost["small"] * cost["penalty"] + cost["eval"]
    for data, p in pilot.items():
        sd_point = float(np.sqrt(p["var"]))
        sd = float(np.sqrt(stats.variance_bound(p["var"], p["df"], confidence)))
        for label, arms in ARMS.items():
            k = len(arms) - 1
            n = stats.seeds_per_arm(target, sd, k)
            row = {"data": data, "arms": label, "n_arms": len(arms), "sd_log_nmse": sd_point, "df": p["df"],
                   "sd_bound": sd, "seeds_point": stats.seeds_per_arm(target, sd_point, k), "seeds_per_arm": n,
                   "runs": len(arms) * n, "hours": len(arms) * n * per_run / 3600,
                   "mde_dunnett": _dunnett_mde(sd, n, k), "mde_dunnett_3_seeds": _dunnett_mde(sd, 3, k)}
            se, df = _dose_se(arms, n)
            row["mde_dose"] = stats.minimum_detectable_effect(se * sd, df=df) if 1.0 in arms else float("nan")
            # the linear term b1 (per unit of w): "isotropy helps" predicts b1 < 0, whatever the curvature b2
            se, df = _dose_se(arms, n, (0.0, 1.0, 0.0))
            row["mde_linear"] = stats.minimum_detectable_effect(se * sd, df=df)
            row["lack_p_all"], row["lack_p_near"] = p["lack_p_all"], p["lack_p_near"]
            power = intervention_power(p["dev"], arms, n, target, sims) if sims > 0 else (np.nan, np.nan)
            row["power_sim_dunnett"], row["power_sim_dose"] = power
            rows.append(row)
    return rows


def issue_numbers(t6: list[dict], seed_cells: dict, boot_mde: float | None) -> dict:
    """The re-analysis quoted in the study issue, recomputed the way it was computed (point estimates, constant
    seed sd of x, normal quantiles 2.80·se, the pilot's D datasets × 6 variants, 17 in the --full pilot): the
    additive slope's MDE per sd at 1 and 10 seeds, the within slope's at 3 and 5 seeds, the datasets the additive
    analysis needs with one seed (from the OLS se, and from `boot_mde`, the cluster bootstrap's MDE per sd in
    the effects table)."""
    unit = unit_sd(t6)
    pilot = t6_pilot(t6, seed_cells, VARIANT_SETS[next(iter(VARIANT_SETS))])
    comp = components(pilot, "const", None)
    d, v = pilot["datasets"], len(pilot["variants"])

    def mde(analysis: str, seeds: int) -> float:
        a = (d - 1) * (v - 1) * (comp["cell_x"] + comp["seed_x"] / seeds)
        w = d * v * (seeds - 1) * comp["seed_x"]
        return stats.minimum_detectable_effect(np.sqrt(stats.slope_variance(analysis, a, w, comp["cell_y"],
                                                                            comp["seed_y"], seeds))) * unit

    one = mde("additive", 1)
    return {"additive_1": one, "additive_10": mde("additive", 10), "within_3": mde("within", 3),
            "within_5": mde("within", 5), "seed_share": comp["seed_y"] / (comp["seed_y"] + comp["cell_y"]),
            "datasets_ols": d * (one / np.log(1.2)) ** 2,
            "datasets_boot": d * (boot_mde / np.log(1.2)) ** 2 if boot_mde else float("nan")}


# ----------------------------------------------------------------------------------------------- main

def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="experiments/t6_design.py", description=__doc__.split("\n")[0])
    ap.add_argument("--pilot", type=Path, default=Path("full/tables"), help="folder of the pilot's run tables")
    ap.add_argument("--out", type=Path, default=None, help="folder for the design tables (default: --pilot)")
    ap.add_argument("--measure", default=MEASURE, choices=("isoscore_last", "clustered_cosine_last", "isoscore_mean"))
    ap.add_argument("--outcome", default="nmse", help="the runs tables' error column whose log is analysed "
                    "(default nmse; e.g. mase where the tables have it)")
    ap.add_argument("--target", type=float, default=1.2, help="the error ratio per sd to detect (default 1.2)")
    ap.add_argument("--confidence", type=float, default=0.8, help="one-sided confidence of the variance bounds")
    ap.add_argument("--unit", type=float, default=None,
                    help="the sd that 'per sd' means (default: the pilot's sd of x net of dataset and variant "
                         "effects; pass the --full pilot's, 0.0543, to judge a new pilot on the same scale)")
    ap.add_argument("--sims", type=int, default=1000, help="resampled designs per candidate (0: formula only)")
    ap.add_argument("--min-variants", type=int, default=4,
                    help="choose only designs with at least this many variants (4: both tokenizers, two archs)")
    ap.add_argument("--train-small", type=float, default=8.5, help="training seconds per decoder/encoder run")
    ap.add_argument("--train-deep", type=float, default=34.0, help="training seconds per deep-wide run")
    ap.add_argument("--eval", type=float, default=5.0, help="evaluation seconds per run (forecasts, measures)")
    ap.add_argument("--penalty-factor", type=float, default=1.5, help="training cost of a penalised run, relative")
    return ap.parse_args(argv)


def choose_t6(rows: list[dict], min_variants: int) -> list[dict]:
    """The candidates that meet the target, cheapest first: MDE at the variance bounds (the worse of the two
    models of x's seed variation) at most the target, simulated power at the target at least 0.8 under both
    models and simulated size at most 0.075 (a test that rejects too often under the null is no test), with
    at least `min_variants` variants; the "mixed" analysis is listed but never chosen (its between-cell part
    carries the dataset × variant confound into β)."""
    def ok(r: dict) -> bool:
        sim = [r["power_sim_const"], r["power_sim_cv"], r["size_sim_cv"]]
        simulated = all(np.isfinite(sim))
        return (r["analysis"] != "mixed" and r["n_variants"] >= min_variants and r["mde_sd_bound"] <= r["target"]
                and (not simulated or (min(sim[:2]) >= 0.8 and sim[2] <= 0.075)))
    return sorted((r for r in rows if ok(r)), key=lambda r: (r["hours"], r["mde_sd_bound"]))


def choose_intervention(rows: list[dict]) -> tuple[str, list[dict]]:
    """The arm set whose Dunnett design (each dataset with the seeds per arm it needs at the bound) costs least."""
    hours = {label: sum(r["hours"] for r in rows if r["arms"] == label) for label in ARMS}
    label = min(hours, key=hours.get)
    return label, [r for r in rows if r["arms"] == label]


def main(argv: list[str] | None = None) -> dict:
    """Write the design tables and return the chosen designs."""
    args = _parse(argv)
    target = float(np.log(args.target))
    cost = {"small": args.train_small, "deep": args.train_deep, "eval": args.eval, "penalty": args.penalty_factor}
    t6 = _t6_rows(args.pilot, args.measure, args.outcome)
    iv = _intervention_rows(args.pilot, args.measure, args.outcome)
    seed_cells: dict = {}
    for r in iv:
        if r["strength"] == 0.0:  # the unpenalised arm: T6's bins-token decoder under another key
            seed_cells.setdefault(("intervention", r["data"]), []).append((r["x"], r["y"]))
    rows, comp_rows, unit = t6_rows(t6, seed_cells, args.confidence, target, args.sims, cost, args.unit)
    for r in rows:
        r["target"] = target
    ok = choose_t6(rows, args.min_variants)
    for r in rows:
        r["chosen"] = bool(ok) and r is ok[0]
    config = {"pilot": str(args.pilot), "measure": args.measure, "outcome": args.outcome, "target": args.target,
              "unit_sd": unit,
              "confidence": args.confidence, "sims": args.sims, "cost_seconds": cost,
              "min_variants": args.min_variants}
    out = args.out or args.pilot
    results.save_table(comp_rows, out / "t6_design_components.csv", {"name": "t6_design_components", **config})
    results.save_table(rows, out / "t6_design.csv", {"name": "t6_design", **config})
    effects = args.pilot / "trained_isotropy_effects.csv"
    boot = ({r["measure"]: r["mde_per_sd"] for r in results.read_table(effects)}.get(args.measure)
            if effects.is_file() else None)
    six = VARIANT_SETS[next(iter(VARIANT_SETS))]
    issue = issue_numbers(t6, seed_cells, boot) if len(complete_datasets(t6, six)) >= 3 else None
    if issue:
        print(f"as the issue computed it (point estimates, normal quantiles): additive MDE/sd "
              f"{issue['additive_1']:.3f} (1 seed) -> {issue['additive_10']:.3f} (10 seeds); seed share of the "
              f"residual variance {issue['seed_share']:.2f}; within {issue['within_3']:.3f} (3 seeds), "
              f"{issue['within_5']:.3f} (5); additive with one seed needs {issue['datasets_ols']:.0f} (OLS se) to "
              f"{issue['datasets_boot']:.0f} (bootstrap se) datasets at 6 variants")
    chosen = {"t6": ok[0] if ok else None, "issue": issue}
    print(f"T6 ({args.measure}; unit sd {unit:.4f}; target log {args.target} = {target:.3f} per sd): "
          f"{len(ok)} of {len(rows)} candidates meet it with >= {args.min_variants} variants")
    for r in ok[:6]:
        print(f"  {r['datasets']} datasets × {r['variants']} × {r['seeds']} seeds, {r['analysis']}: {r['runs']} runs, "
              f"{r['hours']:.2f} h; MDE/sd {r['mde_sd_const']:.3f} / {r['mde_sd_cv']:.3f} (bound "
              f"{r['mde_sd_bound']:.3f}), simulated power {r['power_sim_const']:.2f} / {r['power_sim_cv']:.2f}, "
              f"size {r['size_sim_cv']:.3f}")
    if ok:  # what the chosen runs give the other analyses (the additive slope: between-cell association)
        for r in rows:
            if (r["datasets"], r["variants"], r["seeds"]) == tuple(ok[0][k] for k in ("datasets", "variants", "seeds")):
                print(f"  the same runs, {r['analysis']}: MDE/sd {r['mde_sd_cv']:.3f} (bound {r['mde_sd_bound']:.3f})")
    if iv:
        irows = intervention_rows(intervention_pilot(iv), args.confidence, target, min(args.sims, 2000), cost)
        label, sel = choose_intervention(irows)
        for r in irows:
            r["chosen"] = r["arms"] == label
        results.save_table(irows, out / "intervention_design.csv", {"name": "intervention_design", **config})
        chosen["intervention"] = (label, sel)
        print(f"intervention: Dunnett against w = 0, seeds per arm for a change of {target:.3f} in log NMSE at the "
              f"bound; cheapest arm set {label}: " + ", ".join(
                  f"{r['data']} {r['seeds_per_arm']} ({r['seeds_point']} at the point estimate)" for r in sel)
              + f"; {sum(r['runs'] for r in sel)} runs, {sum(r['hours'] for r in sel):.2f} h")
        if chosen["t6"]:
            total = chosen["t6"]["hours"] + sum(r["hours"] for r in sel)
            print(f"T6 + intervention: {total:.2f} h at {cost}")
    return chosen


if __name__ == "__main__":
    main()

"""T6: per-layer isotropy of numeric LMs trained here, across datasets, architectures and tokenizers, and its
relation to forecasting NMSE (Spearman ρ with a bootstrap 95% interval). The study's own figure types."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from scipy import stats

from isojax import plots, sweep
from isojax.data import gp, real
from isojax.experiments import _lm

QUICK_DATA = ["gp:rbf_0.1", "gp:seasonality_24", "gp:white_1", "real:sunspots", "real:nile", "real:elnino"]
FULL_DATA = [f"gp:{k}" for k in gp.KERNELS] + [f"real:{n}" for n in real.SETS]


def spearman_bootstrap(x, y, key_seed: int = 0, draws: int = 2000):
    """Spearman ρ of (x, y) and a percentile bootstrap 95% interval over the pairs."""
    x, y = np.asarray(x), np.asarray(y)
    rho = stats.spearmanr(x, y).statistic
    rng = np.random.default_rng(key_seed)
    boots = []
    for _ in range(draws):
        idx = rng.integers(0, len(x), len(x))
        if len(np.unique(x[idx])) > 1 and len(np.unique(y[idx])) > 1:
            boots.append(stats.spearmanr(x[idx], y[idx]).statistic)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(rho), float(lo), float(hi)


def run(out: Path, quick: bool = True, seed: int = 0, tiny: bool = False) -> list[Path]:
    out = Path(out)
    datasets = ["gp:rbf_0.1", "real:nile", "real:sunspots"] if tiny else QUICK_DATA if quick else FULL_DATA
    steps = 10 if tiny else 100 if quick else 1500
    runs = [(d, "bins", a) for d in datasets for a in (list(_lm.ARCHS)[:2] if tiny else _lm.ARCHS)]
    runs += [(d, "digits", "decoder") for d in (datasets[1:2] + datasets[3:4] if quick else datasets)]
    summary, layers_rows, pca = [], [], {}
    for i, (source, tok, arch) in enumerate(runs):
        res, per_layer, hidden = _lm.train_and_measure(jax.random.fold_in(jax.random.PRNGKey(seed), i), source, tok,
                                                       arch, steps, cache=out / "results" / "models")
        name = f"{source}|{tok}|{arch}"
        summary.append({"run": name, "data": source, "tokenizer": tok, "arch": arch, **res,
                        "clustered_cosine_last": per_layer[-1]["clustered_cosine"], "isoscore_last": per_layer[-1]["isoscore"],
                        "isoscore_mean": float(np.mean([p["isoscore"] for p in per_layer[1:]]))})
        layers_rows += [{"run": name, **p} for p in per_layer]
        if tok == "bins" and arch == "decoder" and source in datasets[:3] + datasets[3:4]:
            pca[source] = hidden
        print(f"  {name}: NMSE {res['nmse']:.3f}, last-layer IsoScore {per_layer[-1]['isoscore']:.3f}", flush=True)
    sweep.save_table(summary, out / "results" / "trained_isotropy_runs.csv", {"name": "trained_isotropy", "seed": seed, "steps": steps})
    sweep.save_table(layers_rows, out / "results" / "trained_isotropy_layers.csv", {"name": "trained_isotropy_layers", "seed": seed})
    nmse = [s["nmse"] for s in summary]
    corr = {m: spearman_bootstrap([s[m] for s in summary], nmse, seed) for m in ("isoscore_last", "clustered_cosine_last", "isoscore_mean")}
    sweep.save_table([{"measure": m, "spearman_rho": r, "ci_low": lo, "ci_high": hi, "runs": len(summary)}
                      for m, (r, lo, hi) in corr.items()], out / "results" / "trained_isotropy_spearman.csv",
                     {"name": "trained_isotropy_spearman", "seed": seed})
    paths = []

    # (1) per-layer clustered cosine by layer, NMSE in the legend; (2) best k by layer
    archs = list(_lm.ARCHS)
    for measure, fname, ylabel in (("clustered_cosine", "t6_clustered_cosine_by_layer", "clustered cosine"),
                                   ("best_k", "t6_best_k_by_layer", "best k (1 = no clusters)"),
                                   ("isoscore", "t6_isoscore_by_layer", "IsoScore")):
        fig, axes = plots.figure(1, len(archs), width=plots.DOUBLE, height=2.6)
        for ax, arch in zip(axes[0], archs):
            for j, s in enumerate(x for x in summary if x["arch"] == arch and x["tokenizer"] == "bins"):
                vals = [r[measure] for r in layers_rows if r["run"] == s["run"]]
                ax.plot(range(len(vals)), vals, "o-", color=f"C{j % 10}", label=f"{s['data']} ({s['nmse']:.2f})")
            ax.set_xlabel("layer (0 = embeddings)")
            ax.set_ylabel(ylabel)
            ax.set_title(arch)
        axes[0, 0].legend(frameon=False, title="data (NMSE)", fontsize=5)
        paths += plots.save(fig, out / "figures", fname)

    # (3) 3-D PCA grid per layer with the variance ratio
    sources = list(pca)
    n_layers = next(iter(pca.values())).shape[1] if pca else 0
    fig = plots.figure(1, 1, width=plots.DOUBLE, height=1.6 * max(len(sources), 1))[0]
    fig.clf()
    for r, source in enumerate(sources):
        hidden = pca[source]
        for layer in range(n_layers):
            x = hidden[:, layer].reshape(-1, hidden.shape[-1])
            x = x - x.mean(0)
            u, sv, vt = np.linalg.svd(x, full_matrices=False)
            ratio = sv[:3] ** 2 / np.sum(sv**2)
            proj = x @ vt[:3].T
            ax = fig.add_subplot(len(sources), n_layers, r * n_layers + layer + 1, projection="3d")
            ax.scatter(proj[::4, 0], proj[::4, 1], proj[::4, 2], s=0.5, alpha=0.5)
            ax.set_title(f"{source} L{layer}\nvar {ratio[0]:.2f}/{ratio[1]:.2f}/{ratio[2]:.2f}", fontsize=5)
            ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    paths += plots.save(fig, out / "figures", "t6_pca_grid")

    # (4) isotropy against NMSE across all runs
    fig, axes = plots.figure(1, 2, width=plots.SINGLE * 1.8, height=2.2)
    for ax, m in zip(axes[0], ("isoscore_last", "clustered_cosine_last")):
        for j, arch in enumerate(archs):
            sel = [s for s in summary if s["arch"] == arch]
            ax.scatter([s[m] for s in sel], [s["nmse"] for s in sel], s=8, color=f"C{j}", label=arch)
        r, lo, hi = corr[m]
        ax.set_title(f"Spearman ρ = {r:.2f} [{lo:.2f}, {hi:.2f}] (95% bootstrap)")
        ax.set_xlabel(m.replace("_", " "))
        ax.set_ylabel("forecast NMSE")
        ax.set_yscale("log")
    axes[0, 0].legend(frameon=False)
    paths += plots.save(fig, out / "figures", "t6_isotropy_vs_nmse")
    return paths

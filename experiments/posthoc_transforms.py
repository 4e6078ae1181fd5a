"""Post-hoc isotropy transforms on a pre-trained model's hidden states: how every isotropy measure moves when
MiniLM's states on numeric strings are centred, stripped of their top principal components (all-but-the-top,
Mu & Viswanath 2018) or whitened (ZCA, PCA).

Each transform is fitted on the states of one half of the strings and applied to the states of the other half,
which are the ones measured: on its own fitting rows whitening is isotropic by construction, on held-out rows it
is a claim about the model. An isotropic Gaussian cloud of the same shape is measured beside them (the null,
`transform = "gaussian"`). Any loaded checkpoint works the same way from Python:
`transform_rows(*hidden_halves(pretrained.load(folder), texts_or_series, fit_rows, rows), layers, seed)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/<name>.py`: import this folder as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import warnings

import jax
import numpy as np

from experiments import runner
from experiments.minilm_isotropy import numeric_strings
from isojax import isotropy, plots, pretrained
from isojax.isotropy import transforms as T
from isojax.pretrained.chronos import MeanScaleUniformBins
from isojax.runs import results

# texts: numeric strings (~70 tokens each), half to fit on and half to measure; fit_rows / rows: the token states
# of each half used (fixed numbers: one compiled program serves every cloud); whitening needs fit_rows > d = 384
# (tiny is for tests only: there it is fitted on fewer states than dimensions). --quick took 60 s of CPU on
# 2 loaded cores, most of it loading MiniLM and compiling the measures once for the one cloud shape.
SIZES = {"tiny": dict(texts=8, fit_rows=256, rows=96, layers=(0, 6)),
         "quick": dict(texts=24, fit_rows=768, rows=256, layers=(0, 6)),
         "full": dict(texts=120, fit_rows=4000, rows=2000, layers=(0, 1, 2, 3, 4, 5, 6))}
ORDER = ("none", "centre", "abtt_1", "abtt_d/100", "zca", "pca", "gaussian")


def transforms_for(d: int) -> dict[str, T.Transform]:
    """The transforms compared, by name: all-but-the-top with one component and with Mu & Viswanath's d/100."""
    return {"centre": T.centre(), "abtt_1": T.all_but_the_top(1),
            "abtt_d/100": T.all_but_the_top(max(2, round(d / 100))), "zca": T.whiten("zca"), "pca": T.whiten("pca")}


def hidden_halves(model, inputs: list, fit_rows: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Token states of every layer for the first half of `inputs` (strings for a text model, series for a
    Chronos model), to fit on, and for the second half, to measure -> (fitting [L + 1, fit_rows, d],
    measured [L + 1, rows, d]): the first fit_rows / rows states of each."""
    model = pretrained.embed.as_model(model)
    embed = pretrained.embed_series if isinstance(model.tokenizer, MeanScaleUniformBins) else pretrained.embed_texts
    half = len(inputs) // 2
    out = []
    for part, count in ((inputs[:half], fit_rows), (inputs[half:], rows)):
        hidden = np.asarray(embed(model, part).hidden)
        if hidden.shape[1] < count:
            raise ValueError(f"{len(part)} inputs give {hidden.shape[1]} token states per layer, fewer than {count}")
        out.append(hidden[:, :count])
    return out[0], out[1]


def transform_rows(fitting: np.ndarray, measured: np.ndarray, layers, seed: int = 0) -> tuple[list[dict], list[str]]:
    """Every isotropy measure of each layer's measured states under every transform (fitted on `fitting`), and
    of an isotropic Gaussian cloud of their shape -> (rows, the distinct warnings the measures gave)."""
    key = jax.random.PRNGKey(seed)
    n, d = measured.shape[1:]
    rows = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for layer in layers:
            layer_key = jax.random.fold_in(key, layer)  # one key per layer: every transform is measured alike
            clouds = {"none": measured[layer]}
            for name, t in transforms_for(d).items():
                clouds[name] = np.asarray(t.transform(t.fit(fitting[layer]), measured[layer]))
            for name, cloud in clouds.items():
                rows.append({"layer": layer, "transform": name, "rows": n, **isotropy.measure(cloud, layer_key)})
        gaussian = np.asarray(jax.random.normal(jax.random.fold_in(key, 2**31 - 1), (n, d), measured.dtype))
        rows.append({"layer": -1, "transform": "gaussian", "rows": n, **isotropy.measure(gaussian, key)})
    said = sorted({str(w.message).split(": ", 1)[-1] for w in caught})
    return rows, said


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Table posthoc_transforms: every measure of MiniLM's held-out states on numeric strings, per layer and
    transform, and the isotropic Gaussian null of the same shape."""
    out, cfg = Path(out), SIZES[size]
    texts = numeric_strings(cfg["texts"])
    fitting, measured = hidden_halves("minilm", texts, cfg["fit_rows"], cfg["rows"])
    rows, said = transform_rows(fitting, measured, cfg["layers"], seed)
    return [results.save_table(rows, out / "results" / f"posthoc_transforms{runner.tag(size)}.csv",
                               {"name": "posthoc_transforms", "seed": seed, "model": "all-MiniLM-L6-v2", **cfg,
                                "fitted_on": "the other half of the strings", "warnings": said})]


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure posthoc_transforms: each measure against the transform, one line per layer, the null dashed."""
    rows = results.read_table(Path(out) / "results" / f"posthoc_transforms{runner.tag(size)}.csv")
    null = next(r for r in rows if r["transform"] == "gaussian")
    names = list(isotropy.MEASURES)
    fig, axes = plots.figure(2, 5, width=plots.DOUBLE, height=3.6)
    ticks = [t for t in ORDER if t != "gaussian"]
    layers = sorted({r["layer"] for r in rows if r["layer"] >= 0})
    for ax, name in zip(axes.ravel(), names, strict=True):
        for j, layer in enumerate(layers):
            by = {r["transform"]: r[name] for r in rows if r["layer"] == layer}
            ax.plot(range(len(ticks)), [by[t] for t in ticks], "o-", ms=2.5, lw=0.9, color=f"C{j}",
                    label=f"layer {layer}")
        ax.axhline(null[name], color="0.4", ls="--", lw=0.8, label="isotropic Gaussian")
        ax.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=6)
        ax.set_title(name, fontsize=7)
    axes[0, 0].legend(frameon=False, fontsize=5)
    fig.suptitle(f"all-MiniLM-L6-v2 on numeric strings: held-out states ({null['rows']} rows per cloud), "
                 "transforms fitted on other strings")
    fig.tight_layout()
    return plots.save(fig, Path(out) / "figures", "posthoc_transforms")


if __name__ == "__main__":
    raise SystemExit(runner.main(__file__))

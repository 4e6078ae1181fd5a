"""Per-layer isotropy of the pre-trained all-MiniLM-L6-v2 on serialized numeric strings of the real series,
next to the same measures on ordinary English sentences (statsmodels' dataset descriptions, offline)."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/<name>.py`: import this folder as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from experiments import runner
from isojax import isotropy, plots, pretrained
from isojax import transformer as tf
from isojax.data import real, tokens
from isojax.runs import results


def english_sentences(limit: int) -> list[str]:
    """Sentences from the descriptions that ship with statsmodels' datasets."""
    import statsmodels.api as sm
    texts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("sunspots", "co2", "nile", "elnino", "macrodata", "engel", "grunfeld", "longley", "star98",
                     "statecrime", "strikes", "fertility", "copper", "cpunish", "scotland", "spector", "stackloss"):
            mod = getattr(sm.datasets, name)
            texts += [getattr(mod, attr, "") for attr in ("DESCRLONG", "NOTE", "SOURCE")]
    sentences = [s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", " ".join(t.split()))
                 if len(s.split()) >= 6]
    return sentences[:limit]


def numeric_strings(limit: int, values_per_string: int = 24) -> list[str]:
    """LLMTime-style digit strings ("123,456,...") of windows of the real series."""
    tok = tokens.DigitTokenizer(precision=1, digits=3)
    out = []
    for name in real.SETS:
        for s in real.load(name):
            for start in range(0, len(s) - values_per_string, max(len(s) // 4, values_per_string)):
                out.append(tok.to_text(s[start:start + values_per_string]))
    return out[:limit]


def layer_measures(texts, params, config, key):
    """Per-layer measures of MiniLM's hidden states over every real token of `texts` (at most 2,000 tokens)."""
    ids, mask = pretrained.encode(texts, max_len=128)
    hidden = jax.jit(jax.vmap(lambda t, m: tf.forward(params, t, config, key_mask=m)[0]))(jnp.asarray(ids),
                                                                                           jnp.asarray(mask))
    hidden = np.moveaxis(np.asarray(hidden), 1, 0)[:, mask]  # [L+1, tokens, d]
    rows = []
    for layer, x in enumerate(hidden):
        x = jnp.asarray(x[:2000])
        rows.append({"layer": layer, "tokens": int(x.shape[0]),
                     **isotropy.layer_summary(x, jax.random.fold_in(key, layer)),
                     "cosine": float(isotropy.mean_cosine(x))})
    return rows


SIZES = {"tiny": dict(texts=8), "quick": dict(texts=48), "full": dict(texts=400)}


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Table minilm_isotropy: per-layer measures on numeric strings and on English sentences (the LM head's
    partition isotropy in the sidecar)."""
    out, limit = Path(out), SIZES[size]["texts"]
    params, config = pretrained.load_minilm()
    key = jax.random.PRNGKey(seed)
    rows = []
    for kind, texts in (("numeric strings", numeric_strings(limit)), ("English sentences", english_sentences(limit))):
        rows += [{"text": kind, **r} for r in layer_measures(texts, params, config, key)]
    head_iso = float(isotropy.partition_isotropy(params.lm_head))
    return [results.save_table(rows, out / "results" / "minilm_isotropy.csv",
                             {"name": "minilm_isotropy", "seed": seed, "head_partition_isotropy": head_iso})]


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure minilm_isotropy: IsoScore, clustered cosine and raw mean cosine by layer, numbers vs English."""
    table = Path(out) / "results" / "minilm_isotropy.csv"
    rows = results.read_table(table)
    head_iso = json.loads(table.with_name(table.name + ".json").read_text())["config"]["head_partition_isotropy"]
    fig, axes = plots.figure(1, 3, width=plots.DOUBLE, height=2.1)
    for ax, (col, label) in zip(axes[0], (("isoscore", "IsoScore"), ("clustered_cosine", "clustered cosine"),
                                          ("cosine", "mean cosine (raw)"))):
        for j, kind in enumerate(("numeric strings", "English sentences")):
            sel = [r for r in rows if r["text"] == kind]
            ax.plot([r["layer"] for r in sel], [r[col] for r in sel], "o-", color=f"C{j}", label=kind)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel(label)
    axes[0, 0].legend(frameon=False)
    fig.suptitle(f"all-MiniLM-L6-v2 hidden states (LM head I(Φ) = {head_iso:.2g})")
    return plots.save(fig, Path(out) / "figures", "minilm_isotropy")


if __name__ == "__main__":
    raise SystemExit(runner.main(__file__))

"""T1c: the spectrum of the Fisher matrix F(h) = Cov_{w~p}[φ_w] as the head grows anisotropic."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/<name>.py`: import this folder as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from experiments import runner
from isojax import distributions, head, plots
from isojax.runs import results, sweep

# one size: a few seconds at full resolution
SIZES = {size: dict(vocab=256, d=16, knobs=[0.0, 0.5, 1.0, 2.0, 4.0]) for size in runner.SIZE_NAMES}


def cell(key, family, vocab, d, knob):
    """Eigenvalues of F(h) (largest first) for a head with unit-norm rows from `family` at `knob`,
    averaged over 32 random contexts h ~ N(0, I)."""
    k1, k2 = jax.random.split(key)
    phi = distributions.sample(family, k1, vocab, d, knob)
    # unit-norm rows: a shared vector then leaves little variation in the other directions
    phi = 3.0 * phi / jnp.linalg.norm(phi, axis=1, keepdims=True)
    h = jax.random.normal(k2, (32, d))
    eig = jnp.linalg.eigvalsh(head.fisher(phi, h))[:, ::-1]
    return {"eig": eig.mean(axis=0)}


def _table(out: Path, size: str) -> Path:
    # quick and tiny share one table: the sizes are the same
    return Path(out) / "results" / f"fisher_spectrum{'' if size == 'full' else '_quick'}.csv"


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Sweep table fisher_spectrum: the mean spectrum of F for cone and spiked heads at every knob."""
    cfg = SIZES[size]
    sweep.run_sweep(cell, {"family": ["cone", "spiked"], "vocab": [cfg["vocab"]], "d": [cfg["d"]],
                           "knob": cfg["knobs"]},
                    _table(out, size), seed=seed, name="fisher_spectrum", per_device=5)
    return [_table(out, size)]


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure fisher_spectrum: eigenvalues of F by index, one line per knob, cone and spiked heads."""
    cfg = SIZES[size]
    d, vocab = cfg["d"], cfg["vocab"]
    rows = results.read_table(_table(out, size))
    fig, axes = plots.figure(1, 2, width=plots.SINGLE * 1.6, height=2.0)
    for ax, family in zip(axes[0], ("cone", "spiked")):
        for i, r in enumerate(r for r in rows if r["family"] == family):
            eig = np.array([float(r[f"eig_{j}"]) for j in range(d)])
            ax.semilogy(np.arange(1, d + 1), np.maximum(eig, 1e-12), "o-", color=f"C{i}", label=f"knob {r['knob']}")
        ax.set_xlabel("eigenvalue index")
        ax.set_ylabel("eigenvalue of F(h)")
        ax.set_title(f"{family} head, unit-norm rows ×3 (V = {vocab}, d = {d})")
    axes[0, 0].legend(frameon=False)
    return plots.save(fig, Path(out) / "figures", "fisher_spectrum")


if __name__ == "__main__":
    raise SystemExit(runner.main(__file__))

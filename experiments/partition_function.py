"""T4a and T4b: partition isotropy and the spread of log Z against anisotropy and V, with the closed form;
ε_Z and the R² of the affine fit of log p(·|c) on c against the anisotropy of the contexts."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/<name>.py`: import this folder as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments import runner
from isojax import distributions, head, isotropy, plots, theory
from isojax.runs import results, sweep

SIGMA2 = 0.25  # row variance of the Gaussian heads
D = 16  # dimension of the T4a heads
KNOBS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
FAMILIES = ["cone", "spiked", "power_law", "mixture", "subspace"]  # T4b context families
SIZES = {
    "tiny": dict(replicates=1, vocabs=[256, 1024, 4096, 16384]),
    "quick": dict(replicates=4, vocabs=[256, 1024, 4096, 16384]),
    "full": dict(replicates=16, vocabs=[256, 1024, 4096, 16384, 65536]),
}


def _head_params(kind: str, knob, d: int, key):
    """μ, Σ and the population directions E = ± eigenvectors of E[φφᵀ] = Σ + μμᵀ, known in closed form."""
    basis, _ = jnp.linalg.qr(jax.random.normal(key, (d, d)))
    u = basis[:, 0]
    eye = jnp.eye(d)
    population = jnp.concatenate([basis.T, -basis.T])
    if kind == "cone":  # common mean vector of norm knob
        return knob * u, SIGMA2 * eye, population
    return jnp.zeros(d), SIGMA2 * (eye + knob * jnp.outer(u, u)), population  # spiked covariance


def head_cell(key, kind, vocab, d, knob, replicate=0):
    """I(Φ) and the spread of log Z over E for a Gaussian head, measured and in closed form (T4a)."""
    k1, k2 = jax.random.split(key)
    mu, cov, population = _head_params(kind, knob, d, k1)
    phi = distributions.gaussian_rows(k2, vocab, mu, cov)
    log_z = isotropy.log_partition_along(phi, isotropy.principal_directions(phi))
    predicted = theory.gaussian_log_partition(mu, cov, population, vocab)
    return {"log_i": log_z.min() - log_z.max(), "log_i_closed": predicted.min() - predicted.max()}


def context_cell(key, family, vocab, d, knob, replicate=0):
    """T4b: ε_Z = max_c |log Z(c) - mean log Z| over contexts c from a family, and the R² of the best
    affine fit of log p(·|c) on c, for a fixed isotropic Gaussian head."""
    k1, k2 = jax.random.split(key)
    phi = distributions.gaussian_rows(k1, vocab, jnp.zeros(d), SIGMA2 * jnp.eye(d))
    c = 2.0 * distributions.sample(family, k2, 512, d, knob) / math.sqrt(d)
    log_z = head.log_partition(phi, c)
    lp = head.log_probs(phi, c)
    design = jnp.concatenate([c, jnp.ones((c.shape[0], 1))], axis=1)
    coef, *_ = jnp.linalg.lstsq(design, lp)
    resid = lp - design @ coef
    r2 = 1.0 - jnp.sum(resid**2) / jnp.sum((lp - lp.mean(axis=0)) ** 2)
    return {"eps_z": jnp.max(jnp.abs(log_z - log_z.mean())), "r2": r2}


def _tables(out: Path, size: str) -> dict[str, Path]:
    tag = runner.tag(size)
    return {name: Path(out) / "results" / f"{name}{tag}.csv" for name in ("partition_vs_knob", "partition_vs_vocab",
                                                                          "t4b_contexts")}


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Sweep tables partition_vs_knob (T4a against anisotropy), partition_vs_vocab (T4a against V) and
    t4b_contexts (ε_Z and the affine-fit R² against the contexts' anisotropy)."""
    cfg, tables = SIZES[size], _tables(out, size)
    reps = list(range(cfg["replicates"]))
    d = D  # the T4a heads' dimension
    sweep.run_sweep(head_cell, {"kind": ["cone", "spiked"], "vocab": [4096], "d": [d], "knob": KNOBS,
                                "replicate": reps},
                    tables["partition_vs_knob"], seed=seed, name="partition_vs_knob")
    sweep.run_sweep(head_cell, {"kind": ["cone"], "vocab": cfg["vocabs"], "d": [d], "knob": [0.0, 0.5],
                                "replicate": reps},
                    tables["partition_vs_vocab"], seed=seed, name="partition_vs_vocab")
    sweep.run_sweep(context_cell, {"family": FAMILIES, "vocab": [512], "d": [32], "knob": KNOBS, "replicate": reps},
                    tables["t4b_contexts"], seed=seed, name="t4b_contexts")
    return list(tables.values())


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure partition_function: I(Φ) against the closed form, the spread of log Z against V, and T4b."""
    cfg, tables = SIZES[size], _tables(out, size)
    by_knob = results.read_table(tables["partition_vs_knob"])
    by_vocab = results.read_table(tables["partition_vs_vocab"])
    t4b = results.read_table(tables["t4b_contexts"])
    d, knobs, vocabs, families = D, KNOBS, cfg["vocabs"], FAMILIES

    fig, axes = plots.figure(1, 3, width=plots.DOUBLE, height=2.3)
    ax = axes[0, 0]
    for kind, color in (("cone", "C0"), ("spiked", "C1")):
        sel = [r for r in by_knob if r["kind"] == kind]
        k = np.array([float(r["knob"]) for r in sel])
        emp = np.exp([float(r["log_i"]) for r in sel])
        cf = np.exp([float(r["log_i_closed"]) for r in sel])
        ax.errorbar(knobs, [emp[k == v].mean() for v in knobs], [emp[k == v].std() for v in knobs], fmt="o",
                    color=color, label=f"{kind}: measured")
        ax.plot(knobs, [cf[k == v].mean() for v in knobs], "-", color=color, label=f"{kind}: closed form")
    ax.set_xlabel("anisotropy: ‖μ‖ (cone) or spike s (spiked)")
    ax.set_ylabel("partition isotropy I(Φ)")
    ax.set_title(f"T4a, V = 4096, d = {d}, σ² = {SIGMA2}")
    ax.legend(frameon=False)

    ax = axes[0, 1]
    for knob, color in ((0.0, "C0"), (0.5, "C3")):
        sel = [r for r in by_vocab if float(r["knob"]) == knob]
        v = np.array([int(r["vocab"]) for r in sel])
        spread = -np.array([float(r["log_i"]) for r in sel])
        ax.errorbar(vocabs, [spread[v == x].mean() for x in vocabs], [spread[v == x].std() for x in vocabs],
                    fmt="o", color=color, label=f"measured, ‖μ‖ = {knob}")
        closed = 2 * knob  # μᵀc over ±μ/‖μ‖; the ½cᵀΣc term is the same in every direction
        r = np.sqrt(d / np.array(vocabs, float))
        # finite V: the sample eigenvectors' variances sit at the Marchenko–Pastur edges σ²(1 ± r)²
        ax.plot(vocabs, closed + 0.5 * SIGMA2 * ((1 + r) ** 2 - (1 - r) ** 2), "--", color=color,
                label="closed form + MP edge" if knob == 0.0 else None)
        ax.axhline(closed, color=color, lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("vocabulary size V")
    ax.set_ylabel("spread of log Z over E (nats)")
    ax.set_title("T4a: spread → closed form as V grows")
    ax.legend(frameon=False)

    ax = axes[0, 2]
    twin = ax.twinx()
    for i, family in enumerate(families):
        sel = [r for r in t4b if r["family"] == family]
        k = np.array([float(r["knob"]) for r in sel])
        eps = np.array([float(r["eps_z"]) for r in sel])
        r2 = np.array([float(r["r2"]) for r in sel])
        ax.plot(knobs, [eps[k == v].mean() for v in knobs], "o-", color=f"C{i}", label=family)
        twin.plot(knobs, [r2[k == v].mean() for v in knobs], "x:", color=f"C{i}")
    ax.set_xlabel("anisotropy knob of the contexts")
    ax.set_ylabel("ε_Z = max |log Z(c) − mean| (o, solid)")
    twin.set_ylabel("R² of affine fit of log p(·|c) on c (x, dotted)")
    twin.grid(False)
    ax.set_title("T4b: isotropic head (V = 512, d = 32)")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, [f"T4b contexts: {lab}" for lab in labels], loc="outside lower right", ncols=len(labels),
               frameon=False)
    return plots.save(fig, out / "figures", "partition_function")


if __name__ == "__main__":
    raise SystemExit(runner.main(__file__))

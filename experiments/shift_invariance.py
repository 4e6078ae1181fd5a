"""T1a and T1b: softmax under logit shifts (stable vs naive, float32 vs float64) and the invisible directions."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/<name>.py`: import this folder as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax.numpy as jnp
import numpy as np

from experiments import runner
from isojax import head, plots, theory
from isojax.runs import results

# one size: the figure is cheap at full resolution
SIZES = {size: dict(vocab=64, dim=8, shifts=29, norms=17) for size in runner.SIZE_NAMES}


def _np_log_softmax(z):
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Tables shift_invariance.csv (log-softmax error against a float64 reference for each shift) and
    shift_invariance_kl.csv (KL along null(Φ_c) and along random directions for each ‖λ‖)."""
    out, cfg = Path(out), SIZES[size]
    rng = np.random.default_rng(seed)
    vocab, dim = cfg["vocab"], cfg["dim"]
    shifts = np.logspace(-3, 4, cfg["shifts"])
    phi = jnp.asarray(rng.normal(size=(vocab, dim)), jnp.float32)
    h = jnp.asarray(rng.normal(size=dim) / np.sqrt(dim), jnp.float32)
    b = jnp.asarray(rng.uniform(-1000, 1000, size=vocab), jnp.float32)
    z64 = np.asarray(head.logits(phi, h, b), np.float64)
    ref = _np_log_softmax(z64)
    rows = []
    for a in shifts:
        stable = np.asarray(head.log_probs(phi, h, b + jnp.float32(a)), np.float64)
        naive = np.asarray(jnp.log(theory.naive_probs(phi, h, b + jnp.float32(a))), np.float64)
        f64 = _np_log_softmax(z64 + a)
        rows.append({"shift": float(a),
                     "stable_float32": float(np.max(np.abs(stable - ref))),
                     "naive_float32": (float(np.max(np.abs(naive - ref))) if np.all(np.isfinite(naive))
                                       else float("inf")),
                     "stable_float64": float(np.max(np.abs(f64 - ref))),
                     "eps32_scale": float(np.finfo(np.float32).eps * (a + np.abs(z64).max()))})
    tables = [results.save_table(rows, out / "results" / "shift_invariance.csv",
                                 {"name": "shift_invariance", "seed": seed})]

    # T1b: KL(p(h) ‖ p(h+λ)) along null(Φ_c) and along random directions, as |λ| grows
    low = rng.normal(size=(vocab, 3)) @ rng.normal(size=(3, dim))
    phi_b = jnp.asarray(low + 2.0 * rng.normal(size=dim), jnp.float32)  # Φ_c has rank 3 < d
    _, _, vt = np.linalg.svd(np.asarray(head.centred_head(phi_b), np.float64))
    null = vt[3:]
    lp = head.log_probs(phi_b, h)
    kl_rows = []
    for norm in np.logspace(-2, 2, cfg["norms"]):
        lam_null = jnp.asarray(norm * null[0], jnp.float32)
        rand = rng.normal(size=dim)
        lam_rand = jnp.asarray(norm * rand / np.linalg.norm(rand), jnp.float32)
        kl_rows.append({"norm": float(norm),
                        "kl_null": float(head.kl_divergence(lp, head.log_probs(phi_b, h + lam_null))),
                        "kl_random": float(head.kl_divergence(lp, head.log_probs(phi_b, h + lam_rand)))})
    tables.append(results.save_table(kl_rows, out / "results" / "shift_invariance_kl.csv",
                                   {"name": "shift_invariance_kl", "seed": seed}))
    return tables


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure shift_invariance: T1a error against the shift, T1b KL against ‖λ‖."""
    out = Path(out)
    rows = results.read_table(out / "results" / "shift_invariance.csv")
    kl = results.read_table(out / "results" / "shift_invariance_kl.csv")
    table = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    shifts = table["shift"]
    sizes = np.array([r["norm"] for r in kl])
    kl_null, kl_rand = [r["kl_null"] for r in kl], [r["kl_random"] for r in kl]

    fig, axes = plots.figure(1, 2, width=plots.DOUBLE * 0.8, height=2.3)
    ax = axes[0, 0]
    naive = np.where(np.isfinite(table["naive_float32"]), table["naive_float32"], np.nan)
    ax.loglog(shifts, np.maximum(table["stable_float32"], 1e-18), "o-", label="isojax log_softmax, float32")
    ax.loglog(shifts, np.maximum(table["stable_float64"], 1e-18), "s-",
              label="stable, float64 (numpy; 0 drawn at 1e-18)")
    ax.loglog(shifts, table["eps32_scale"], "k--", label="eps32·(|a| + |z|∞): rounding of z + a")
    finite = np.isfinite(naive)
    ax.loglog(shifts[finite], np.maximum(naive[finite], 1e-18), "x-", label="naive exp/Σexp, float32")
    ax.axvline(shifts[~finite][0] if (~finite).any() else shifts[-1], color="C3", lw=0.6, ls=":")
    if not finite.all():
        ax.text(0.98, 0.02, f"naive: NaN/inf at {int((~finite).sum())} of {len(shifts)} shifts\n(exp overflows)",
                transform=ax.transAxes, fontsize=6, color="C2", ha="right", va="bottom")
    ax.set_xlabel("shift a added to every logit")
    ax.set_ylabel("max |log p(z + a1) − log p(z)| (nats)")
    ax.set_title("T1a: shift invariance, |z| ≤ 1000, V = 64")
    ax.legend(frameon=False, loc="center left")
    ax = axes[0, 1]
    ax.loglog(sizes, np.maximum(kl_rand, 1e-20), "o-", label="λ random direction")
    ax.loglog(sizes, np.maximum(kl_null, 1e-20), "s-", label="λ ∈ null(Φ_c)")
    ax.set_xlabel("‖λ‖")
    ax.set_ylabel("KL(p(·|h) ‖ p(·|h + λ))")
    ax.set_title("T1b: next-token training cannot see null(Φ_c)")
    ax.legend(frameon=False)
    return plots.save(fig, out / "figures", "shift_invariance")


if __name__ == "__main__":
    raise SystemExit(runner.main(__file__))

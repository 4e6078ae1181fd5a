"""T2 and T3: closed-form gradients against autodiff over random instances, the key-bias gradient, and the
drift of the mean output embedding under SGD and Adam."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/<name>.py`: import this folder as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np
import optax

from experiments import runner
from isojax import attention as att
from isojax import plots, theory
from isojax.runs import results

# instances: random attention / head instances; configs: how many of theory.T3_CONFIGS; steps: SGD/Adam steps
SIZES = {
    "tiny": dict(instances=16, configs=2, steps=50),
    "quick": dict(instances=128, configs=2, steps=500),
    "full": dict(instances=2048, configs=len(theory.T3_CONFIGS), steps=5000),
}


def _attention_instance(cfg: dict):
    def one(k):
        ks = jax.random.split(k, 4)
        params = att.init_attention(ks[0], cfg["d_model"], cfg["heads"], cfg["d_k"], bias=True)
        x = jax.random.normal(ks[1], (cfg["length"], cfg["d_model"]))
        g_y = jax.random.normal(ks[2], (cfg["length"], cfg["d_model"]))
        return theory.t3_attention(params, x, g_y, cfg["causal"], None)
    return one


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Tables gradient_structure.csv (per instance: T3a and T2b closed form vs autodiff, ∂ℓ/∂b_K, all in units
    of eps) and mean_embedding_drift.csv (‖φ̄_t − φ̄_0‖∞ at every step, mean of 8 runs, SGD and Adam)."""
    out, cfg = Path(out), SIZES[size]
    n = cfg["instances"]
    key = jax.random.PRNGKey(seed)
    t3 = {name: np.concatenate([np.asarray(jax.jit(jax.vmap(_attention_instance(c)))(
        jax.random.split(jax.random.fold_in(key, i), n // 2))[name])
        for i, c in enumerate(theory.T3_CONFIGS[:cfg["configs"]])])
        for name in ("t3a", "t3b_auto")}
    head_draw = theory.head_instance(64, 16)
    t2 = jax.jit(jax.vmap(lambda k: theory.t2_head_gradients(*head_draw(k))))(jax.random.split(key, n))
    steps = cfg["steps"]
    keys = jax.random.split(jax.random.fold_in(key, 99), 8)
    traj = {name: np.asarray(jax.jit(jax.vmap(
                lambda k, o=opt: theory.mean_embedding_drift(k, o, steps, trajectory=True)["trajectory"]))(keys))
            for name, opt in (("SGD", optax.sgd(0.1)), ("Adam", optax.adam(0.01)))}
    rows = [{"instance": i, "t3a_rel_over_eps": float(a), "t3b_bk_grad_over_eps": float(b), "t2b_over_eps": float(c)}
            for i, (a, b, c) in enumerate(zip(t3["t3a"], t3["t3b_auto"], np.asarray(t2["t2b_closed"])))]
    return [
        results.save_table(rows, out / "results" / "gradient_structure.csv",
                           {"name": "gradient_structure", "seed": seed}),
        results.save_table([{"step": s + 1, **{k: float(v.mean(0)[s]) for k, v in traj.items()}} for s in range(steps)],
                         out / "results" / "mean_embedding_drift.csv", {"name": "mean_embedding_drift", "seed": seed}),
    ]


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure gradient_structure: histograms of the closed-form errors and of ∂ℓ/∂b_K, and φ̄'s drift."""
    out = Path(out)
    rows = results.read_table(out / "results" / "gradient_structure.csv")
    drift = results.read_table(out / "results" / "mean_embedding_drift.csv")
    t3a = np.array([r["t3a_rel_over_eps"] for r in rows])
    t3b = np.array([r["t3b_bk_grad_over_eps"] for r in rows])
    t2b = np.array([r["t2b_over_eps"] for r in rows])
    fig, axes = plots.figure(1, 3, width=plots.DOUBLE, height=2.2)
    ax = axes[0, 0]
    bins = np.logspace(-2, 4, 40)
    ax.hist(np.maximum(t3a, 1e-2), bins=bins, alpha=0.7, label="T3a attention VJP")
    ax.hist(np.maximum(t2b, 1e-2), bins=bins, alpha=0.7, label="T2b ∇_h ℓ")
    ax.set_xscale("log")
    ax.set_xlabel("closed form vs autodiff, relative error / eps")
    ax.set_ylabel("instances")
    ax.set_title("T2b, T3a: closed form = autodiff")
    ax.legend(frameon=False)
    ax = axes[0, 1]
    ax.hist(np.maximum(t3b, 1e-3), bins=np.logspace(-3, 3, 40), color="C2")
    ax.set_xscale("log")
    ax.set_xlabel("‖∂ℓ/∂b_K‖ / ‖∇ℓ‖ in units of eps")
    ax.set_ylabel("instances")
    ax.set_title("T3b: ∂ℓ/∂b_K is rounding noise")
    ax = axes[0, 2]
    steps = np.array([r["step"] for r in drift])
    for name in ("SGD", "Adam"):
        ax.semilogy(steps, np.maximum([r[name] for r in drift], 1e-20), label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("‖φ̄_t − φ̄_0‖∞")
    ax.set_title("T2c: SGD conserves φ̄, Adam moves it")
    ax.legend(frameon=False)
    return plots.save(fig, out / "figures", "gradient_structure")


if __name__ == "__main__":
    raise SystemExit(runner.main(__file__))

"""T5: on a teacher with a known next-token law, the squared error of the LM's conditional-mean forecast
against its excess cross-entropy ε, with the 2B²ε bound, across checkpoints and teacher isotropy (T5a);
and a linear probe on the hidden state h feeding the head against the LM's own forecast, with the isotropy
(IsoScore) of h itself, at every checkpoint (T5b)."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/<name>.py`: import this folder as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from experiments import runner
from isojax import head, isotropy, plots, stats
from isojax import transformer as tf
from isojax.data import teacher as T
from isojax.models import training
from isojax.runs import keys, results

TEACHERS = [("gaussian", 0.0, "isotropic"), ("cone", 1.0, "cone"), ("spiked", 3.0, "spiked")]


def _positions(t: T.Teacher, seqs):
    """Contexts s (last `order` tokens) for every position t ≥ order: [n, T - order, order]."""
    return jnp.stack([seqs[:, i - t.order:i] for i in range(t.order, seqs.shape[1])], 1)


def evaluate(params, config, t: T.Teacher, seqs):
    """ε, the MSE of ŷ against y(s) = Σ v p*(·|s), and the hidden states feeding the head at each position."""
    _, out = jax.vmap(lambda s: tf.encode(params, s, config))(seqs)  # what the head reads: [n, T, d]
    logits = head.logits(params.lm_head, out, params.head_bias)
    lp_f = jax.nn.log_softmax(logits[:, t.order - 1:-1, : t.vocab])  # predicts token i from s_<i, i ≥ order
    lp_star = T.log_p_star(t, _positions(t, seqs))
    eps = jnp.mean(head.kl_divergence(lp_star, lp_f))
    y_hat = head.expected_value(lp_f, t.values)
    y = head.expected_value(lp_star, t.values)
    h_last = out[:, t.order - 1:-1]
    return float(eps), float(jnp.mean((y_hat - y) ** 2)), np.asarray(h_last).reshape(-1, h_last.shape[-1]), \
        np.asarray(y).ravel(), np.asarray(y_hat).ravel()


SIZES = {
    "tiny": dict(steps=30, sequences=256),
    "quick": dict(steps=300, sequences=2048),
    "full": dict(steps=2000, sequences=8192),
}
VOCAB = 24


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Tables guarantee.csv (ε, the forecast MSE, the 2B²ε bound and IsoScore of h at every checkpoint of LMs
    trained on three teachers), guarantee_probe.csv (T5b at every checkpoint: a ridge probe on h against the
    LM's own forecast, with IsoScore of h) and guarantee_probe_spearman.csv (IsoScore of h against the probe's
    excess, pooled, within teacher and within checkpoint)."""
    out, cfg = Path(out), SIZES[size]
    vocab, steps = VOCAB, cfg["steps"]
    checkpoints = tuple(sorted(c for c in {5, 10, 20, 40, 80, 160, steps} | set(range(0, steps + 1, max(steps // 4, 1)))
                               if 0 < c <= steps))
    config = tf.Config(vocab=vocab, d_model=48, heads=4, layers=2, mlp=96, max_len=32)
    rows, probes, teachers, tests, runs = [], [], [], [], []
    for family, knob, label in TEACHERS:
        key = keys.named_key(jax.random.PRNGKey(seed), f"teacher|{label}")
        t = T.make_teacher(key, vocab=vocab, dim=16, order=2, family=family, knob=knob)
        teachers.append(t)
        runs.append(training.Run(jax.random.fold_in(key, 3), np.asarray(T.sample_sequences(jax.random.fold_in(key, 1),
                                                                                             t, cfg["sequences"], 32))))
        tests.append(T.sample_sequences(jax.random.fold_in(key, 2), t, 128, 32))
    # the three teachers' LMs share their architecture and schedule: one ensemble
    trained = training.train_many(runs, config, training.TrainConfig(steps=steps, lr=3e-3), checkpoints=checkpoints,
                                  progress=False)
    for (_, _, label), t, test, result in zip(TEACHERS, teachers, tests, trained):
        for step, params in sorted(result.saved.items()):
            eps, mse, h, y, y_hat = evaluate(params, config, t, test)
            iso_h = float(isotropy.isoscore(jnp.asarray(h)))
            rows.append({"teacher": label, "step": step, "excess_ce": eps, "mse": mse, "bound": 2 * eps,
                         "ratio": mse / (2 * eps), "isoscore_h": iso_h})
            probes.append({"teacher": label, "step": step, "isoscore_h": iso_h, **probe(h, y, y_hat),
                           "t5a_bound": 2 * eps})
    spearman = probe_spearman(probes, seed)
    folder = out / "results"
    return [results.save_table(rows, folder / "guarantee.csv", {"name": "guarantee", "seed": seed, "steps": steps}),
            results.save_table(probes, folder / "guarantee_probe.csv", {"name": "guarantee_probe", "seed": seed}),
            results.save_table(spearman, folder / "guarantee_probe_spearman.csv",
                             {"name": "guarantee_probe_spearman", "seed": seed})]


def probe(h: np.ndarray, y: np.ndarray, y_hat: np.ndarray) -> dict:
    """T5b: a ridge probe from h [n, d] (plus a constant) to y(s) [n], fit on the first half of the contexts and
    tested on the rest, against the LM's own ŷ [n] on the same half: their test MSEs, the gap probe − LM (the
    error T5b says a linear readout adds, isotropy-dependent) and Var y."""
    half = len(y) // 2
    design = np.concatenate([h, np.ones((len(h), 1))], 1)
    coef = np.linalg.solve(design[:half].T @ design[:half] + 1e-3 * np.eye(design.shape[1]), design[:half].T @ y[:half])
    probe_mse = float(np.mean((design[half:] @ coef - y[half:]) ** 2))
    lm_mse = float(np.mean((y_hat[half:] - y[half:]) ** 2))
    var_y = float(np.var(y[half:]))
    return {"probe_mse": probe_mse, "lm_mse": lm_mse, "gap": probe_mse - lm_mse,
            "gap_over_var_y": (probe_mse - lm_mse) / var_y, "probe_over_lm": probe_mse / lm_mse, "var_y": var_y}


def probe_spearman(probes: list[dict], seed: int = 0) -> list[dict]:
    """Spearman ρ of IsoScore(h) against the probe's excess over the LM (gap / Var y), pooled over every
    teacher and checkpoint, within a teacher (over its checkpoints: training length moves both) and within a
    checkpoint (across the teachers at one training length). T5b's isotropy dependence predicts ρ < 0."""
    rows = []
    if len(probes) >= 3:
        iso, gap = [p["isoscore_h"] for p in probes], [p["gap_over_var_y"] for p in probes]
        r, lo, hi = stats.spearman_bootstrap(iso, gap, seed)
        rows.append({"scope": "pooled over teachers and checkpoints", "spearman_rho": r, "ci_low": lo, "ci_high": hi,
                     "groups": 1, "points": len(probes), "supports_if": "rho < 0"})
    for group, scope in (("teacher", "within teacher, over checkpoints"), ("step", "within checkpoint, over teachers")):
        r, lo, hi, n = stats.within_group_spearman(probes, "isoscore_h", "gap_over_var_y", group, seed)
        rows.append({"scope": scope, "spearman_rho": r, "ci_low": lo, "ci_high": hi, "groups": n, "points": len(probes),
                     "supports_if": "rho < 0"})
    return rows


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure guarantee: error against ε under the bound (T5a); the probe and the LM over training, and the
    probe's excess against IsoScore of h across teachers and checkpoints (T5b)."""
    out, vocab = Path(out), VOCAB
    rows = results.read_table(out / "results" / "guarantee.csv")
    probes = results.read_table(out / "results" / "guarantee_probe.csv")
    spearman = results.read_table(out / "results" / "guarantee_probe_spearman.csv")
    fig, axes = plots.figure(1, 3, width=plots.DOUBLE, height=2.8)
    ax = axes[0, 0]
    for i, (_, _, label) in enumerate(TEACHERS):
        sel = [r for r in rows if r["teacher"] == label]
        ax.loglog([r["excess_ce"] for r in sel], [r["mse"] for r in sel], "o-", color=f"C{i}", label=f"{label} teacher")
    grid = np.logspace(np.log10(min(r["excess_ce"] for r in rows)) - 0.3,
                       np.log10(max(r["excess_ce"] for r in rows)) + 0.3)
    ax.loglog(grid, 2 * grid, "k--", label="T5a bound 2B²ε (B = 1)")
    ax.set_xlabel("excess cross-entropy ε (nats), checkpoints of training")
    ax.set_ylabel("E (ŷ − y)², conditional-mean forecast")
    ax.set_title(f"T5a: forecast error under the bound\n(V = {vocab}, values in [−1, 1])")
    ax.legend(frameon=False)
    ax = axes[0, 1]
    for i, (_, _, label) in enumerate(TEACHERS):
        sel = [p for p in probes if p["teacher"] == label]
        ax.loglog([p["step"] for p in sel], [p["lm_mse"] for p in sel], "o-", color=f"C{i}", markersize=3,
                  label=f"{label}: LM ŷ")
        ax.loglog([p["step"] for p in sel], [p["probe_mse"] for p in sel], "s--", color=f"C{i}", markersize=3,
                  label=f"{label}: probe on h")
    ax.set_xlabel("training step (checkpoint)")
    ax.set_ylabel("test MSE against y(s)")
    ax.set_title("T5b: linear readout of h\nvs the LM's forecast")
    ax.legend(frameon=False, fontsize=5)
    ax = axes[0, 2]
    for i, (_, _, label) in enumerate(TEACHERS):
        sel = [p for p in probes if p["teacher"] == label]
        ax.plot([p["isoscore_h"] for p in sel], [p["gap_over_var_y"] for p in sel], "o-", color=f"C{i}", markersize=3,
                label=f"{label} teacher")
        last = sel[-1]
        ax.annotate(f"step {last['step']}", (last["isoscore_h"], last["gap_over_var_y"]), fontsize=5)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("IsoScore of h (the head's input)")
    ax.set_ylabel("(probe MSE − LM MSE) / Var y")
    title = "T5b: does the probe's excess fall with isotropy? (supports if ρ < 0)"
    for r in spearman:
        title += f"\n{r['scope']}: ρ = {r['spearman_rho']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
    ax.set_title(title, fontsize=5)
    ax.legend(frameon=False, fontsize=5)
    return plots.save(fig, out / "figures", "guarantee")


if __name__ == "__main__":
    raise SystemExit(runner.main(__file__))

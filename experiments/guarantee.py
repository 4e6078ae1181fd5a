"""T5: on a teacher with a known next-token law, the squared error of the LM's conditional-mean forecast
against its excess cross-entropy ε, with the 2B²ε bound, across checkpoints and teacher isotropy (T5a);
and a linear probe on the hidden state against the LM's own forecast (T5b)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from isojax import experiment, head, plots, sweep, train
from isojax import transformer as tf
from isojax.data import teacher as T

TEACHERS = [("gaussian", 0.0, "isotropic"), ("cone", 1.0, "cone"), ("spiked", 3.0, "spiked")]


def _positions(t: T.Teacher, seqs):
    """Contexts s (last `order` tokens) for every position t ≥ order: [n, T - order, order]."""
    return jnp.stack([seqs[:, i - t.order:i] for i in range(t.order, seqs.shape[1])], 1)


def evaluate(params, config, t: T.Teacher, seqs):
    """ε, the MSE of ŷ against y(s) = Σ v p*(·|s), and the hidden states feeding the head at each position."""
    hidden, logits = jax.vmap(lambda s: tf.forward(params, s, config))(seqs)
    lp_f = jax.nn.log_softmax(logits[:, t.order - 1:-1, : t.vocab])  # predicts token i from s_<i, i ≥ order
    lp_star = T.log_p_star(t, _positions(t, seqs))
    eps = jnp.mean(head.kl_divergence(lp_star, lp_f))
    y_hat = head.expected_value(lp_f, t.values)
    y = head.expected_value(lp_star, t.values)
    h_last = tf.layer_norm(params.ln_final, hidden[:, -1], config.ln_eps)[:, t.order - 1:-1]
    return float(eps), float(jnp.mean((y_hat - y) ** 2)), np.asarray(h_last).reshape(-1, h_last.shape[-1]), \
        np.asarray(y).ravel(), np.asarray(y_hat).ravel()


SIZES = {
    "tiny": dict(steps=30, sequences=256),
    "quick": dict(steps=300, sequences=2048),
    "full": dict(steps=2000, sequences=8192),
}
VOCAB = 24


def compute(out: Path, size: str = "quick", seed: int = 0) -> list[Path]:
    """Tables guarantee.csv (ε, the forecast MSE and the 2B²ε bound at every checkpoint of LMs trained on three
    teachers) and guarantee_probe.csv (T5b: a ridge probe on h against the LM's own forecast)."""
    out, cfg = Path(out), SIZES[size]
    vocab, steps = VOCAB, cfg["steps"]
    checkpoints = tuple(sorted({5, 10, 20, 40, 80, 160, steps} | set(range(0, steps + 1, max(steps // 4, 1))) - {0}))
    config = tf.Config(vocab=vocab, d_model=48, heads=4, layers=2, mlp=96, max_len=32)
    rows, probes = [], []
    for i, (family, knob, label) in enumerate(TEACHERS):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), i)
        t = T.make_teacher(key, vocab=vocab, dim=16, order=2, family=family, knob=knob)
        seqs = T.sample_sequences(jax.random.fold_in(key, 1), t, cfg["sequences"], 32)
        test = T.sample_sequences(jax.random.fold_in(key, 2), t, 128, 32)
        _, _, saved = train.train(jax.random.fold_in(key, 3), config, seqs, train.TrainConfig(steps=steps, lr=3e-3),
                                  progress=False, checkpoints=checkpoints)
        for step, params in sorted(saved.items()):
            eps, mse, h, y, y_hat = evaluate(params, config, t, test)
            rows.append({"teacher": label, "step": step, "excess_ce": eps, "mse": mse, "bound": 2 * eps,
                         "ratio": mse / (2 * eps)})
        # T5b: linear (ridge) probe from the head's input h to y(s), fit on half the contexts, tested on the rest
        half = len(y) // 2
        design = np.concatenate([h, np.ones((len(h), 1))], 1)
        coef = np.linalg.solve(design[:half].T @ design[:half] + 1e-3 * np.eye(design.shape[1]), design[:half].T @ y[:half])
        probe_mse = float(np.mean((design[half:] @ coef - y[half:]) ** 2))
        probes.append({"teacher": label, "probe_mse": probe_mse, "lm_mse": float(np.mean((y_hat[half:] - y[half:]) ** 2)),
                       "t5a_bound": 2 * rows[-1]["excess_ce"], "var_y": float(np.var(y[half:]))})
    return [sweep.save_table(rows, out / "results" / "guarantee.csv", {"name": "guarantee", "seed": seed, "steps": steps}),
            sweep.save_table(probes, out / "results" / "guarantee_probe.csv", {"name": "guarantee_probe", "seed": seed})]


@plots.styled
def plot(out: Path, size: str = "quick") -> list[Path]:
    """Figure guarantee: error against ε under the bound (T5a), and the probe against the LM (T5b)."""
    out, vocab = Path(out), VOCAB
    rows = experiment.read_rows(out / "results" / "guarantee.csv")
    probes = experiment.read_rows(out / "results" / "guarantee_probe.csv")
    fig, axes = plots.figure(1, 2, width=plots.DOUBLE * 0.8, height=2.4)
    ax = axes[0, 0]
    for i, (_, _, label) in enumerate(TEACHERS):
        sel = [r for r in rows if r["teacher"] == label]
        ax.loglog([r["excess_ce"] for r in sel], [r["mse"] for r in sel], "o-", color=f"C{i}", label=f"{label} teacher")
    grid = np.logspace(np.log10(min(r["excess_ce"] for r in rows)) - 0.3, np.log10(max(r["excess_ce"] for r in rows)) + 0.3)
    ax.loglog(grid, 2 * grid, "k--", label="T5a bound 2B²ε (B = 1)")
    ax.set_xlabel("excess cross-entropy ε (nats), checkpoints of training")
    ax.set_ylabel("E (ŷ − y)², conditional-mean forecast")
    ax.set_title(f"T5a: forecast error under the bound (V = {vocab}, values in [−1, 1])")
    ax.legend(frameon=False)
    ax = axes[0, 1]
    x = np.arange(len(probes))
    for j, (key_, name) in enumerate((("lm_mse", "LM ŷ"), ("probe_mse", "linear probe on h"), ("t5a_bound", "2B²ε"), ("var_y", "Var y (predict the mean)"))):
        ax.bar(x + 0.2 * j - 0.3, [p[key_] for p in probes], 0.2, label=name)
    ax.set_xticks(x, [p["teacher"] for p in probes])
    ax.set_yscale("log")
    ax.set_ylabel("test MSE against y(s)")
    ax.set_title("T5b: linear readout of h vs the LM's forecast")
    ax.legend(frameon=False)
    return plots.save(fig, out / "figures", "guarantee")


if __name__ == "__main__":
    raise SystemExit(experiment.main(__file__))

"""T2: closed-form gradients of the softmax head against autodiff (T2a, T2b, T2c), and the conservation of the
mean output embedding and of Σb under SGD, step by step, with Adam as the contrast (T2c)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from isojax import _validate as V
from isojax import head
from isojax.theory.harness import CheckRow, Timings, anisotropic_head, eps, normal, rel, row, run_instances, run_program

__all__ = ["t2_head_gradients", "head_instance", "mean_embedding_drift", "sgd_conservation", "check_t2ab",
           "check_t2c_training"]


def t2_head_gradients(phi: ArrayLike, h: ArrayLike, y: ArrayLike, b: ArrayLike, shift: ArrayLike, *,
                      grad_logits: Callable = head.grad_logits, grad_h: Callable = head.grad_h,
                      grad_phi: Callable = head.grad_phi) -> dict[str, jax.Array]:
    """T2a–c for one instance: closed-form gradients of ℓ = -log p(y|h) against autodiff, their sums, and
    ∇_h ℓ's independence of the mean output embedding (Φ -> Φ + 1 shiftᵀ). Relative errors over eps."""
    loss = lambda phi_, h_, b_: head.cross_entropy(phi_, h_, y, b_)
    g_phi, g_h, g_b = jax.grad(loss, argnums=(0, 1, 2))(phi, h, b)
    g_h_shifted = jax.grad(loss, argnums=1)(phi + shift, h, b)
    g_z = grad_logits(phi, h, y, b)
    gp = grad_phi(phi, h, y, b)
    # Σ_w g_w is 0 only up to the rounding of Σ_w p_w = 1, so sums and anything multiplied by them are
    # measured in units of eps·(‖g‖₁ + 1) times the size of what multiplies them.
    unit = eps() * (jnp.abs(g_z).sum() + 1.0)
    row_norm = lambda m: jnp.max(jnp.linalg.norm(m, axis=1))
    return {
        "t2a_closed": rel(g_z, g_b) / eps(),  # z = Φh + b, so ∇_b ℓ = ∇_z ℓ
        "t2a_sum": jnp.abs(g_z.sum()) / unit,
        "t2b_closed": jnp.linalg.norm(grad_h(phi, h, y, b) - g_h) / (unit * row_norm(phi)),
        "t2b_uncentred": jnp.linalg.norm(phi.T @ g_z - g_h) / (unit * row_norm(phi)),
        "t2b_shift": jnp.linalg.norm(grad_h(phi + shift, h, y, b) - grad_h(phi, h, y, b))
        / (unit * row_norm(phi + shift)),
        "t2b_shift_auto": jnp.linalg.norm(g_h_shifted - g_h) / (unit * row_norm(phi + shift)),
        "t2c_closed": rel(gp, g_phi) / eps(),
        "t2c_rows": jnp.linalg.norm(gp.sum(axis=0)) / (unit * jnp.linalg.norm(h)),
        "t2c_bias": jnp.abs(g_b.sum()) / unit,
    }


def head_instance(vocab: int, dim: int) -> Callable[[jax.Array], tuple[jax.Array, ...]]:
    """A draw of one T2 instance: key -> (phi [V, d], h [d], y [], b [V], shift [d]) on an anisotropic head."""
    def draw(k):
        ks = jax.random.split(k, 5)
        phi = anisotropic_head(ks[0], vocab, dim)
        shift = 5.0 * normal(ks[4], (dim,))
        return (phi, 2.0 * normal(ks[1], (dim,)), jax.random.randint(ks[2], (), 0, vocab),
                normal(ks[3], (vocab,)), shift)
    return draw


def _make_t2ab(vocab, dim, **impl):
    draw = head_instance(vocab, dim)
    return lambda k: t2_head_gradients(*draw(k), **impl)


T2_CONFIGS = [dict(vocab=2, dim=3), dict(vocab=32, dim=8), dict(vocab=512, dim=32)]


def check_t2ab(key: jax.Array, n: int = 1000, timings: Timings | None = None, configs: list[dict] | None = None,
               **impl) -> list[CheckRow]:
    """T2a, T2b and the gradient identities of T2c on random anisotropic heads."""
    res = run_instances("T2ab", _make_t2ab, key, n, configs or T2_CONFIGS, timings or Timings(), impl)
    ue, us = "rel/eps", "eps·(‖g‖₁+1)·size"
    return [
        row("T2a", "1ᵀ∇_z ℓ = 0 (closed form)", us, res["t2a_sum"], 8.0),
        row("T2a", "∇_z ℓ = p - e_y vs autodiff", ue, res["t2a_closed"], 8.0),
        row("T2b", "grad_h unchanged by Φ -> Φ + 1cᵀ", us, res["t2b_shift"], 16.0),
        row("T2b", "∇_h ℓ = Φ_cᵀ(p - e_y) vs autodiff", us, res["t2b_closed"], 16.0),
        row("T2c", "Σ_w ∇_φw ℓ = 0 (closed form)", us, res["t2c_rows"], 8.0),
        row("T2c", "∇_Φ ℓ = (p - e_y)hᵀ vs autodiff", ue, res["t2c_closed"], 8.0),
    ]


def _training_data(key, vocab, dim, examples):
    ks = jax.random.split(key, 4)
    teacher = normal(ks[0], (vocab, dim))
    xs = normal(ks[1], (examples, dim))
    ys = jax.random.categorical(ks[2], xs @ teacher.T)
    params = {"phi": anisotropic_head(ks[3], vocab, dim), "b": jnp.zeros((vocab,), V.float_dtype())}
    return xs, ys, params


def _batch_loss(params: dict, xs: jax.Array, ys: jax.Array) -> jax.Array:
    """Mean cross-entropy of the head (Φ, b) in params on a batch: the loss both training runs descend."""
    return jnp.mean(head.cross_entropy(params["phi"], xs, ys, params["b"]))


def mean_embedding_drift(key: jax.Array, optimizer: optax.GradientTransformation, steps: int = 1000, vocab: int = 16,
                         dim: int = 8, examples: int = 64, batch: int = 16,
                         trajectory: bool = False) -> dict[str, jax.Array]:
    """Train a softmax head (Φ, b) by cross-entropy on random data; return how far φ̄ and Σb moved relative to
    how far the rows and biases themselves moved (T2c: exactly 0 under SGD, up to rounding). With
    trajectory=True, also the drift ‖φ̄_t - φ̄_0‖_∞ after every step ([steps])."""
    xs, ys, params = _training_data(key, vocab, dim, examples)
    mean0 = params["phi"].mean(0)

    def step(carry, i):
        p, state = carry
        idx = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, examples)
        updates, state = optimizer.update(jax.grad(_batch_loss)(p, xs[idx], ys[idx]), state, p)
        p = optax.apply_updates(p, updates)
        return (p, state), jnp.max(jnp.abs(p["phi"].mean(0) - mean0))

    (final, _), drift = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(steps))
    moved_rows = jnp.max(jnp.abs(final["phi"] - params["phi"]))
    moved_bias = jnp.max(jnp.abs(final["b"] - params["b"]))
    out = {
        "mean": drift[-1] / moved_rows,
        "bias_sum": jnp.abs(final["b"].sum() - params["b"].sum()) / moved_bias,
    }
    if trajectory:
        out["trajectory"] = drift
    return out


def sgd_conservation(key: jax.Array, optimizer: optax.GradientTransformation, lr: float, steps: int = 1000,
                     vocab: int = 16, dim: int = 8, examples: int = 64, batch: int = 16) -> dict[str, jax.Array]:
    """T2c step by step, on the same data as `mean_embedding_drift`. After every step t: the drift of φ̄ in
    units of eps·|Φ_0|∞·sqrt(t+1) (a rounding walk), of Σb in units of eps·Σ|b_t|·sqrt(t+1), and the distance
    of the optimizer's step from the closed-form SGD step Φ - lr·mean_i (p_i - e_yi)h_iᵀ, b - lr·mean_i
    (p_i - e_yi) (head.grad_phi / head.grad_logits) in units of eps·(|Φ_t|∞ + lr|g|∞). Each is the worst
    over the steps; "final" is φ̄'s drift over the rows' motion after the last step (as mean_embedding_drift)."""
    xs, ys, params = _training_data(key, vocab, dim, examples)
    e = eps()
    mean0, bsum0 = params["phi"].mean(0), params["b"].sum()
    scale0 = jnp.max(jnp.abs(params["phi"]))
    tiny = jnp.finfo(V.float_dtype()).tiny

    def step(carry, i):
        p, state = carry
        idx = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, examples)
        updates, state = optimizer.update(jax.grad(_batch_loss)(p, xs[idx], ys[idx]), state, p)
        new = optax.apply_updates(p, updates)
        g_phi = jnp.mean(head.grad_phi(p["phi"], xs[idx], ys[idx], p["b"]), axis=0)
        g_b = jnp.mean(head.grad_logits(p["phi"], xs[idx], ys[idx], p["b"]), axis=0)
        walk = jnp.sqrt(i + 1.0)
        out = {
            "drift": jnp.max(jnp.abs(new["phi"].mean(0) - mean0)) / (e * scale0 * walk),
            "bias": jnp.abs(new["b"].sum() - bsum0) / (e * (jnp.abs(new["b"]).sum() + tiny) * walk),
            "step": jnp.maximum(
                jnp.max(jnp.abs(new["phi"] - (p["phi"] - lr * g_phi)))
                / (e * (jnp.max(jnp.abs(p["phi"])) + lr * jnp.max(jnp.abs(g_phi)))),
                jnp.max(jnp.abs(new["b"] - (p["b"] - lr * g_b)))
                / (e * (jnp.max(jnp.abs(p["b"])) + lr * jnp.max(jnp.abs(g_b))))),
        }
        return (new, state), out

    (final, _), per_step = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(steps))
    worst = {k: jnp.max(v) for k, v in per_step.items()}
    worst["final"] = jnp.max(jnp.abs(final["phi"].mean(0) - mean0)) / jnp.max(jnp.abs(final["phi"] - params["phi"]))
    return worst


_sgd = functools.lru_cache(optax.sgd)  # one object per rate, so a second seed reuses the compiled program
_adam = functools.lru_cache(optax.adam)


def check_t2c_training(key: jax.Array, n: int = 1000, steps: int = 1000, timings: Timings | None = None,
                       optimizer: optax.GradientTransformation | None = None, lr: float = 0.1,
                       contrast: optax.GradientTransformation | None = None) -> list[CheckRow]:
    """T2c: plain SGD with learning rate `lr` conserves φ̄ and Σb at every one of `steps` steps, and each of its
    steps is the closed-form SGD step; Adam, the contrast, does not conserve φ̄."""
    optimizer = optimizer or _sgd(lr)
    contrast = contrast or _adam(0.01)
    keys = jax.random.split(key, n)

    def program(ks):
        sgd = jax.vmap(lambda k: sgd_conservation(k, optimizer, lr, steps))(ks)
        adam = jax.vmap(lambda k: mean_embedding_drift(k, contrast, steps)["mean"])(ks)
        return sgd, adam

    cache_key = (optimizer, contrast, lr, steps)  # optax transformations hash by their functions
    sgd, adam = run_program("T2c", program, (keys,), cache_key, timings or Timings(), optimise=True)
    note = (f"Adam: φ̄ drift / row motion median {np.median(adam):.2g}, min {adam.min():.2g} over {steps} steps")
    return [
        row("T2c", f"φ̄ conserved by SGD at each of {steps} steps", "eps·|Φ₀|∞·√t", sgd["drift"], 12.0, note),
        row("T2c", f"Σb conserved by SGD at each of {steps} steps", "eps·Σ|b_t|·√t", sgd["bias"], 8.0),
        row("T2c", "each optimizer step = closed-form SGD step", "eps·(|Φ|∞+lr|g|∞)", sgd["step"], 16.0),
        # Adam's per-coordinate scaling breaks the conservation: on the same data its drift dwarfs SGD's.
        row("T2c", "Adam breaks it: SGD drift / Adam drift, same run", "ratio", sgd["final"] / adam, 3e-4),
    ]

"""T2: closed-form gradients of the softmax head against float64 NumPy and against autodiff of a cross-entropy
written in `isojax/theory/routes.py` (T2a, T2b, T2c), and the conservation of the mean output embedding and of
Σb under SGD, step by step, with Adam as the contrast (T2c)."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from isojax import _validate as V
from isojax import head
from isojax.theory import reference as R
from isojax.theory import routes
from isojax.theory.harness import (
    CheckRow,
    Timings,
    anisotropic_head,
    call_variants,
    context_calls,
    eps,
    evaluate,
    f64,
    modes_text,
    normal,
    normals,
    residuals_over,
    row,
    run_program,
)

__all__ = ["t2_head_gradients", "head_instance", "mean_embedding_drift", "sgd_conservation", "T2_CONFIGS",
           "check_t2ab", "check_t2c_training"]

CONTEXTS = 2


def t2_head_gradients(phi: ArrayLike, h: ArrayLike, y: ArrayLike, b: ArrayLike, shift: ArrayLike, *,
                      grad_logits: Callable = head.grad_logits, grad_h: Callable = head.grad_h,
                      grad_phi: Callable = head.grad_phi) -> dict[str, jax.Array]:
    """T2a–c for one instance in JAX (for experiments/gradient_structure.py; `isojax check` computes its rows on
    the host): each closed form against autodiff of `routes.cross_entropy`, and ∇_h ℓ's change under
    Φ -> Φ + 1 shiftᵀ. Relative errors over eps."""
    g_phi, g_h, g_b = jax.grad(routes.cross_entropy, argnums=(0, 1, 3))(phi, h, y, b)
    e = eps()
    rel = lambda a, ref: jnp.linalg.norm((a - ref).ravel()) / jnp.maximum(jnp.linalg.norm(ref.ravel()), 1e-30)
    return {"t2a_closed": rel(grad_logits(phi, h, y, b), g_b) / e,
            "t2b_closed": rel(grad_h(phi, h, y, b), g_h) / e,
            "t2b_shift": rel(grad_h(phi + shift, h, y, b), grad_h(phi, h, y, b)) / e,
            "t2c_closed": rel(grad_phi(phi, h, y, b), g_phi) / e}


def head_instance(vocab: int, dim: int) -> Callable[[jax.Array], tuple[jax.Array, ...]]:
    """A draw of one T2 instance: key -> (phi [V, d], h [d], y [], b [V], shift [d]) on an anisotropic head."""
    def draw(k):
        ks = jax.random.split(k, 5)
        phi = anisotropic_head(ks[0], vocab, dim)
        shift = 5.0 * normal(ks[4], (dim,))
        return (phi, 2.0 * normal(ks[1], (dim,)), jax.random.randint(ks[2], (), 0, vocab),
                normal(ks[3], (vocab,)), shift)
    return draw


def _draw_t2(vocab, dim):
    def one(k):
        ks = jax.random.split(k, 3)
        phi = anisotropic_head(ks[0], vocab, dim)
        h, b, shift = normals(ks[1], (CONTEXTS, dim), (vocab,), (dim,))
        h = 2.0 * h
        y = jax.random.randint(ks[2], (CONTEXTS,), 0, vocab)
        # the autodiff route does not involve the implementation: it is part of the instance
        auto = jax.vmap(jax.grad(routes.cross_entropy, argnums=(0, 1, 3)), (None, 0, 0, None))(phi, h, y, b)
        return dict(phi=phi, h=h, y=y, b=b, phi_shift=phi + 5.0 * shift, auto_phi=auto[0], auto_h=auto[1],
                    auto_z=auto[2])
    return one


def _direct_t2(cfg, impl):
    grad_logits = impl.get("grad_logits", head.grad_logits)
    grad_h = impl.get("grad_h", head.grad_h)
    grad_phi = impl.get("grad_phi", head.grad_phi)

    def f(x, eager=False):
        both = lambda fn, phi: context_calls(fn, phi, x["h"], x["y"], x["b"], per=(1, 2), eager=eager)

        return {"g_z": both(grad_logits, x["phi"]), "g_h": both(grad_h, x["phi"]),
                "g_h_shift": both(grad_h, x["phi_shift"]), "g_phi": both(grad_phi, x["phi"])}
    return f


def _residuals_t2(cfg, x, values, _, __):
    e = eps()
    phi, h, y, b = f64(x["phi"]), f64(x["h"]), np.asarray(x["y"]), f64(x["b"])
    ref = {"z": R.grad_logits(phi, h, y, b), "h": R.grad_h(phi, h, y, b), "phi": R.grad_phi(phi, h, y, b)}
    auto = {"z": f64(x["auto_z"]), "h": f64(x["auto_h"]), "phi": f64(x["auto_phi"])}
    # p - e_y rounds at eps·(1 + ζ), ζ = max_w Σ_i |φ_wi h_i| + |b_w| the rounding scale of the logits; sums of
    # it (and what multiplies them) at that times ‖g‖₁ + 1 and the size of the factor
    zeta = np.max(np.abs(h)[:, :, None, :] @ np.swapaxes(np.abs(phi), -1, -2)[:, None]
                  + np.abs(b)[:, None, None, :], axis=(2, 3))  # [n, C]
    unit = e * (1.0 + zeta) * (np.sum(np.abs(ref["z"]), -1) + 1.0)  # [n, C]
    rows_phi = np.max(np.linalg.norm(phi, axis=-1), -1)[:, None]
    rows_shift = np.max(np.linalg.norm(f64(x["phi_shift"]), axis=-1), -1)[:, None]
    norm_h = np.linalg.norm(h, axis=-1)
    out = []
    for v in call_variants(values):
        c = v["g_z"].shape[1]  # contexts evaluated (eager: the first only)
        u = unit[:, :c]
        d = lambda a, r: np.linalg.norm((a - r[:, :c]).reshape(a.shape[0], c, -1), axis=-1)
        out.append({
            "t2a_sum": np.abs(v["g_z"].sum(-1)) / u,
            "t2a_closed": d(v["g_z"], ref["z"]) / u,
            "t2a_auto": d(v["g_z"], auto["z"]) / u,
            "t2b_shift": d(v["g_h_shift"], v["g_h"]) / (u * rows_shift),
            "t2b_closed": d(v["g_h"], ref["h"]) / (u * rows_phi),
            "t2b_auto": d(v["g_h"], auto["h"]) / (u * rows_phi),
            "t2c_rows": np.linalg.norm(v["g_phi"].sum(-2), axis=-1) / (u * norm_h[:, :c]),
            "t2c_closed": d(v["g_phi"], ref["phi"]) / (u * norm_h[:, :c]),
            "t2c_auto": d(v["g_phi"], auto["phi"]) / (u * norm_h[:, :c]),
        })
    return {k: np.max(np.stack([np.max(o[k], axis=1) for o in out]), axis=0) for k in out[0]}


T2_CONFIGS = [dict(vocab=2, dim=3, _vmap=True), dict(vocab=64, dim=8, _eager=2), dict(vocab=512, dim=16)]


def check_t2ab(key: jax.Array, n: int = 1000, timings: Timings | None = None, configs: list[dict] | None = None,
               **impl) -> list[CheckRow]:
    """T2a, T2b and the gradient identities of T2c on random anisotropic heads."""
    timings = timings or Timings()
    evs = evaluate("T2ab", _draw_t2, _direct_t2, key, n, configs or T2_CONFIGS, timings, impl)
    res = residuals_over(evs, _residuals_t2, timings)
    u, m = "eps·(1+ζ)(‖g‖₁+1)·size", modes_text(evs)
    auto = "autodiff of routes.cross_entropy"

    def rows(stmt, fn, what, names, tol_stmt, tol_value):
        return [
            row(stmt, what[0], u, res[names[0]], tol_stmt, uses=(fn,), modes=m),
            row(stmt, what[1], u, res[names[1]], tol_value, kind="value", reference=what[2], uses=(fn,), modes=m),
            row(stmt, what[1].split(" = ")[0] + " = autodiff of a cross-entropy written apart", u, res[names[2]],
                tol_value, kind="route", reference=auto, uses=(fn,), modes=m),
        ]

    return [
        *rows("T2a", "grad_logits", ("1ᵀ∇_z ℓ = 0 (closed form)", "∇_z ℓ = float64 NumPy p - e_y",
                                     "reference.grad_logits"), ("t2a_sum", "t2a_closed", "t2a_auto"), 8.0, 8.0),
        *rows("T2b", "grad_h", ("grad_h unchanged by Φ -> Φ + 1cᵀ", "∇_h ℓ = float64 NumPy Φ_cᵀ(p - e_y)",
                                "reference.grad_h"), ("t2b_shift", "t2b_closed", "t2b_auto"), 16.0, 16.0),
        *rows("T2c", "grad_phi", ("Σ_w ∇_φw ℓ = 0 (closed form)", "∇_Φ ℓ = float64 NumPy (p - e_y)hᵀ",
                                  "reference.grad_phi"), ("t2c_rows", "t2c_closed", "t2c_auto"), 8.0, 8.0),
    ]


# --------------------------------------------------------------------------------------------- T2c training

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
    of the optimizer's step from the closed-form SGD step of `routes.sgd_step` (a softmax written apart) in
    units of eps·(|Φ_t|∞ + lr|g|∞). Each is the worst over the steps; "final" is φ̄'s drift over the rows'
    motion after the last step (as mean_embedding_drift); "snapshots" the parameters before and after the
    first and the last step with their batch, for the float64 NumPy step on the host."""
    xs, ys, params = _training_data(key, vocab, dim, examples)
    e = eps()
    mean0, bsum0 = params["phi"].mean(0), params["b"].sum()
    scale0 = jnp.max(jnp.abs(params["phi"]))
    tiny = jnp.finfo(V.float_dtype()).tiny

    def step(carry, i):
        p, state, snap = carry
        idx = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, examples)
        updates, state = optimizer.update(jax.grad(_batch_loss)(p, xs[idx], ys[idx]), state, p)
        new = optax.apply_updates(p, updates)
        # the first step's result is kept, the last one's overwritten at every step (nothing stacked over steps)
        snap = {"before": [snap["before"][0], p], "after": [jax.tree.map(lambda a, b: jnp.where(i == 0, b, a),
                                                                       snap["after"][0], new), new],
                "idx": [jnp.where(i == 0, idx, snap["idx"][0]), idx]}
        phi_sgd, b_sgd = routes.sgd_step(p["phi"], p["b"], xs[idx], ys[idx], lr)
        g_phi, g_b = (p["phi"] - phi_sgd) / lr, (p["b"] - b_sgd) / lr
        walk = jnp.sqrt(i + 1.0)
        size_phi = jnp.max(jnp.abs(p["phi"])) + lr * jnp.max(jnp.abs(g_phi))
        size_b = jnp.max(jnp.abs(p["b"])) + lr * jnp.max(jnp.abs(g_b))
        out = {
            "drift": jnp.max(jnp.abs(new["phi"].mean(0) - mean0)) / (e * scale0 * walk),
            "bias": jnp.abs(new["b"].sum() - bsum0) / (e * (jnp.abs(new["b"]).sum() + tiny) * walk),
            "step": jnp.maximum(jnp.max(jnp.abs(new["phi"] - phi_sgd)) / (e * size_phi),
                                jnp.max(jnp.abs(new["b"] - b_sgd)) / (e * size_b)),
        }
        return (new, state, snap), out

    no_idx = jnp.zeros((batch,), jax.random.randint(key, (), 0, 1).dtype)  # int32 or int64 (x64)
    snap0 = {"before": [params, params], "after": [params, params], "idx": [no_idx, no_idx]}
    (final, _, snap), per_step = jax.lax.scan(step, (params, optimizer.init(params), snap0), jnp.arange(steps))
    worst = {k: jnp.max(v) for k, v in per_step.items()}
    worst["final"] = jnp.max(jnp.abs(final["phi"].mean(0) - mean0)) / jnp.max(jnp.abs(final["phi"] - params["phi"]))
    stack = lambda parts: jax.tree.map(lambda *a: jnp.stack(a), *parts)
    worst["snapshots"] = {"before": stack(snap["before"]), "after": stack(snap["after"]), "idx": jnp.stack(snap["idx"]),
                          "xs": xs, "ys": ys}
    return worst


_sgd = functools.lru_cache(optax.sgd)  # one object per rate, so a second seed reuses the compiled program
_adam = functools.lru_cache(optax.adam)
EAGER_STEPS = 2  # optimizer steps taken eagerly (one run, not vmapped) from the first run's start


def _numpy_step_error(before, after, idx, xs, ys, lr) -> np.ndarray:
    """|optimizer step - float64 NumPy SGD step| in units of eps·(|Φ|∞ + lr|g|∞), for [..., steps]."""
    take = lambda a, i: np.take_along_axis(f64(a), np.asarray(i)[..., None], axis=-2)
    bx, by = take(xs[..., None, :, :], idx), np.take_along_axis(np.asarray(ys)[..., None, :], np.asarray(idx), -1)
    phi_ref, b_ref = R.sgd_step(before["phi"], before["b"], bx, by, lr)
    g_phi, g_b = (f64(before["phi"]) - phi_ref) / lr, (f64(before["b"]) - b_ref) / lr
    e = eps()
    err_phi = np.max(np.abs(f64(after["phi"]) - phi_ref), axis=(-2, -1)) / (
        e * (np.max(np.abs(f64(before["phi"])), axis=(-2, -1)) + lr * np.max(np.abs(g_phi), axis=(-2, -1))))
    err_b = np.max(np.abs(f64(after["b"]) - b_ref), -1) / (
        e * (np.max(np.abs(f64(before["b"])), -1) + lr * np.max(np.abs(g_b), -1)))
    return np.maximum(err_phi, err_b)


def check_t2c_training(key: jax.Array, n: int = 1000, steps: int = 1000, timings: Timings | None = None,
                       optimizer: optax.GradientTransformation | None = None, lr: float = 0.1,
                       contrast: optax.GradientTransformation | None = None) -> list[CheckRow]:
    """T2c: plain SGD with learning rate `lr` conserves φ̄ and Σb at every one of `steps` steps, and each of its
    steps is the closed-form SGD step (`routes.sgd_step` at every step; float64 NumPy at the first and last);
    Adam, the contrast, does not conserve φ̄. All n runs train vmapped under jit; the first run's first steps
    are also taken with the optimizer called eagerly (one run, on concrete arrays)."""
    timings = timings or Timings()
    optimizer = optimizer or _sgd(lr)
    contrast = contrast or _adam(0.01)
    keys = jax.random.split(key, n)

    def program(ks):
        sgd = jax.vmap(lambda k: sgd_conservation(k, optimizer, lr, steps))(ks)
        adam = jax.vmap(lambda k: mean_embedding_drift(k, contrast, steps)["mean"])(ks)
        return sgd, adam

    cache_key = (optimizer, contrast, lr, steps)  # optax transformations hash by their functions
    sgd, adam = run_program("T2c", program, (keys,), cache_key, timings, optimise=True)
    start = time.perf_counter()
    numpy_step = np.array(np.max(_numpy_step_error(**sgd["snapshots"], lr=lr), axis=-1))
    # eagerly: the first run's first steps, the optimizer called on concrete arrays (the loss gradient and the
    # batch draw, not what T2c verifies, under jit)
    snap = jax.tree.map(lambda a: np.asarray(a[0]), sgd["snapshots"])
    xs, ys = snap["xs"], snap["ys"]
    params = jax.tree.map(lambda a: jnp.asarray(a[0]), snap["before"])
    state = optimizer.init(params)
    grad = jax.jit(jax.grad(_batch_loss))
    batch = jax.jit(lambda i: jax.random.randint(jax.random.fold_in(keys[0], i), (16,), 0, xs.shape[0]))
    eager_err, drift, bias = [], [], []
    as_np = lambda t: jax.tree.map(lambda a: np.asarray(a, np.float64), t)
    start_params = as_np(params)
    e, tiny = eps(), np.finfo(np.float64).tiny
    for i in range(EAGER_STEPS):
        idx = np.asarray(batch(i))
        updates, state = optimizer.update(grad(params, jnp.asarray(xs[idx]), jnp.asarray(ys[idx])), state, params)
        new = optax.apply_updates(params, updates)
        eager_err.append(float(_numpy_step_error(as_np(params), as_np(new), idx[None], xs, ys, lr)[0]))
        now, walk = as_np(new), math.sqrt(i + 1.0)
        drift.append(np.max(np.abs(now["phi"].mean(0) - start_params["phi"].mean(0)))
                     / (e * np.max(np.abs(start_params["phi"])) * walk))
        bias.append(abs(now["b"].sum() - start_params["b"].sum()) / (e * (np.abs(now["b"]).sum() + tiny) * walk))
        params = new
    numpy_step[0] = max(numpy_step[0], *eager_err)
    sgd = {**sgd, "drift": np.array(sgd["drift"]), "bias": np.array(sgd["bias"])}
    sgd["drift"][0] = max(sgd["drift"][0], *drift)
    sgd["bias"][0] = max(sgd["bias"][0], *bias)
    timings.eager += time.perf_counter() - start
    note = (f"Adam: φ̄ drift / row motion median {np.median(adam):.2g}, min {adam.min():.2g} over {steps} steps")
    m = f"jit {n} runs vmapped; eager {EAGER_STEPS} steps of run 0"
    use = ("optimizer",)
    return [
        row("T2c", f"φ̄ conserved by SGD at each of {steps} steps", "eps·|Φ₀|∞·√t", sgd["drift"], 12.0, note,
            uses=use, modes=m),
        row("T2c", f"Σb conserved by SGD at each of {steps} steps", "eps·Σ|b_t|·√t", sgd["bias"], 8.0, uses=use,
            modes=m),
        row("T2c", "each optimizer step = SGD step of a softmax written apart", "eps·(|Φ|∞+lr|g|∞)", sgd["step"],
            16.0, kind="route", reference="routes.sgd_step", uses=use, modes=m),
        row("T2c", "first and last optimizer step = float64 NumPy SGD step", "eps·(|Φ|∞+lr|g|∞)", numpy_step, 16.0,
            kind="value", reference="reference.sgd_step", uses=use, modes=m),
        # Adam's per-coordinate scaling breaks the conservation: on the same data its drift dwarfs SGD's.
        row("T2c", "Adam breaks it: SGD drift / Adam drift, same run", "ratio", sgd["final"] / adam, 3e-4,
            uses=("contrast",), modes=m),
    ]

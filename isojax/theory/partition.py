"""T4: the partition function. T4a: log Z(c) and the isotropy I(Φ) of Gaussian heads, measured by
`isotropy.log_partition_along` / `isotropy.partition_isotropy`, against the closed form across V, with the
principal directions from a float64 NumPy eigen-decomposition (not from isojax), and against float64 NumPy
references. T4b: log p(w|c) is affine in c up to ε_Z, with the head's own `log_probs` and `log_partition`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from isojax import _validate as V
from isojax import distributions, head, isotropy
from isojax.theory import reference as R
from isojax.theory.harness import (
    EAGER,
    CheckRow,
    Timings,
    _hashable,
    eps,
    evaluate,
    f64,
    modes_text,
    normals,
    residuals_over,
    row,
    run_program,
    split_count,
    uniform,
)

__all__ = ["gaussian_log_partition", "T4A_MAX_VAR", "t4a_sigma", "T4B_CONFIGS", "check_t4a", "check_t4b"]


def gaussian_log_partition(mu: ArrayLike, cov: ArrayLike, directions: ArrayLike, vocab: int) -> jax.Array:
    """T4a closed form: log E[Z(c)] = log V + μᵀc + ½cᵀΣc for rows φ_w ~ N(μ, Σ). -> [m] (JAX; the check
    evaluates the same formula in float64 NumPy, `reference.gaussian_log_partition`)"""
    return math.log(vocab) + directions @ mu + 0.5 * jnp.einsum("md,de,me->m", directions, cov, directions)


T4A_MAX_VAR = 0.6  # the sampler keeps cᵀΣc ≤ 0.6, so Z(c)'s fluctuations stay near Gaussian


def t4a_sigma(vocab: int) -> float:
    """The unit of T4a's residuals: the largest relative fluctuation of Z(c), sqrt((e^{max cᵀΣc} - 1)/V). The
    Marchenko–Pastur bias of the sample eigenvectors, cᵀΣc·(2r + r²) with r = √(d/V), shrinks at the same rate,
    so a residual in these units has the same spread at every V."""
    return math.sqrt(math.expm1(T4A_MAX_VAR) / vocab)


def _draw_t4a(vocab, dim):
    def one(k):
        ks = jax.random.split(k, 3)
        direction, square = normals(ks[0], (dim,), (dim, dim))
        direction = direction / jnp.linalg.norm(direction)
        u = uniform(ks[1], (3,))
        mu = (0.5 + 0.5 * u[0]) * direction  # a cone strong enough that log I is well above noise
        sigma2 = 0.05 + (T4A_MAX_VAR / 2.0 - 0.05) * u[2]  # ≤ 0.3 × (1 + spike ≤ 2)
        # Σ's eigenvectors are known (an orthonormal basis whose first vector is the spike), so no eigh runs
        # beside the implementation's: two independent batched eighs in one program can deadlock jaxlib's CPU
        # LAPACK thread pool (seen with jaxlib 0.10.2).
        basis, _ = jnp.linalg.qr(square)
        cov = sigma2 * (jnp.eye(dim, dtype=V.float_dtype()) + u[1] * jnp.outer(basis[:, 0], basis[:, 0]))
        phi = distributions.gaussian_rows(ks[2], vocab, mu, cov)
        return dict(phi=phi, mu=mu, cov=cov, population=jnp.concatenate([basis.T, -basis.T]))
    return one


def _t4a_values(impl):
    log_partition_along = impl.get("log_partition_along", isotropy.log_partition_along)
    partition_isotropy = impl.get("partition_isotropy", isotropy.partition_isotropy)
    return lambda x: {"log_z": log_partition_along(x["phi"], x["population"]), "iso": partition_isotropy(x["phi"])}


FULL = 16  # instances per V whose whole head comes back to the host for the float64 NumPy value rows


def _t4a_statement(vals: dict, predicted: np.ndarray, log_i_closed: np.ndarray, sigma: float) -> dict:
    """The closed-form residuals of the first len(vals) instances, in units of σ_V."""
    m = len(f64(vals["iso"]))
    signed = f64(vals["log_z"]) - predicted[:m]
    return {"log_z": np.max(np.abs(signed), -1) / sigma, "bias": np.mean(signed, -1) / sigma,
            "log_i": np.abs(np.log(f64(vals["iso"])) - log_i_closed[:m]) / sigma}


def check_t4a(key: jax.Array, n: int = 1000, vocabs: Sequence[int] = (256, 1024, 4096, 16384), dim: int = 8,
              timings: Timings | None = None, closed_form: Callable = R.gaussian_log_partition,
              **impl) -> list[CheckRow]:
    """T4a across V for Gaussian heads with a random mean (a cone) and a spiked covariance; one row per V and
    quantity, residuals in units of t4a_sigma(V); the tolerance in log units is reported beside the smallest
    predicted |log I| so one can see it is meaningful at every V. The closed form of I(Φ) is evaluated at the
    principal directions of a float64 NumPy eigen-decomposition of ΦᵀΦ; log Z and I(Φ) are also compared with
    float64 NumPy on the first `FULL` heads of each V (their Φ comes back to the host; the others' ΦᵀΦ does).
    The smallest V is vmapped, the others evaluated one at a time; the largest is also called eagerly.
    `closed_form(mu, cov, directions, vocab)` works on float64 NumPy arrays."""
    timings = timings or Timings()
    configs = [dict(vocab=v, dim=dim, _vmap=v == min(vocabs), _eager=EAGER if v == max(vocabs) else 0)
               for v in vocabs]
    counts = split_count(n, len(configs))
    keys = [jax.random.split(jax.random.fold_in(key, i), max(c, 1)) for i, c in enumerate(counts)]
    draws = [_draw_t4a(vocab=cfg["vocab"], dim=dim) for cfg in configs]
    values = _t4a_values(impl)

    def program(*key_sets):
        outs = []
        for cfg, d, ks in zip(configs, draws, key_sets, strict=True):
            x = jax.lax.map(d, ks)
            gram = jnp.einsum("nvd,nve->nde", x["phi"], x["phi"])  # ΦᵀΦ by the check, for NumPy's eigh
            vals = jax.vmap(values)(x) if cfg["_vmap"] else jax.lax.map(values, x)
            outs.append({"x": {k: v for k, v in x.items() if k != "phi"}, "gram": gram, "phi": x["phi"][:FULL],
                         "jit": vals})
        return outs

    outs = run_program("T4a", program, keys, (_hashable(configs), _hashable(impl), tuple(counts)), timings,
                       optimise=True)
    tol_z, tol_i, tol_bias, tol_value = 8.0, 12.0, 6.0, 64.0
    rows, value_z, value_i = [], [], []
    nan_inf = lambda r: np.where(np.isnan(r), np.inf, r)
    for cfg, out, count in zip(configs, outs, counts, strict=True):
        vocab, sigma = cfg["vocab"], t4a_sigma(cfg["vocab"])
        start = time.perf_counter()
        eager = [values({"phi": jnp.asarray(out["phi"][i]), "population": jnp.asarray(out["x"]["population"][i])})
                 for i in range(min(cfg["_eager"], len(out["phi"])))]
        eager = jax.tree.map(lambda *a: np.stack([np.asarray(v) for v in a]), *eager) if eager else None
        timings.eager += time.perf_counter() - start
        start = time.perf_counter()
        mu, cov, pop = f64(out["x"]["mu"]), f64(out["x"]["cov"]), f64(out["x"]["population"])
        predicted = closed_form(mu, cov, pop, vocab)
        _, vecs = np.linalg.eigh(f64(out["gram"]))  # the principal directions: the columns of the eigenvectors
        directions = np.swapaxes(vecs, -1, -2)
        predicted_e = closed_form(mu, cov, np.concatenate([directions, -directions], axis=-2), vocab)
        log_i_closed = predicted_e.min(-1) - predicted_e.max(-1)
        modes = [out["jit"]] + ([eager] if eager is not None else [])  # each: the first instances of the V
        res = _t4a_statement(out["jit"], predicted, log_i_closed, sigma)
        for vals in modes[1:]:
            part = _t4a_statement(vals, predicted, log_i_closed, sigma)
            for k in ("log_z", "log_i"):
                m = len(part[k])
                res[k][:m] = np.fmax(res[k][:m], nan_inf(part[k]))
        # float64 NumPy on the heads that came back whole, in every mode that evaluated them
        phi = f64(out["phi"])
        ref_z, ref_i = R.log_partition_along(phi, pop[:FULL]), R.partition_isotropy(phi)
        proj = np.max(np.abs(pop[:FULL] @ np.swapaxes(phi, -1, -2)), axis=(-2, -1))
        unit = eps() * (proj + math.log(vocab))  # the rounding scale of a logsumexp over V terms of size |proj|
        vz, vi = np.zeros(len(phi)), np.zeros(len(phi))
        for vals in modes:
            m = min(len(f64(vals["iso"])), len(phi))
            lz, iso = f64(vals["log_z"])[:m], f64(vals["iso"])[:m]
            vz[:m] = np.fmax(vz[:m], nan_inf(np.max(np.abs(lz - ref_z[:m]), -1) / unit[:m]))
            vi[:m] = np.fmax(vi[:m], nan_inf(np.abs(np.log(iso) - np.log(ref_i[:m])) / unit[:m]))
        value_z.append(vz)
        value_i.append(vi)
        timings.host += time.perf_counter() - start
        how = "vmapped" if cfg["_vmap"] else "one at a time"
        m_text = f"jit {count} {how}" + (f"; eager {len(f64(eager['iso']))}" if eager is not None else "")
        note = (f"V={vocab}: tolerance {tol_i * sigma:.3g} in log I vs predicted |log I| ≥ "
                f"{-log_i_closed.max():.3g} (median {np.median(-log_i_closed):.3g})")
        # The mean signed error over all instances: at small V one instance's noise hides a missing ½cᵀΣc
        # (≤ 0.3), the mean over the instances does not (its noise is σ_V/√instances).
        bias = abs(float(np.mean(res["bias"]))) * math.sqrt(len(res["bias"]))
        scope = f"V={vocab}: {count} of the {n} instances (each V has its own)"
        uses_z, uses_i = ("log_partition_along",), ("partition_isotropy",)
        rows.append(row("T4a", f"mean of log Z(c) - closed form ≈ 0, V={vocab}", "σ_V/√instances", [bias],
                        tol_bias, uses=uses_z, modes=m_text,
                        scope=f"V={vocab}: 1, the mean over its {count} instances"))
        rows.append(row("T4a", f"log Z(c) vs log V + μᵀc + ½cᵀΣc, V={vocab}", "σ_V", res["log_z"], tol_z,
                        uses=uses_z, modes=m_text, scope=scope))
        rows.append(row("T4a", f"log partition_isotropy(Φ) vs closed form at NumPy eigh(ΦᵀΦ), V={vocab}", "σ_V",
                        res["log_i"], tol_i, note, uses=uses_i, modes=m_text, scope=scope))
    full_scope = f"the first {FULL} heads of each V, whose Φ comes back to the host"
    n_eager = sum(cfg["_eager"] for cfg in configs)
    full_modes = (f"jit {sum(len(v) for v, c in zip(value_z, configs, strict=True) if not c['_vmap'])} one at a "
                  f"time + {sum(len(v) for v, c in zip(value_z, configs, strict=True) if c['_vmap'])} vmapped; "
                  f"eager {n_eager}")
    rows.append(row("T4a", "log_partition_along = float64 NumPy logsumexp of Φc", "eps·(|Φc|∞+log V)",
                    np.concatenate(value_z), tol_value, kind="value", reference="reference.log_partition_along",
                    uses=("log_partition_along",), modes=full_modes, scope=full_scope))
    rows.append(row("T4a", "log partition_isotropy = float64 NumPy (eigh of ΦᵀΦ, both signs)", "eps·(|Φc|∞+log V)",
                    np.concatenate(value_i), tol_value, kind="value", reference="reference.partition_isotropy",
                    uses=("partition_isotropy",), modes=full_modes, scope=full_scope))
    return rows


# --------------------------------------------------------------------------------------------- T4b

def _draw_t4b(vocab, dim, contexts):
    def one(k):
        kn, ku = jax.random.split(k)
        u_dir, rows_, c = normals(kn, (dim,), (vocab, dim), (contexts, dim))
        u = uniform(ku, (2,))
        phi = u[0] * u_dir / jnp.linalg.norm(u_dir) + rows_ / math.sqrt(dim)
        spread = 0.3 + 2.7 * u[1]  # contexts of random spread: ε_Z from ~0 to several
        return dict(phi=phi, c=spread * c)
    return one


def _direct_t4b(cfg, impl):
    log_probs = impl.get("log_probs", head.log_probs)
    log_partition = impl.get("log_partition", head.log_partition)

    def f(x, eager=False):  # eager: the batched calls only (each eager call compiles its operations one by one)
        phi, c = x["phi"], x["c"]
        out = {"lp": log_probs(phi, c), "lz": log_partition(phi, c)}
        if not eager:
            out["lp_single"] = [log_probs(phi, c[i]) for i in range(2)]
            out["lz_single"] = [log_partition(phi, c[i]) for i in range(2)]
        return out
    return f


def _residuals_t4b(cfg, x, values, _, __):
    e = eps()
    phi, c = f64(x["phi"]), f64(x["c"])
    z = R.logits(phi, c)  # [n, m, V]
    lp, lz = f64(values["lp"]), f64(values["lz"])
    unit = e * (np.max(np.abs(z), axis=(1, 2)) + 1.0)
    root_m = math.sqrt(c.shape[1])
    res_p = R.affine_fit_residual(lp, c)
    res_z = R.affine_fit_residual(lz[..., None], c)
    centred = lz - lz.mean(-1, keepdims=True)
    eps_z = np.max(np.abs(centred), -1)
    rms_fit = np.sqrt(np.max(np.mean(res_p**2, axis=1), axis=-1))
    rms_z = np.sqrt(np.mean(centred**2, -1))
    lp_var = np.mean((lp - lp.mean(axis=1, keepdims=True)) ** 2, axis=(1, 2))
    ref_lp, ref_lz = R.log_softmax(z), R.logsumexp(z)
    worst = lambda r: np.max(np.abs(r).reshape(len(unit), -1), axis=1)
    value, log_z = worst(lp - ref_lp) / unit, worst(lz - ref_lz) / unit
    if "lp_single" in values:
        lp_single = np.stack([f64(v) for v in values["lp_single"]], axis=1)
        lz_single = np.stack([f64(v) for v in values["lz_single"]], axis=1)
        value = np.maximum(value, worst(lp_single - ref_lp[:, :2]) / unit)
        log_z = np.maximum(log_z, worst(lz_single - ref_lz[:, :2]) / unit)
    return {
        "value": value,
        "log_z": log_z,
        "same_residual": worst(res_p + res_z) / (unit * root_m),
        "bound": np.maximum(rms_fit - np.minimum(rms_z, eps_z), 0.0) / (unit * root_m),
        "eps_z": eps_z, "r2": 1.0 - np.mean(res_p**2, axis=(1, 2)) / lp_var,
    }


# The last configuration has V > 4096 (fewer contexts, a smaller share of the instances).
T4B_CONFIGS = [dict(vocab=64, dim=8, contexts=64, _eager=2), dict(vocab=256, dim=16, contexts=64, _vmap=True),
               dict(vocab=5000, dim=8, contexts=16, _share=0.15)]


def check_t4b(key: jax.Array, n: int = 1000, timings: Timings | None = None, configs: list[dict] | None = None,
              **impl) -> list[CheckRow]:
    """T4b on heads with a cone of random strength and contexts of random spread (ε_Z from ~0 to several)."""
    timings = timings or Timings()
    evs = evaluate("T4b", _draw_t4b, _direct_t4b, key, n, configs or T4B_CONFIGS, timings, impl)
    res = residuals_over(evs, _residuals_t4b, timings)
    u, m = "eps·(|z|∞+1)", modes_text(evs)
    note = (f"ε_Z from {res['eps_z'].min():.2g} to {res['eps_z'].max():.2g}; R² of the affine fit from "
            f"{res['r2'].min():.3g} to {res['r2'].max():.3g}")
    both = ("log_probs", "log_partition")
    return [
        row("T4b", "RMS of affine-fit residual ≤ RMS(log Z - mean) ≤ ε_Z", "excess/(" + u + "·√m)", res["bound"],
            1.0, note, uses=both, modes=m),
        row("T4b", "affine-fit residual of log p(w|·) = that of -log Z, ∀w", u + "·√m", res["same_residual"], 16.0,
            uses=both, modes=m),
        row("T4b", "log p(w|c) = float64 NumPy log-softmax of Φc", u, res["value"], 8.0, kind="value",
            reference="reference.log_softmax", uses=("log_probs",), modes=m),
        row("T4b", "log Z(c) = float64 NumPy logsumexp of Φc", u, res["log_z"], 8.0, kind="value",
            reference="reference.logsumexp", uses=("log_partition",), modes=m),
    ]

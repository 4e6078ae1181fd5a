"""T4: the partition function. T4a: log Z(c) and the isotropy I(Φ) of Gaussian heads, measured by
`isotropy.log_partition_along` / `isotropy.partition_isotropy`, against the closed form across V. T4b: log p(w|c)
is affine in c up to ε_Z, with the head's own `log_probs` and `log_partition`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from isojax import _validate as V
from isojax import distributions, head, isotropy
from isojax.theory.harness import CheckRow, Timings, eps, normal, row, run_instances, uniform
from isojax.theory.softmax import reference_log_softmax

__all__ = ["gaussian_log_partition", "T4A_MAX_VAR", "t4a_sigma", "t4a_partition", "affine_fit_residual",
           "t4b_affine", "check_t4a", "check_t4b"]


def gaussian_log_partition(mu: ArrayLike, cov: ArrayLike, directions: ArrayLike, vocab: int) -> jax.Array:
    """T4a closed form: log E[Z(c)] = log V + μᵀc + ½cᵀΣc for rows φ_w ~ N(μ, Σ). -> [m]"""
    return math.log(vocab) + directions @ mu + 0.5 * jnp.einsum("md,de,me->m", directions, cov, directions)


T4A_MAX_VAR = 0.6  # the sampler keeps cᵀΣc ≤ 0.6, so Z(c)'s fluctuations stay near Gaussian


def t4a_sigma(vocab: int) -> float:
    """The unit of T4a's residuals: the largest relative fluctuation of Z(c), sqrt((e^{max cᵀΣc} - 1)/V). The
    Marchenko–Pastur bias of the sample eigenvectors, cᵀΣc·(2r + r²) with r = √(d/V), shrinks at the same rate,
    so a residual in these units has the same spread at every V."""
    return math.sqrt(math.expm1(T4A_MAX_VAR) / vocab)


def t4a_partition(phi: ArrayLike, mu: ArrayLike, cov: ArrayLike, population: ArrayLike, *,
                  log_partition_along: Callable = isotropy.log_partition_along,
                  partition_isotropy: Callable = isotropy.partition_isotropy,
                  closed_form: Callable = gaussian_log_partition) -> dict[str, jax.Array]:
    """T4a for one head with rows ~ N(μ, Σ): |log Z(c) - closed form| over the population directions (± the
    eigenvectors of Σ, [2d, d]), and |log I(Φ) - closed form over E = principal_directions(Φ)|, I(Φ) from
    `partition_isotropy`; both in units of t4a_sigma(V). Also the predicted |log I| (the size of the signal)."""
    vocab = phi.shape[0]
    sigma = t4a_sigma(vocab)
    signed = log_partition_along(phi, population) - closed_form(mu, cov, population, vocab)
    err_log_z = jnp.max(jnp.abs(signed))
    predicted = closed_form(mu, cov, isotropy.principal_directions(phi), vocab)
    log_i_closed = predicted.min() - predicted.max()
    err_log_i = jnp.abs(jnp.log(partition_isotropy(phi)) - log_i_closed)
    return {"log_z": err_log_z / sigma, "log_i": err_log_i / sigma, "signal": -log_i_closed,
            "bias": jnp.mean(signed) / sigma}


def _make_t4a(vocab, dim, **impl):
    def one(k):
        ks = jax.random.split(k, 6)
        direction = normal(ks[0], (dim,))
        direction = direction / jnp.linalg.norm(direction)
        mu = uniform(ks[1], (), 0.5, 1.0) * direction  # a cone strong enough that log I is well above noise
        spike = uniform(ks[2], (), 0.0, 1.0)
        sigma2 = uniform(ks[3], (), 0.05, T4A_MAX_VAR / 2.0)  # ≤ 0.3 × (1 + spike ≤ 2)
        # Σ's eigenvectors are known (an orthonormal basis whose first vector is the spike), so no eigh runs
        # beside the one on Φ: two independent batched eighs in one program can deadlock jaxlib's CPU LAPACK
        # thread pool (seen with jaxlib 0.10.2).
        basis, _ = jnp.linalg.qr(normal(ks[4], (dim, dim)))
        spike_dir = basis[:, 0]
        eye = jnp.eye(dim, dtype=V.float_dtype())
        cov = sigma2 * (eye + spike * jnp.outer(spike_dir, spike_dir))
        phi = distributions.gaussian_rows(ks[5], vocab, mu, cov)
        population = jnp.concatenate([basis.T, -basis.T])
        return t4a_partition(phi, mu, cov, population, **impl)
    return one


def check_t4a(key: jax.Array, n: int = 1000, vocabs: Sequence[int] = (256, 1024, 4096, 16384), dim: int = 8,
              timings: Timings | None = None,
              **impl) -> list[CheckRow]:
    """T4a across V for Gaussian heads with a random mean (a cone) and a spiked covariance; one row per V and
    quantity, residuals in units of t4a_sigma(V); the tolerance in log units is reported beside the smallest
    predicted |log I| so one can see it is meaningful at every V."""
    configs = [dict(vocab=v, dim=dim) for v in vocabs]
    res = run_instances("T4a", _make_t4a, key, n, configs, timings or Timings(), impl, optimise=True)
    per = len(res["log_z"]) // len(vocabs)
    tol_z, tol_i, tol_bias = 8.0, 12.0, 6.0
    rows = []
    for i, vocab in enumerate(vocabs):
        part = {k: v[i * per:(i + 1) * per] for k, v in res.items()}
        sigma = t4a_sigma(vocab)
        note = (f"V={vocab}: tolerance {tol_i * sigma:.3g} in log I vs predicted |log I| ≥ "
                f"{part['signal'].min():.3g} (median {np.median(part['signal']):.3g})")
        # The mean signed error over all instances: at small V one instance's noise hides a missing ½cᵀΣc
        # (≤ 0.3), the mean over `per` instances does not (its noise is σ_V/√per).
        bias = abs(float(np.mean(part["bias"]))) * math.sqrt(per)
        rows.append(row("T4a", f"mean of log Z(c) - closed form ≈ 0, V={vocab}", "σ_V/√instances", [bias], tol_bias))
        rows.append(row("T4a", f"log Z(c) vs log V + μᵀc + ½cᵀΣc, V={vocab}", "σ_V", part["log_z"], tol_z))
        rows.append(row("T4a", f"log partition_isotropy(Φ) vs closed form, V={vocab}", "σ_V", part["log_i"], tol_i,
                        note))
    return rows


# --------------------------------------------------------------------------------------------- T4b

def affine_fit_residual(y: ArrayLike, c: ArrayLike) -> jax.Array:
    """Residuals of the least-squares affine fit of each column of y on c (via QR of [1, c]).
    y: [m, k], c: [m, d] -> [m, k]"""
    design = jnp.concatenate([jnp.ones((c.shape[0], 1), c.dtype), c], axis=1)
    q, _ = jnp.linalg.qr(design)
    return y - q @ (q.T @ y)


def t4b_affine(phi: ArrayLike, c: ArrayLike, *, log_probs: Callable = head.log_probs,
               log_partition: Callable = head.log_partition) -> dict[str, jax.Array]:
    """T4b for one head and m contexts c [m, d]: log p(w|c) = φ_wᵀc - log Z(c) against the reference formula;
    the least-squares affine fit of log p(w|·) on c leaves, for every w, exactly the residual of fitting -log Z
    (the affine part φ_wᵀc is fitted exactly); and its RMS is ≤ RMS(log Z - mean) ≤ ε_Z = max|log Z - mean|."""
    e = eps()
    z = c @ phi.T
    lp = log_probs(phi, c)
    log_z = log_partition(phi, c)
    unit = e * (jnp.max(jnp.abs(z)) + 1.0)
    res_p = affine_fit_residual(lp, c)
    res_z = affine_fit_residual(log_z[:, None], c)
    centred = log_z - log_z.mean()
    eps_z = jnp.max(jnp.abs(centred))
    rms_fit = jnp.sqrt(jnp.max(jnp.mean(res_p**2, axis=0)))
    rms_z = jnp.sqrt(jnp.mean(centred**2))
    lp_var = jnp.mean((lp - lp.mean(axis=0)) ** 2)
    return {
        "value": jnp.max(jnp.abs(lp - reference_log_softmax(z))) / unit,
        "log_z": jnp.max(jnp.abs(log_z - (z.max(-1) + jnp.log(jnp.exp(z - z.max(-1, keepdims=True)).sum(-1))))) / unit,
        "same_residual": jnp.max(jnp.abs(res_p + res_z)) / (unit * math.sqrt(c.shape[0])),
        "bound": jnp.maximum(rms_fit - jnp.minimum(rms_z, eps_z), 0.0) / (unit * math.sqrt(c.shape[0])),
        "eps_z": eps_z,
        "r2": 1.0 - jnp.mean(res_p**2) / lp_var,
    }


def _make_t4b(vocab, dim, contexts, **impl):
    def one(k):
        ks = jax.random.split(k, 5)
        u = normal(ks[0], (dim,))
        u = u / jnp.linalg.norm(u)
        phi = uniform(ks[1], (), 0.0, 1.0) * u + normal(ks[2], (vocab, dim)) / math.sqrt(dim)
        spread = uniform(ks[3], (), 0.3, 3.0) / math.sqrt(dim)
        return t4b_affine(phi, spread * normal(ks[4], (contexts, dim)) * math.sqrt(dim), **impl)
    return one


T4B_CONFIGS = [dict(vocab=64, dim=8, contexts=64), dict(vocab=512, dim=16, contexts=128)]


def check_t4b(key: jax.Array, n: int = 1000, timings: Timings | None = None, configs: list[dict] | None = None,
              **impl) -> list[CheckRow]:
    """T4b on heads with a cone of random strength and contexts of random spread (ε_Z from ~0 to several)."""
    res = run_instances("T4b", _make_t4b, key, n, configs or T4B_CONFIGS, timings or Timings(), impl)
    u = "eps·(|z|∞+1)"
    note = (f"ε_Z from {res['eps_z'].min():.2g} to {res['eps_z'].max():.2g}; R² of the affine fit from "
            f"{res['r2'].min():.3g} to {res['r2'].max():.3g}")
    return [
        row("T4b", "RMS of affine-fit residual ≤ RMS(log Z - mean) ≤ ε_Z", "excess/(" + u + "·√m)", res["bound"],
            1.0, note),
        row("T4b", "affine-fit residual of log p(w|·) = that of -log Z, ∀w", u + "·√m", res["same_residual"], 16.0),
        row("T4b", "log p(w|c) = φ_wᵀc - log Z(c) (reference)", u, res["value"], 2.0),
        row("T4b", "log Z(c) = m + log Σexp(z - m) (reference)", u, res["log_z"], 2.0),
    ]

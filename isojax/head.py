"""The log-linear softmax LM head (docs/theory.md T1, T2): logits, log-probabilities, log Z, Fisher, cross-entropy.

Shapes: output embeddings `phi: [V, d]`, optional bias `b: [V]`, contextual embeddings `h: [..., d]`
(any leading batch axes). Everything that exponentiates goes through `logsumexp`, so logits in the
thousands are fine in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from isojax import _validate as V

__all__ = ["centred_head", "conditional_mean", "cross_entropy", "expected_value", "fisher", "grad_h", "grad_logits",
           "grad_phi", "kl_divergence", "log_partition", "log_probs", "logits", "probs"]


def _head(phi, h, b=None):
    phi = V.array("phi", phi, ndim=2, what="[V, d]")
    h = V.array("h", h, ndim=(1, 2, 3, 4), what="[..., d]")
    V.same_size("phi", phi.shape[1], "h", h.shape[-1], "the embedding dimension d")
    if b is not None:
        b = V.array("b", b, ndim=1, what="[V]")
        V.same_size("phi", phi.shape[0], "b", b.shape[0], "the vocabulary size V")
    return phi, h, b


@jax.jit
def _logits(phi, h, b):
    z = h @ phi.T
    return z if b is None else z + b


def logits(phi: ArrayLike, h: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """z = Φh + b. phi: [V, d], h: [..., d], b: [V] or None -> [..., V]."""
    return _logits(*_head(phi, h, b))


def log_partition(phi: ArrayLike, h: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """log Z(h) = logsumexp(Φh + b). -> [...]"""
    return jax.nn.logsumexp(logits(phi, h, b), axis=-1)


def log_probs(phi: ArrayLike, h: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """log p(w|h) = z_w - log Z(h). -> [..., V]"""
    return jax.nn.log_softmax(logits(phi, h, b), axis=-1)


def probs(phi: ArrayLike, h: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """p(w|h) = softmax(Φh + b). -> [..., V]"""
    return jax.nn.softmax(logits(phi, h, b), axis=-1)


def cross_entropy(phi: ArrayLike, h: ArrayLike, y: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """ℓ = -log p(y|h). y: integer ids [...] matching h's batch axes -> [...]"""
    phi, h, b = _head(phi, h, b)
    y = V.token_ids("y", y, phi.shape[0])
    if y.shape != h.shape[:-1]:
        raise ValueError(f"y must have shape {tuple(h.shape[:-1])} (h's batch axes), got shape {tuple(y.shape)}")
    lp = log_probs(phi, h, b)
    return -jnp.take_along_axis(lp, y[..., None], axis=-1)[..., 0]


def conditional_mean(phi: ArrayLike, h: ArrayLike, values: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """ŷ = Σ_w v_w p(w|h), the model's conditional-mean forecast (T5). values: [V] -> [...]"""
    phi, h, b = _head(phi, h, b)
    values = V.array("values", values, ndim=1, what="[V]")
    V.same_size("phi", phi.shape[0], "values", values.shape[0], "the vocabulary size V")
    return expected_value(log_probs(phi, h, b), values)


def expected_value(log_p: ArrayLike, values: ArrayLike) -> jax.Array:
    """Σ_w v_w p_w from log-probabilities. log_p: [..., V], values: [V] -> [...]"""
    return jnp.exp(log_p) @ values


def fisher(phi: ArrayLike, h: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """F(h) = Φᵀ(diag p - p pᵀ)Φ = Cov_{w~p}[φ_w] (T1c). -> [..., d, d]"""
    phi, h, b = _head(phi, h, b)
    p = probs(phi, h, b)
    # Centre under p first: Φᵀ diag(p) Φ - (Φᵀp)(Φᵀp)ᵀ cancels catastrophically when φ share a large mean.
    centred = phi - (p @ phi)[..., None, :]
    return jnp.einsum("...v,...vi,...vj->...ij", p, centred, centred)


def centred_head(phi: ArrayLike) -> jax.Array:
    """Φ_c = Φ - 1φ̄ᵀ, the head with its mean output embedding removed. [V, d] -> [V, d]"""
    phi = V.array("phi", phi, ndim=2, what="[V, d]")
    return phi - phi.mean(axis=0)


def kl_divergence(log_p: ArrayLike, log_q: ArrayLike) -> jax.Array:
    """KL(p ‖ q) from log-probabilities along the last axis. [..., V], [..., V] -> [...]

    -inf entries are zero probabilities (a term with p_w = 0 contributes 0, also where log q_w = -inf). NaN
    entries are an error: a ValueError when the inputs are concrete, and a NaN result for that row under jit
    (never a silent 0).
    """
    log_p = V.array("log_p", log_p, finite=False)
    log_q = V.array("log_q", log_q, finite=False)
    if log_p.shape != log_q.shape:
        raise ValueError(f"log_p and log_q must have the same shape, got {tuple(log_p.shape)} and {tuple(log_q.shape)}")
    for name, x in (("log_p", log_p), ("log_q", log_q)):
        if not isinstance(x, jax.core.Tracer) and np.isnan(np.asarray(x)).any():
            raise ValueError(f"{name} has NaN values (shape {tuple(x.shape)})")
    p = jnp.exp(log_p)
    kl = jnp.sum(jnp.where(p > 0, p * (log_p - log_q), 0.0), axis=-1)
    # Under jit the check above cannot run: a NaN anywhere in a row makes that row's KL NaN.
    return jnp.where(jnp.any(jnp.isnan(log_p) | jnp.isnan(log_q), axis=-1), jnp.nan, kl)


# Closed-form gradients of ℓ = -log p(y|h) (T2), written out so autodiff can check them.

def grad_logits(phi: ArrayLike, h: ArrayLike, y: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """∇_z ℓ = p - e_y (T2a); sums to 0, so gradients never move the mean logit. -> [..., V]"""
    phi, h, b = _head(phi, h, b)
    y = V.token_ids("y", y, phi.shape[0])
    return probs(phi, h, b) - jax.nn.one_hot(y, phi.shape[0], dtype=h.dtype)


def grad_h(phi: ArrayLike, h: ArrayLike, y: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """∇_h ℓ = Φ_cᵀ(p - e_y) (T2b): the mean output embedding φ̄ drops out. -> [..., d]"""
    return grad_logits(phi, h, y, b) @ centred_head(phi)


def grad_phi(phi: ArrayLike, h: ArrayLike, y: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    """∇_Φ ℓ = (p - e_y) hᵀ (T2c); its rows sum to 0. -> [..., V, d]"""
    g = grad_logits(phi, h, y, b)
    return g[..., :, None] * jnp.asarray(h)[..., None, :]

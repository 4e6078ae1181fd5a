"""A log-linear teacher whose next-token law is known exactly: p*(w | s) = softmax(Φ* g(s)).

Tokens are V ordered numeric bins with values v_w in [-1, 1]. The context feature g(s) depends on the last
`order` tokens through fixed random embeddings: g(s) = Σ_j E_j[s_{-j}] (a d-vector). The isotropy of Φ* is a
knob (isotropic, cone, spiked), so T5's guarantee can be checked against a model trained on its samples.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from isojax import _validate as V
from isojax import distributions, head

__all__ = ["Teacher", "make_teacher", "features", "log_p_star", "sample_sequences", "sample_series",
           "stationary_entropy_rate", "excess_cross_entropy"]


@struct.dataclass
class Teacher:
    """The teacher's law: head Φ* [V, d], context embeddings [order, V, d] and token values [V]."""

    phi: jax.Array  # [V, d] teacher head Φ*
    context: jax.Array  # [order, V, d] embeddings of the last `order` tokens
    values: jax.Array  # [V] numeric value of each token

    @property
    def vocab(self) -> int:
        return self.phi.shape[0]

    @property
    def order(self) -> int:
        return self.context.shape[0]


def make_teacher(key: jax.Array, vocab: int = 32, dim: int = 16, order: int = 2, family: str = "gaussian",
                 knob: float = 0.0, temperature: float = 1.5) -> Teacher:
    """A teacher with head rows from an embedding family at anisotropy `knob` (0 = isotropic)."""
    k1, k2 = jax.random.split(key)
    phi = distributions.sample(family, k1, vocab, dim, knob) * temperature / math.sqrt(dim)
    # smooth dependence on the previous values: nearby bins get nearby context embeddings
    base = jax.random.normal(k2, (order, 3, dim), V.float_dtype())
    values = jnp.linspace(-1.0, 1.0, vocab, dtype=V.float_dtype())
    feats = jnp.stack([values, values**2, jnp.sin(3 * values)], axis=1)  # [V, 3]
    context = jnp.einsum("vf,ofd->ovd", feats, base) / math.sqrt(order)
    return Teacher(phi, context, values)


def features(teacher: Teacher, prev: jax.Array | np.ndarray) -> jax.Array:
    """g(s) from the last `order` tokens prev: [..., order] (most recent last) -> [..., d]"""
    idx = prev[..., ::-1]  # j = 0 is the most recent token
    return sum(teacher.context[j][idx[..., j]] for j in range(teacher.order))


def log_p_star(teacher: Teacher, prev: jax.Array | np.ndarray) -> jax.Array:
    """log p*(· | s) for contexts whose last tokens are prev [..., order]. -> [..., V]"""
    return head.log_probs(teacher.phi, features(teacher, prev))


def sample_sequences(key: jax.Array, teacher: Teacher, count: int, length: int) -> jax.Array:
    """count token sequences of the given length (the first `order` tokens uniform). -> [count, length]"""
    k0, k1 = jax.random.split(key)
    start = jax.random.randint(k0, (count, teacher.order), 0, teacher.vocab)

    def step(prev, k):
        nxt = jax.random.categorical(k, log_p_star(teacher, prev))
        return jnp.concatenate([prev[:, 1:], nxt[:, None]], axis=1), nxt

    _, rest = jax.lax.scan(step, start, jax.random.split(k1, length - teacher.order))
    return jnp.concatenate([start, rest.T], axis=1)


def sample_series(key: jax.Array, teacher: Teacher, count: int, length: int) -> jax.Array:
    """count numeric series: the values v_w of sampled token sequences. -> [count, length] in [-1, 1]"""
    return teacher.values[sample_sequences(key, teacher, count, length)]


def stationary_entropy_rate(teacher: Teacher, iterations: int = 500) -> jax.Array:
    """Exact entropy rate H = Σ_s π(s) H(p*(·|s)) of the order-m Markov chain (π by power iteration)."""
    states = jnp.stack(jnp.meshgrid(*[jnp.arange(teacher.vocab)] * teacher.order, indexing="ij"), -1)
    states = states.reshape(-1, teacher.order)  # [V^m, m]
    lp = log_p_star(teacher, states)  # [V^m, V]
    ent = -jnp.sum(jnp.exp(lp) * lp, axis=-1)
    # transition: state (a, ..., b) -> (..., b, w) with prob p*(w|state)
    nxt_index = (states[:, 1:] @ (teacher.vocab ** jnp.arange(teacher.order - 2, -1, -1))
                 if teacher.order > 1 else jnp.zeros(states.shape[0], int))
    pi = jnp.full((states.shape[0],), 1.0 / states.shape[0], lp.dtype)

    def power(pi, _):
        mass = pi[:, None] * jnp.exp(lp)  # [S, V]
        new_states = nxt_index[:, None] * teacher.vocab + jnp.arange(teacher.vocab)[None, :]
        return jnp.zeros_like(pi).at[new_states.ravel()].add(mass.ravel()), None

    pi, _ = jax.lax.scan(power, pi, None, length=iterations)
    return jnp.sum(pi * ent)


def excess_cross_entropy(teacher: Teacher, sequences: jax.Array | np.ndarray,
                         model_log_probs: jax.Array | np.ndarray) -> jax.Array:
    """ε = E_s KL(p*(·|s) ‖ p_f(·|s)) over the contexts of `sequences` [n, T]; model_log_probs: [n, T, V]
    giving log p_f(· | s_{<t}) at every position. Positions t ≥ order are used. -> []"""
    prev = jnp.stack([sequences[:, t - teacher.order:t] for t in range(teacher.order, sequences.shape[1])], 1)
    lp_star = log_p_star(teacher, prev)  # [n, T - m, V]
    return jnp.mean(head.kl_divergence(lp_star, model_log_probs[:, teacher.order:]))

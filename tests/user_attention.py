"""Attention variants written the way a user would, for `isojax check --impl tests/user_attention.py:alibi`.

Each object gives the functions T3 runs on (forward, backward, attend) and the statement's parameters: the
score scale (`score_scale`, a number or a function of d_k; default 1/√d_k) and an additive score bias that does
not depend on the keys' content (`score_bias(heads, length) -> [H, T, T]`; default none).
"""

from types import SimpleNamespace

import jax.numpy as jnp

from isojax import attention as att


def alibi_bias(heads, length):
    """ALiBi (Press et al., 2022): -m_h·|i - j| with the slopes m_h = 2^(-8h/H). -> [H, T, T]"""
    slopes = 2.0 ** (-8.0 * jnp.arange(1, heads + 1) / heads)
    position = jnp.arange(length)
    return -slopes[:, None, None] * jnp.abs(position[:, None] - position[None, :])


def alibi_forward(params, x, causal=False, key_mask=None):
    return att.attention_forward(params, x, causal, key_mask, bias=alibi_bias(params.heads, x.shape[0]))


def alibi_attend(q, k, v, allowed):
    return att.attend(q, k, v, allowed, bias=alibi_bias(q.shape[0], q.shape[1]))


# attention_backward reads the bias and the scale from the cache the forward wrote
alibi = SimpleNamespace(forward=alibi_forward, backward=att.attention_backward, attend=alibi_attend,
                        score_bias=alibi_bias)


def inv_dk_forward(params, x, causal=False, key_mask=None):
    return att.attention_forward(params, x, causal, key_mask, scale=1.0 / params.w_q.shape[-1])


def inv_dk_attend(q, k, v, allowed):
    return att.attend(q, k, v, allowed, scale=1.0 / q.shape[-1])


inv_dk = SimpleNamespace(forward=inv_dk_forward, backward=att.attention_backward, attend=inv_dk_attend,
                         score_scale=lambda d_k: 1.0 / d_k)


def handmade_forward(params, x, causal=False, key_mask=None):
    """A 1/d_k attention written by hand. Its cache leaves out the scale, so attention_backward, reading none,
    differentiates a 1/√d_k attention instead: the kind of mistake the check is for."""
    project = lambda w, b: jnp.einsum("td,hdk->htk", x, w) + (0.0 if b is None else b[:, None, :])
    q, k, v = project(params.w_q, params.b_q), project(params.w_k, params.b_k), project(params.w_v, params.b_v)
    o, a = att.attend(q, k, v, att.attention_mask(x.shape[0], causal, key_mask), scale=1.0 / q.shape[-1])
    y = jnp.einsum("htv,hvd->td", o, params.w_o) + (0.0 if params.b_o is None else params.b_o)
    return y, att.AttentionCache(q, k, v, a, o)


broken = SimpleNamespace(forward=handmade_forward, backward=att.attention_backward, attend=inv_dk_attend,
                         score_scale=lambda d_k: 1.0 / d_k)

"""Forecasting with a trained numeric LM: next-token log-probabilities, sampled continuations under a
tokenizer's grammar, the median forecast of a series, and the one-step conditional mean (docs/theory.md T5)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from isojax import _validate as V
from isojax import head
from isojax import transformer as tf

if TYPE_CHECKING:  # annotations only: importing the data package here is not needed at run time
    from isojax.data.corpus import Corpus, Tokenizer

__all__ = ["next_token_log_probs", "sample_forecast", "conditional_mean_forecast", "nmse", "forecast_series",
           "evaluate_forecasts"]

def next_token_log_probs(params: tf.Params, context: jax.Array, config: tf.Config) -> jax.Array:
    """log p_f(· | context) for the token after `context` [T]; an encoder predicts a MASK appended at the end."""
    if config.causal:
        return jax.nn.log_softmax(tf.forward(params, context, config)[1][-1])
    masked = jnp.concatenate([context, jnp.array([config.vocab - 1], context.dtype)])
    return jax.nn.log_softmax(tf.forward(params, masked, config)[1][-1])


def sample_forecast(key: jax.Array, params: tf.Params, context: jax.typing.ArrayLike, config: tf.Config, steps: int,
                    samples: int = 20, temperature: float = 1.0, allowed: jax.typing.ArrayLike | None = None,
                    grammar: tuple[np.ndarray, np.ndarray] | None = None) -> jax.Array:
    """`samples` sampled continuations of `steps` tokens after context [T] -> [samples, steps] token ids.
    The window slides (keeps the last max_len - 1 tokens). `allowed` [V] bool restricts the sampled tokens;
    `grammar` = (allowed [S, V'], next_state [S, V']) with V' ≤ V (a tokenizer's `grammar()`) restricts them
    by a finite-state rule that starts in state 0, so that e.g. every sampled number has its fixed width."""
    context = jnp.asarray(context)
    width = min(context.shape[0], config.max_len - 1)
    if grammar is None:
        allowed = jnp.ones((config.vocab,), bool) if allowed is None else jnp.asarray(allowed, bool)
        rule, nxt = allowed[None, :], jnp.zeros((1, config.vocab), jnp.int32)
    else:
        if allowed is not None:
            raise ValueError("give allowed or grammar, not both")
        rule, nxt = (np.asarray(g) for g in grammar)
        if rule.ndim != 2 or rule.shape != nxt.shape or rule.shape[1] > config.vocab:
            raise ValueError(f"grammar must be two [S, V'] arrays with V' <= vocab {config.vocab}, got shapes "
                             f"{rule.shape} and {nxt.shape}")
        pad = config.vocab - rule.shape[1]  # tokens beyond the tokenizer's (the MASK) are never sampled
        rule = jnp.asarray(np.pad(rule.astype(bool), ((0, 0), (0, pad))))
        nxt = jnp.asarray(np.pad(nxt.astype(np.int32), ((0, 0), (0, pad))))
    return _sample(key, params, context[-width:], rule, nxt, jnp.asarray(temperature, V.float_dtype()),
                   config=config, steps=steps, samples=samples)


@functools.partial(jax.jit, static_argnames=("config", "steps", "samples"))
def _sample(key, params, context, rule, nxt, temperature, *, config, steps, samples):
    def one(k):
        def step(carry, kk):
            ctx, state = carry
            lp = jnp.where(rule[state], next_token_log_probs(params, ctx, config) / temperature, -jnp.inf)
            tok = jax.random.categorical(kk, lp)
            return (jnp.concatenate([ctx[1:], tok[None].astype(ctx.dtype)]), nxt[state, tok]), tok
        return jax.lax.scan(step, (context, jnp.int32(0)), jax.random.split(k, steps))[1]

    return jax.vmap(one)(jax.random.split(key, samples))


def conditional_mean_forecast(params: tf.Params, context: jax.Array, config: tf.Config,
                              values: jax.Array) -> jax.Array:
    """ŷ = Σ_w v_w p_f(w | context): the one-step conditional-mean forecast (T5). values: [V], NaN = no value."""
    lp = next_token_log_probs(params, context, config)
    has_value = ~jnp.isnan(values)
    # renormalise over the tokens that carry a value
    lp = jnp.where(has_value, lp, -jnp.inf)
    return head.expected_value(jax.nn.log_softmax(lp), jnp.where(has_value, values, 0.0))


def nmse(forecast: npt.ArrayLike, target: npt.ArrayLike) -> float:
    """The study's NMSE: mean((ŷ - y)²) / mean(y²)."""
    forecast, target = np.asarray(forecast, float), np.asarray(target, float)
    if forecast.shape != target.shape:
        raise ValueError(f"forecast and target must have the same shape, got {forecast.shape} and {target.shape}")
    return float(np.mean((forecast - target) ** 2) / max(np.mean(target**2), np.finfo(float).tiny))


def forecast_series(key: jax.Array, params: tf.Params, config: tf.Config, tokenizer: Tokenizer, context: np.ndarray,
                    horizon: int, samples: int = 20, temperature: float = 1.0) -> np.ndarray:
    """Median of `samples` sampled forecasts of a series' next `horizon` values. -> [horizon]"""
    from isojax.data import tokens as tk
    is_bins = isinstance(tokenizer, tk.BinTokenizer)
    if is_bins:
        ids, scale, _ = tokenizer.encode(context)
        steps = horizon
    else:
        ids, scale = tokenizer.encode(context)  # ends with ',': the window ends at a value boundary
        steps = horizon * (tokenizer.digits + 2)  # enough for horizon values with a sign each
    toks = np.asarray(sample_forecast(key, params, jnp.asarray(ids[-(config.max_len - 1):]), config, steps,
                                      samples, temperature, grammar=tokenizer.grammar()))
    # the grammar makes every value complete, so each row decodes to at least `horizon` values
    return np.median(np.stack([tokenizer.decode(row, scale)[:horizon] for row in toks]), axis=0)


def evaluate_forecasts(key: jax.Array, params: tf.Params, config: tf.Config, corpus: Corpus,
                       samples: int = 20) -> float:
    """NMSE of the median sampled forecast over the corpus' held-out series (the study's measure)."""
    if not corpus.contexts:
        raise ValueError("corpus has no held-out series to forecast")
    preds, targets = [], []
    for i, (ctx, tgt) in enumerate(zip(corpus.contexts, corpus.targets)):
        preds.append(forecast_series(jax.random.fold_in(key, i), params, config, corpus.tokenizer, ctx, len(tgt),
                                     samples))
        targets.append(tgt)
    # normalise each series by its context scale so that sets of series with different units average fairly
    scales = [max(np.mean(np.abs(c)), 1e-12) for c in corpus.contexts]
    return nmse(np.concatenate([p / s for p, s in zip(preds, scales)]),
                np.concatenate([t / s for t, s in zip(targets, scales)]))

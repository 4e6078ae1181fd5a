"""Forecasting with a trained numeric LM: next-token log-probabilities, sampled continuations under a
tokenizer's grammar, the model as a forecaster of value paths (`model_forecaster`, what `isojax.forecast`
scores against the baselines), the median forecast of a series, and the one-step conditional mean
(docs/theory.md T5)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from isojax import _validate as V
from isojax import head
from isojax import transformer as tf

if TYPE_CHECKING:  # annotations only: importing the data package here is not needed at run time
    from isojax.data.corpus import Tokenizer

__all__ = ["next_token_log_probs", "sample_forecast", "model_forecaster", "forecast_series",
           "conditional_mean_forecast"]

def next_token_log_probs(params: tf.Params, context: jax.Array, config: tf.Config) -> jax.Array:
    """log p_f(· | context) for the token after `context` [T], from the verified head (`head.log_probs`); an
    encoder predicts a MASK appended at the end."""
    if not config.causal:
        context = jnp.concatenate([context, jnp.array([config.vocab - 1], context.dtype)])
    out = tf.encode(params, context, config)[1]
    return head.log_probs(params.lm_head, out[-1], params.head_bias)


def _grammar_arrays(config: tf.Config, allowed, grammar) -> tuple[jax.Array, jax.Array]:
    """(rule [S, V] bool, next_state [S, V]) of the finite-state rule the sampler follows (one state: `allowed`)."""
    if grammar is None:
        allowed = jnp.ones((config.vocab,), bool) if allowed is None else jnp.asarray(allowed, bool)
        return allowed[None, :], jnp.zeros((1, config.vocab), jnp.int32)
    if allowed is not None:
        raise ValueError("give allowed or grammar, not both")
    rule, nxt = (np.asarray(g) for g in grammar)
    if rule.ndim != 2 or rule.shape != nxt.shape or rule.shape[1] > config.vocab:
        raise ValueError(f"grammar must be two [S, V'] arrays with V' <= vocab {config.vocab}, got shapes "
                         f"{rule.shape} and {nxt.shape}")
    pad = config.vocab - rule.shape[1]  # tokens beyond the tokenizer's (the MASK) are never sampled
    return (jnp.asarray(np.pad(rule.astype(bool), ((0, 0), (0, pad)))),
            jnp.asarray(np.pad(nxt.astype(np.int32), ((0, 0), (0, pad)))))


def sample_forecast(key: jax.Array, params: tf.Params, context: jax.typing.ArrayLike, config: tf.Config, steps: int,
                    samples: int = 20, temperature: float = 1.0, allowed: jax.typing.ArrayLike | None = None,
                    grammar: tuple[np.ndarray, np.ndarray] | None = None) -> jax.Array:
    """`samples` sampled continuations of `steps` tokens after context [T] -> [samples, steps] token ids.
    The window slides (keeps the last max_len - 1 tokens). `allowed` [V] bool restricts the sampled tokens;
    `grammar` = (allowed [S, V'], next_state [S, V']) with V' ≤ V (a tokenizer's `grammar()`) restricts them
    by a finite-state rule that starts in state 0, so that e.g. every sampled number has its fixed width."""
    context = jnp.asarray(context)
    width = min(context.shape[0], config.max_len - 1)
    rule, nxt = _grammar_arrays(config, allowed, grammar)
    return _sample_windows(key[None], params, context[None, -width:], rule, nxt,
                           jnp.asarray(temperature, V.float_dtype()), config=config, steps=steps, samples=samples)[0]


@functools.partial(jax.jit, static_argnames=("config", "steps", "samples"))
def _sample_windows(keys, params, contexts, rule, nxt, temperature, *, config, steps, samples):
    """keys [B], contexts [B, width] -> [B, samples, steps]: each window's samples from its own key, so a
    window's forecast does not depend on the others in its batch."""
    def one(k, context):
        def step(carry, kk):
            ctx, state = carry
            lp = jnp.where(rule[state], next_token_log_probs(params, ctx, config) / temperature, -jnp.inf)
            tok = jax.random.categorical(kk, lp)
            return (jnp.concatenate([ctx[1:], tok[None].astype(ctx.dtype)]), nxt[state, tok]), tok
        return jax.lax.scan(step, (context, jnp.int32(0)), jax.random.split(k, steps))[1]

    def window(k, context):
        return jax.vmap(lambda kk: one(kk, context))(jax.random.split(k, samples))

    return jax.vmap(window)(keys, contexts)


def _encode(tokenizer: Tokenizer, context: np.ndarray) -> tuple[np.ndarray, float]:
    from isojax.data import tokens as tk
    if isinstance(tokenizer, tk.BinTokenizer):
        ids, scale, _ = tokenizer.encode(context)
    else:
        ids, scale = tokenizer.encode(context)  # ends with ',': the window ends at a value boundary
    return np.asarray(ids), scale


def _steps(tokenizer: Tokenizer, horizon: int) -> int:
    """Tokens to sample for `horizon` values: one per value (bins), or enough for the widest value (digits)."""
    from isojax.data import tokens as tk
    return horizon if isinstance(tokenizer, tk.BinTokenizer) else horizon * (tokenizer.digits + 2)


def model_forecaster(params: tf.Params, config: tf.Config, tokenizer: Tokenizer, samples: int = 20,
                     temperature: float = 1.0, batch: int = 8) -> Callable:
    """A trained model as a forecaster for `isojax.forecast.evaluate`: f(key, contexts [W, C], horizon) ->
    sampled value paths [W, samples, horizon]. Each context is tokenized on its own (its own scale); the model
    sees its last max_len - 1 tokens, and window i samples from fold_in(key, i), so its forecast does not depend
    on the batch. Windows run `batch` at a time through one compiled sampler (the last batch padded)."""
    samples, batch = V.positive_int("samples", samples), V.positive_int("batch", batch)
    rule, nxt = _grammar_arrays(config, None, tokenizer.grammar())
    temp = jnp.asarray(temperature, V.float_dtype())

    def forecast(key: jax.Array, contexts: np.ndarray, horizon: int) -> np.ndarray:
        encoded = [_encode(tokenizer, np.asarray(c, np.float64)) for c in contexts]
        width = min(config.max_len - 1, min(len(ids) for ids, _ in encoded))
        ids = np.stack([e[-width:] for e, _ in encoded]).astype(np.int32)
        keys = np.asarray(jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(len(ids))))
        steps = _steps(tokenizer, horizon)
        out = []
        for s in range(0, len(ids), batch):
            chunk_ids, chunk_keys = ids[s:s + batch], keys[s:s + batch]
            fill = batch - len(chunk_ids)  # pad with copies of the first window, dropped below
            chunk_ids = np.concatenate([chunk_ids, np.repeat(chunk_ids[:1], fill, 0)])
            chunk_keys = np.concatenate([chunk_keys, np.repeat(chunk_keys[:1], fill, 0)])
            toks = np.asarray(_sample_windows(chunk_keys, params, chunk_ids, rule, nxt, temp, config=config,
                                              steps=steps, samples=samples))
            out.append(toks[: batch - fill])
        toks = np.concatenate(out)
        # the grammar makes every value complete, so each row decodes to at least `horizon` values
        return np.stack([[tokenizer.decode(row, scale)[:horizon] for row in rows]
                         for rows, (_, scale) in zip(toks, encoded)])

    return forecast


def conditional_mean_forecast(params: tf.Params, context: jax.Array, config: tf.Config,
                              values: jax.Array) -> jax.Array:
    """ŷ = Σ_w v_w p_f(w | context): the one-step conditional-mean forecast (T5). values: [V], NaN = no value."""
    lp = next_token_log_probs(params, context, config)
    has_value = ~jnp.isnan(values)
    # renormalise over the tokens that carry a value
    lp = jnp.where(has_value, lp, -jnp.inf)
    return head.expected_value(jax.nn.log_softmax(lp), jnp.where(has_value, values, 0.0))


def forecast_series(key: jax.Array, params: tf.Params, config: tf.Config, tokenizer: Tokenizer, context: np.ndarray,
                    horizon: int, samples: int = 20, temperature: float = 1.0) -> np.ndarray:
    """Median of `samples` sampled forecasts of a series' next `horizon` values (`model_forecaster` on one
    window). -> [horizon]"""
    paths = model_forecaster(params, config, tokenizer, samples, temperature, batch=1)(
        key, np.asarray(context, np.float64)[None], horizon)
    return np.median(paths[0], axis=0)

"""Forecasting with a trained numeric LM (isojax.models.forecast): sampling under a tokenizer's grammar, the
median forecast of a series, the conditional mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from isojax import transformer as tf
from isojax.models import forecast

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only

KEY = jax.random.PRNGKey(0)


def test_forecasts_slide_past_the_context_and_the_mean_lies_in_the_value_range():
    cfg = tf.Config(vocab=12, d_model=16, heads=2, layers=1, mlp=32, max_len=16)
    params = tf.init(KEY, cfg)
    ctx = jnp.arange(10) % 12
    samples = forecast.sample_forecast(KEY, params, ctx, cfg, steps=20, samples=5)  # slides past max_len
    assert samples.shape == (5, 20) and int(samples.max()) < 12
    values = jnp.concatenate([jnp.array([jnp.nan, jnp.nan]), jnp.linspace(-1, 1, 10)])
    y = float(forecast.conditional_mean_forecast(params, ctx, cfg, values))
    assert -1.0 <= y <= 1.0


def test_digit_forecasts_follow_the_fixed_width_grammar():
    import re

    from isojax.data import tokens

    tok = tokens.DigitTokenizer(precision=1, digits=3)
    cfg = tf.Config(vocab=tok.vocab + 1, d_model=16, heads=2, layers=1, mlp=32, max_len=16)
    params = tf.init(KEY, cfg)  # untrained: left alone it emits any token, MASK and stray separators included
    ids, _ = tok.encode(np.array([1.5, -2.0, 3.25]))
    text = lambda rows: ["".join("0123456789-,M"[t] for t in row) for row in np.asarray(rows).tolist()]
    well_formed = re.compile(r"^(-?\d{3},)*(-?\d{0,3})?$")
    free = text(forecast.sample_forecast(KEY, params, ids, cfg, steps=40, samples=8))
    assert not all(well_formed.match(t) for t in free)  # the check below can fail
    ruled = text(forecast.sample_forecast(KEY, params, ids, cfg, steps=40, samples=8, grammar=tok.grammar()))
    assert all(well_formed.match(t) for t in ruled), ruled
    # and so every sampled path decodes to the full horizon
    path = forecast.forecast_series(KEY, params, cfg, tok, np.array([1.5, -2.0, 3.25, 0.5]), horizon=6, samples=4)
    assert path.shape == (6,) and np.isfinite(path).all()
    with pytest.raises(ValueError, match="grammar must be two"):
        forecast.sample_forecast(KEY, params, ids, cfg, steps=2,
                                 grammar=(np.ones((2, 20), bool), np.zeros((2, 20), int)))

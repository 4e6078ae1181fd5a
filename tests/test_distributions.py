import re

import jax
import numpy as np
import pytest

from isojax import distributions

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("family", sorted(distributions.FAMILIES))
@pytest.mark.parametrize("knob", [float("nan"), float("inf"), -0.5, 1e9])
def test_bad_knobs_name_the_knob_and_the_range(family, knob):
    low, high = distributions.KNOB_RANGE[family]
    message = f"knob must be a finite number in [{low:g}, {high:g}] for family {family!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        distributions.sample(family, KEY, 10, 4, knob)
    with pytest.raises(ValueError, match="knob must be"):
        distributions.FAMILIES[family](KEY, 10, 4, knob)


@pytest.mark.parametrize("family", sorted(distributions.FAMILIES))
def test_the_largest_valid_knob_draws_finite_points(family):
    x = distributions.sample(family, KEY, 50, 8, distributions.KNOB_RANGE[family][1])
    assert np.isfinite(np.asarray(x)).all()


def test_sizes_and_options_are_checked_before_compute():
    with pytest.raises(ValueError, match=r"rotation \[d, d\] = \[60000, 60000\]"):
        distributions.sample("power_law", KEY, 2, 60000)
    with pytest.raises(ValueError, match=r"sample \[n, d\]"):
        distributions.sample("gaussian", KEY, 2**20, 2**12)
    with pytest.raises(ValueError, match="spikes must be at most d = 4"):
        distributions.sample("spiked", KEY, 10, 4, 1.0, spikes=5)
    with pytest.raises(ValueError, match="rank must be an integer >= 1"):
        distributions.sample("subspace", KEY, 10, 4, 1.0, rank=0)
    with pytest.raises(ValueError, match=r"cov must have shape \(3, 3\)"):
        distributions.gaussian_rows(KEY, 5, np.zeros(3), np.eye(2))


def test_traced_knobs_still_vmap():
    batch = jax.vmap(lambda a: distributions.cone(KEY, 20, 4, a))(np.array([0.0, 1.0]))
    assert batch.shape == (2, 20, 4)

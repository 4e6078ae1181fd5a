import jax
import jax.numpy as jnp
import numpy as np
import pytest

from isojax import _validate as V


def test_array_checks_rank_emptiness_and_finiteness():
    with pytest.raises(ValueError, match=r"x must have rank 2 \[n, d\], got shape \(3,\)"):
        V.array("x", np.ones(3), ndim=2, what="[n, d]")
    with pytest.raises(ValueError, match=r"x is empty \(shape \(0, 2\)\)"):
        V.array("x", np.ones((0, 2)))
    with pytest.raises(ValueError, match="x has non-finite values"):
        V.array("x", np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="could not be read"):
        V.array("x", [[1, 2], [3]])
    assert V.array("x", np.arange(3)).dtype == V.float_dtype()


@pytest.mark.parametrize("low", [jnp.float16, jnp.bfloat16])
def test_upcast_low_precision_only_when_asked(low):
    x = jnp.ones(3, low)
    assert V.array("x", x, upcast_low=True).dtype == jnp.float32
    assert V.array("x", x).dtype == low
    assert V.array("x", jnp.ones(3, jnp.float32), upcast_low=True).dtype == jnp.float32


def test_elements_and_real_in():
    V.elements("x", "a [2, 2]", 4)
    with pytest.raises(ValueError, match="x is too large: a big thing would hold 2,147,483,648 elements"):
        V.elements("x", "a big thing", 2**31)
    V.real_in("knob", 1.0, 0.0, 2.0)
    for bad in (np.nan, np.inf, -1.0, 3.0, np.array([1.0, -1.0])):
        with pytest.raises(ValueError, match=r"knob must be a finite number in \[0, 2\]"):
            V.real_in("knob", bad, 0.0, 2.0)
    jax.jit(lambda k: V.real_in("knob", k, 0.0, 2.0) or k)(5.0)  # traced: not checkable, not refused


def test_positive_int_and_token_ids():
    assert V.positive_int("n", np.int64(3)) == 3
    for bad in (0, True, 2.0, "3"):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            V.positive_int("n", bad)
    with pytest.raises(ValueError, match=r"ids outside \[0, 4\)"):
        V.token_ids("y", jnp.array([0, 4]), 4)

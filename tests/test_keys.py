import subprocess
import sys

import jax
import numpy as np
import pytest

from isojax.runs import keys
from tests.conftest import subprocess_env

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only


def test_digest_is_stable_across_processes_and_key_order():
    config = {"b": [1, 2.5], "a": "x"}
    here = keys.digest(config)
    there = subprocess.run([sys.executable, "-c",
                            "from isojax.runs import keys; print(keys.digest({'a': 'x', 'b': [1, 2.5]}))"],
                           capture_output=True, text=True, check=True, env=subprocess_env()).stdout.strip()
    assert here == there and len(here) == 16
    assert keys.digest({"a": "y", "b": [1, 2.5]}) != here


def test_named_key_is_fold_in_of_crc32():
    import zlib

    base = jax.random.PRNGKey(3)
    expected = jax.random.fold_in(base, zlib.crc32(b"gp:rbf_0.1|bins|decoder") % 2**31)
    np.testing.assert_array_equal(keys.named_key(base, "gp:rbf_0.1|bins|decoder"), expected)
    assert keys.name_to_int("teacher", 1000) == zlib.crc32(b"teacher") % 1000

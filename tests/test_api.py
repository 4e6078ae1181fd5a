"""The public API a reader can trust: every public module declares `__all__`; every public function and class
in it has a docstring, and every public function annotates its parameters and its return value."""

import importlib
import inspect
import subprocess
import sys

import pytest

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only

sys.path.insert(0, str(__import__("tests.conftest", fromlist=["ROOT"]).ROOT / "docs"))
from make_api import public_modules  # noqa: E402

from tests.conftest import subprocess_env  # noqa: E402

MODULES = public_modules()


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_all_and_documents_it(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no docstring"
    if name in ("isojax", "isojax.data", "isojax.runs") or name.endswith("__main__"):
        return  # packages that only group modules
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    for item in module.__all__:
        obj = getattr(module, item)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, f"{name}.{item} has no docstring"
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            missing = [p for p, v in sig.parameters.items() if v.annotation is inspect.Parameter.empty
                       and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
            assert not missing, f"{name}.{item}: parameters {missing} are not annotated"
            assert sig.return_annotation is not inspect.Signature.empty, f"{name}.{item}: no return annotation"


def test_import_isojax_leaves_the_environment_alone_and_entry_points_set_the_xla_flag():
    code = ("import os; before = dict(os.environ); import isojax, isojax.models, isojax.cli; after = dict(os.environ); "
            "print(sorted(k for k in set(after) | set(before) if before.get(k) != after.get(k)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=subprocess_env(XLA_FLAGS="")).stdout.strip()
    assert out == "[]"
    configure = ("import os; from isojax.runs import runtime; runtime.configure_xla(); "
                 "print(repr(os.environ['XLA_FLAGS']))")
    out = subprocess.run([sys.executable, "-c", configure], capture_output=True, text=True, check=True,
                         env=subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")).stdout.strip()
    assert out == "'--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false'"
    kept = subprocess.run([sys.executable, "-c", configure], capture_output=True, text=True, check=True,
                          env=subprocess_env(XLA_FLAGS="", ISOJAX_KEEP_XLA_FLAGS="1")).stdout.strip()
    assert kept == "''"  # the user's own flags kept
    # the command sets it too (in its own process: `isojax --version` exits before any JAX computation)
    cli = ("import os, sys; from isojax import cli\ntry:\n    cli.main(['--version'])\nexcept SystemExit:\n"
           "    print(repr(os.environ['XLA_FLAGS']), file=sys.stderr)")
    err = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True, env=subprocess_env(XLA_FLAGS=""))
    assert err.stderr.strip().splitlines()[-1] == "'--xla_cpu_multi_thread_eigen=false'"


def test_configure_xla_after_jax_started_warns():
    code = ("import warnings, jax; jax.numpy.zeros(1).block_until_ready(); from isojax.runs import runtime\n"
            "with warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n"
            "    runtime.configure_xla()\nprint(len(w), 'after JAX started' in str(w[0].message) if w else '')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=subprocess_env(XLA_FLAGS="")).stdout.strip()
    assert out == "1 True"

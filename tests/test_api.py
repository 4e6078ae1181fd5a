"""The public API a reader can trust: every public module declares `__all__`; every public function and class
in it has a docstring, and every public function annotates its parameters and its return value."""

import importlib
import inspect
import subprocess
import sys

import pytest

sys.path.insert(0, str(__import__("tests.conftest", fromlist=["ROOT"]).ROOT / "docs"))
from make_api import public_modules  # noqa: E402

from tests.conftest import subprocess_env  # noqa: E402

MODULES = public_modules()


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_all_and_documents_it(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no docstring"
    if name in ("isojax", "isojax.data") or name.endswith("__main__"):
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


def test_import_isojax_sets_only_the_documented_xla_flag():
    code = ("import os; before = dict(os.environ); import isojax; after = dict(os.environ); "
            "print(sorted(k for k in after if before.get(k) != after[k]), after.get('XLA_FLAGS'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=subprocess_env(XLA_FLAGS="")).stdout.strip()
    assert out == "['XLA_FLAGS'] --xla_cpu_multi_thread_eigen=false"
    kept = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=subprocess_env(XLA_FLAGS="", ISOJAX_KEEP_XLA_FLAGS="1")).stdout.strip()
    assert kept == "[]"  # XLA_FLAGS left empty

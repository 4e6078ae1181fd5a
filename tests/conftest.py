"""Shared test settings: the suite runs once in float32 and once with JAX_ENABLE_X64=1 (see .ci/run)."""

import os
import tempfile
from pathlib import Path

# The suite is bound by XLA compilation: hundreds of small programs, most run once on tiny inputs. For the tests
# only (set here, before JAX starts, and inherited by the subprocesses the tests start):
# - LLVM's optimisation passes are off (XLA's backend optimisation level 0). This changes the rounding of some
#   operations, never what is computed; the library, the experiments and the benchmarks run at XLA's default
#   (and `isojax check` at this level for its check programs, `harness.FAST_COMPILE`, except T2c's and T4a's).
# - JAX's persistent compilation cache, in one folder per user, so the two xdist workers and the subprocesses
#   compile a program once between them; keyed by program, options and versions, it never serves a stale one.
# ISOJAX_TEST_OPTIMISE=1 runs the suite with XLA's defaults instead.
# The flags every isojax entry point sets (`isojax.runs.runtime.configure_xla`), before JAX starts.
from isojax.runs import runtime  # noqa: E402  (imports no JAX)

runtime.configure_xla()
if os.environ.get("ISOJAX_TEST_OPTIMISE") != "1":
    if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                          str(Path(tempfile.gettempdir()) / f"isojax-tests-jax-cache-{os.getuid()}"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Derandomized: every run draws the same examples (a fixed seed per test), so a pass cannot be luck and a failure
# reproduces; tests on cheap numpy code ask for more examples with @settings(max_examples=...), and every failure
# hypothesis ever found is kept as an explicit @example. No example database: nothing depends on past runs.
settings.register_profile("isojax", max_examples=30, deadline=None, derandomize=True, database=None)
settings.load_profile("isojax")

X64 = bool(jax.config.jax_enable_x64)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


def tol(f32: float, f64: float) -> float:
    """Pick the tolerance for the dtype the suite runs in."""
    return f64 if X64 else f32


def dtype():
    return jnp.float64 if X64 else jnp.float32


ROOT = Path(__file__).resolve().parents[1]


def subprocess_env(**extra: str) -> dict:
    """The environment for a test's subprocess: isojax importable from this checkout (installed or not)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def device_env(devices: int, **extra: str) -> dict:
    """`subprocess_env` for a process that sees `devices` CPU devices (fixed when JAX starts), with the XLA
    flags an entry point sets."""
    return subprocess_env(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {runtime.EIGEN_FLAG}", **extra)


# What XLA's CPU runtime reports when two processes' gloo endpoints fail to connect within gloo's fixed 30 s (not
# settable from JAX): an error raised to Python, or gloo's own exception escaping a runtime thread (the process
# aborts). Seen in CI's float32 pass and on a loaded development machine, with another test running beside the
# two processes on 2 cores; it is the transport failing, never a wrong result.
GLOO_CONNECT_FAILURES = ("Gloo context initialization failed", "gloo::IoException", "gloo/transport/tcp/")


def run_cluster(start, timeout: float = 600, attempts: int = 2):
    """Start a local cluster with `start()` (a list of subprocess.Popen, stdout and stderr piped, on a fresh
    port each call) and wait for it: -> (return codes, [(stdout, stderr)]). Starts it once more only when a
    process failed with one of the gloo transport failures above (the tests' assertions still judge the run that
    finished); any other failure is returned as it is."""
    for attempt in range(attempts):
        procs = start()
        outs = [p.communicate(timeout=timeout) for p in procs]
        codes = [p.returncode for p in procs]
        if codes == [0] * len(procs) or not any(m in err for _, err in outs for m in GLOO_CONNECT_FAILURES):
            break
        print(f"attempt {attempt + 1}: gloo could not connect the processes; starting them again")
    return codes, outs

"""Every Python block of the README runs as pasted, and every tutorial in docs/tutorials runs as pasted (its
python and bash blocks in order, in a fresh folder); docs/api.md is up to date with the docstrings."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, subprocess_env

# Run in the float32 pass only (README: "Tests"): end to end, with no dtype-specific path of its own.
pytestmark = pytest.mark.float32_only

FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(path: Path, kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(kind, body) for kind, body in FENCE.findall(path.read_text()) if kind in kinds]


def run_blocks(found: list[tuple[str, str]], cwd: Path) -> str:
    """Run the blocks in order: the python blocks of a page share one session, as when pasted one after another
    (so the session so far is run again before each bash block that follows python); `isojax`, `python
    experiments/` and `python` in bash blocks run from this checkout. -> everything they printed."""
    python, pending, printed = [], False, []

    def run(cmd, what):
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env=subprocess_env())
        assert done.returncode == 0, f"{what} failed:\n--- stderr ---\n{done.stderr[-3000:]}"
        printed.append(done.stdout)

    for kind, body in found:
        if kind == "python":
            python.append(body)
            pending = True
            continue
        if pending:
            run([sys.executable, "-c", "\n".join(python)], "python blocks")
            pending = False
        script = re.sub(r"(?m)^isojax ", f"{sys.executable} -m isojax.cli ", body)
        script = script.replace("python experiments/", f"{sys.executable} {ROOT}/experiments/")
        script = re.sub(r"(?m)^python ", f"{sys.executable} ", script)  # the reader's own scripts
        run(["bash", "-euo", "pipefail", "-c", script], f"bash block:\n{body}")
    if pending:
        run([sys.executable, "-c", "\n".join(python)], "python blocks")
    return "".join(printed)


@pytest.mark.parametrize("index", range(len(blocks(ROOT / "README.md", ("python",)))))
def test_readme_python_block_runs_alone_as_pasted(index, tmp_path):
    # each block on its own, in a fresh interpreter and folder: a reader may paste any one of them
    run_blocks([blocks(ROOT / "README.md", ("python",))[index]], tmp_path)


# what a tutorial must leave behind and print, beyond running without an error
EXPECTED = {"own_series": (["work/measures.png"], ["IsoScore", "hidden states of one window: (3, 32, 16)"])}


@pytest.mark.parametrize("page", sorted((ROOT / "docs" / "tutorials").glob("*.md")), ids=lambda p: p.stem)
def test_tutorial_runs_as_pasted(page, tmp_path):
    found = blocks(page, ("python", "bash"))
    assert found, page
    # a fresh folder that looks like the root of a clone: the tiny checkpoints of tests/golden are there
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "golden").symlink_to(ROOT / "tests" / "golden")
    printed = run_blocks(found, tmp_path)
    files, texts = EXPECTED.get(page.stem, ([], []))
    for name in files:
        assert (tmp_path / name).exists(), name
    for text in texts:
        assert text in printed, text


def test_api_reference_is_up_to_date():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "make_api.py"), "--check"], capture_output=True,
                          text=True, timeout=300, env=subprocess_env())
    assert done.returncode == 0, done.stdout + done.stderr

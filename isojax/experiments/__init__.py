"""The study's experiments, one module per figure or claim; `isojax reproduce` runs them all.

Each module has `run(out: Path, quick: bool = True, seed: int = 0, tiny: bool = False) -> list[Path]`: it writes its results
tables to out/results and its figures (PNG + PDF) to out/figures, and returns the figure paths. `tiny`
shrinks every size so the test suite can run the whole pipeline in seconds.
"""

from __future__ import annotations

import importlib

NAMES = [
    "shift_invariance",
    "fisher_spectrum",
    "gradient_structure",
    "partition_function",
    "measures_vs_knob",
    "guarantee",
    "trained_isotropy",
    "intervention",
    "minilm_isotropy",
]


def get(name: str):
    """The experiment module called `name`."""
    if name not in NAMES:
        raise ValueError(f"experiment must be one of {NAMES}, got {name!r}")
    return importlib.import_module(f"isojax.experiments.{name}")

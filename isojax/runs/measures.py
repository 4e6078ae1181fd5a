"""The measures sweep (`isojax sweep`): every isotropy measure over a grid of synthetic families, sizes and
knobs, run by the sweep engine into a resumable table."""

from __future__ import annotations

from pathlib import Path

import jax

from isojax import distributions, isotropy
from isojax.runs import sweep
from isojax.runs.outputs import check_output

__all__ = ["measures_cell", "measures_sweep"]


def measures_cell(key: jax.Array, family: str, n: int, d: int, knob: float | jax.Array,
                  replicate: int = 0) -> dict[str, jax.Array]:
    """One cell of a measures sweep: every isotropy measure of n points in d dimensions from `family`."""
    k1, k2 = jax.random.split(key)
    return isotropy.all_measures(distributions.sample(family, k1, n, d, knob), k2)


def measures_sweep(grid: dict[str, list], out: Path, seed: int = 0, force: bool = False) -> list[dict]:
    """Every isotropy measure over a grid of family, n, d, knob and replicate -> the rows of out (CSV).
    force: replace files derived from out (out.json, out.digests) that isojax did not write."""
    unknown = set(grid.get("family", [])) - set(distributions.FAMILIES)
    if unknown:
        raise ValueError(f"families {sorted(unknown)} unknown; choose from {sorted(distributions.FAMILIES)}")
    out = check_output(out, ".csv")
    return sweep.run_sweep(measures_cell, grid, out, seed=seed, name="isotropy_measures", force=force)

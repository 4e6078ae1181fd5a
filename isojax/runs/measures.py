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


def _families(grid: dict[str, list]) -> dict:
    """The grid's families, each known and with every knob of the grid in its range (checked here: in the
    sweep the knob is traced), and what identifies each: its sampler (`cell_identity`) and knob range."""
    families = grid.get("family", [])
    unknown = sorted(set(families) - set(distributions.FAMILIES))
    if unknown:
        raise ValueError(f"families {unknown} unknown; choose from {sorted(distributions.FAMILIES)} (your own: "
                         "distributions.register_family, or isojax sweep --import FILE)")
    for family in families:
        low, high = distributions.KNOB_RANGE[family]
        bad = [k for k in grid.get("knob", [])
               if isinstance(k, bool) or not isinstance(k, (int, float)) or not low <= k <= high]
        if bad:
            raise ValueError(f"knob {bad[0]!r} is outside the range [{low:g}, {high:g}] of family {family!r}")
    # a registered family's code is not isojax's: its sampler is part of the table's identity
    return {f: {"sampler": sweep.cell_identity(distributions.FAMILIES[f]), "knob_range": distributions.KNOB_RANGE[f]}
            for f in families}


def measures_sweep(grid: dict[str, list], out: Path, seed: int = 0, force: bool = False) -> list[dict]:
    """Every isotropy measure over a grid of family, n, d, knob and replicate -> the rows of out (CSV). A family
    registered with `distributions.register_family` is swept like a built-in one; its sampler's code is part
    of the table's identity, so a table is never resumed by a changed sampler. force: replace files derived
    from out (out.json, out.digests) that isojax did not write."""
    families = _families(grid)
    out = check_output(out, ".csv")
    return sweep.run_sweep(measures_cell, grid, out, seed=seed, name="isotropy_measures",
                           extra_config={"families": families}, force=force)

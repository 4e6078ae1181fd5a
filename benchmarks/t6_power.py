"""Power of the T6 fixed-effects design: could the runs have detected an isotropy effect on NMSE?

Run: PYTHONPATH=. python benchmarks/t6_power.py [RUNS_CSV]   (default full/tables/trained_isotropy_runs.csv)

For each isotropy measure: the OLS slope of log NMSE on the measure with dataset and variant (tokenizer ×
architecture) effects, its classical and cluster-bootstrap (datasets resampled) standard errors, and the
minimum detectable slope (80% power, alpha 0.05) from each; then the power of the same design (the runs' own
x, the fitted residual sd) found by brute-force simulation at the classical MDE, at half and at twice it.
No timing: nothing here depends on the machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)
import numpy as np

from isojax import stats
from isojax.runs import results

MEASURES = ("isoscore_last", "clustered_cosine_last", "isoscore_mean")


def main(path: Path) -> None:
    runs = results.read_table(path)
    y = np.log([r["nmse"] for r in runs])
    factors = {"data": [r["data"] for r in runs], "variant": [f"{r['tokenizer']}|{r['arch']}" for r in runs]}
    print(f"{path}: {len(runs)} runs, {len(set(factors['data']))} datasets, {len(set(factors['variant']))} variants")
    for m in MEASURES:
        x = [r[m] for r in runs]
        fe = stats.fixed_effects(y, x, factors, factors["data"])
        mde_ols, mde_boot = stats.minimum_detectable_effect(fe.se), stats.minimum_detectable_effect(fe.boot_se)
        power = {f: stats.simulated_power(x, factors, f * mde_ols, fe.resid_sd, draws=2000, seed=1)
                 for f in (0.0, 0.5, 1.0, 2.0)}
        print(f"{m}: slope {fe.slope:.3f} [{fe.low:.3f}, {fe.high:.3f}] (cluster bootstrap), se OLS {fe.se:.3f}, "
              f"se bootstrap {fe.boot_se:.3f}; MDE {mde_ols:.3f} (OLS se), {mde_boot:.3f} (bootstrap se); "
              f"per sd of x net of the effects ({fe.x_resid_sd:.4f}): {mde_ols * fe.x_resid_sd:.3f}, "
              f"{mde_boot * fe.x_resid_sd:.3f}")
        print("  simulated power (2,000 draws): " + ", ".join(f"{f:g} x MDE: {p:.3f}" for f, p in power.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("full/tables/trained_isotropy_runs.csv"))

"""The study: one script per figure or claim, run by `isojax reproduce` in this order.

Each script defines SIZES (tiny / quick / full), compute(out, size, seed) -> tables in out/results, and
plot(out, size) -> figures in out/figures drawn from those tables only. Run one with
`python experiments/<name>.py --quick --out DIR` (sizes changed with `--set KEY=VALUE`); see `experiments/runner.py`.
"""

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

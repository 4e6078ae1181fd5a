"""`isojax train`: a numeric LM to a safetensors checkpoint (`isojax.models.commands.train_model`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from isojax.cli._common import DATA_HELP, DROP_HELP, add_force, add_limit
from isojax.models.recipes import ARCHITECTURES

__all__ = ["add", "run"]

def run(args: argparse.Namespace) -> int:
    """Run the subcommand on parsed flags; returns its exit status (a ValueError is a user error)."""
    from isojax.models import commands, ensemble

    evaluation = ensemble.Evaluation(windows=args.windows, samples=args.samples)
    commands.train_model(args.data, args.tokenizer, args.arch, args.layers, args.d_model, args.heads, args.seq_len,
                         args.steps, args.seed, Path(args.out), evaluation=evaluation,
                         drop_bad_rows=args.drop_bad_rows, force=args.force)
    return 0


def add(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """The subcommand's parser, with its flags, help and defaults."""
    tr = sub.add_parser("train", formatter_class=fmt, help="train a numeric LM and save a safetensors checkpoint")
    tr.add_argument("--data", default="gp:rbf_0.1", help=DATA_HELP)
    tr.add_argument("--tokenizer", choices=["bins", "digits"], default="bins", help="numeric tokenizer")
    tr.add_argument("--arch", choices=sorted(ARCHITECTURES), default="decoder",
                    help="architecture: " + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items()))
    tr.add_argument("--layers", type=int, default=None, help="transformer blocks; None: the architecture's")
    tr.add_argument("--d-model", type=int, default=None,
                    help="model width, a multiple of --heads; None: the architecture's")
    tr.add_argument("--heads", type=int, default=None, help="attention heads; None: the architecture's")
    tr.add_argument("--seq-len", type=int, default=64, help="training window, tokens (at least 2)")
    tr.add_argument("--steps", type=int, default=300, help="AdamW steps")
    tr.add_argument("--seed", type=int, default=0, help="PRNG seed")
    tr.add_argument("--windows", type=int, default=32,
                    help="backtest windows over the held-out tails that the forecasts are scored on (about this many)")
    tr.add_argument("--samples", type=int, default=20, help="sampled forecast paths per window")
    tr.add_argument("--out", default="results/model.safetensors",
                    help="checkpoint path OUT.safetensors (written to a uniquely named temporary file beside it, then "
                         "renamed); derived from it: the forecast scores OUT.forecast.csv and its sidecar "
                         "OUT.forecast.csv.json")
    add_force(tr, "OUT.forecast.csv, OUT.forecast.csv.json")
    tr.add_argument("--drop-bad-rows", action="store_true", help=DROP_HELP)
    add_limit(tr, ("data_mb",))
    tr.set_defaults(run=run)

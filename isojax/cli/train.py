"""`isojax train`: a numeric LM to a safetensors checkpoint (`isojax.models.commands.train_model`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from isojax.cli._common import DATA_HELP, DROP_HELP, add_limit
from isojax.models.recipes import ARCHITECTURES

__all__ = ["add", "run"]

def run(args: argparse.Namespace) -> int:
    """Run the subcommand on parsed flags; returns its exit status (a ValueError is a user error)."""
    from isojax.models import commands

    commands.train_model(args.data, args.tokenizer, args.arch, args.layers, args.d_model, args.heads, args.seq_len,
                         args.steps, args.seed, Path(args.out), drop_bad_rows=args.drop_bad_rows)
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
    tr.add_argument("--out", default="results/model.safetensors",
                    help="checkpoint path (.safetensors; written to a uniquely named temporary file beside it, then "
                         "renamed)")
    tr.add_argument("--drop-bad-rows", action="store_true", help=DROP_HELP)
    add_limit(tr, ("data_mb",))
    tr.set_defaults(run=run)

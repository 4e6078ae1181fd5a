"""`isojax embed`: every layer's hidden states of a model on numeric data (`isojax.models.commands.embed_data`:
an isojax checkpoint, a Chronos folder through its own tokenizer, or a text model on serialized series) or on
sentences, one per line (`isojax.pretrained.embed_text`: minilm, a BERT or GPT-2 family folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from isojax.cli._common import DATA_HELP, DROP_HELP, add_limit

__all__ = ["add", "run"]

def run(args: argparse.Namespace) -> int:
    """Run the subcommand on parsed flags; returns its exit status (a ValueError is a user error)."""
    from isojax import pretrained
    from isojax.models import commands

    if args.text is not None:
        if args.data is not None:
            raise ValueError("give --data (numeric series) or --text (sentences), not both")
        hidden = pretrained.embed_text(args.model, Path(args.text), args.pooling, args.max_len, Path(args.out))
    else:
        hidden = commands.embed_data(args.model, args.data or "real:sunspots", args.tokenizer, args.max_sequences,
                                     args.seed, Path(args.out), pooling=args.pooling,
                                     drop_bad_rows=args.drop_bad_rows)
    print(f"hidden states {tuple(hidden.shape)} -> {args.out}")
    return 0


def add(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """The subcommand's parser, with its flags, help and defaults."""
    em = sub.add_parser("embed", formatter_class=fmt,
                        help="per-layer hidden states of a model on numeric data or sentences, saved as .npz")
    em.add_argument("--model", required=True,
                    help="a checkpoint from `isojax train` (.safetensors); a Hugging Face folder (config.json + "
                         "model.safetensors): Chronos (numeric series through its own tokenizer, with --data), "
                         "BERT or GPT-2 family (sentences with --text, or serialized real series with --data); "
                         "or 'minilm' (the shipped all-MiniLM-L6-v2)")
    em.add_argument("--data", default=None, help=DATA_HELP + " (default real:sunspots)")
    em.add_argument("--tokenizer", choices=["bins", "digits"], default=None,
                    help="numeric tokenizer; default and only allowed value: the checkpoint's own")
    em.add_argument("--max-sequences", type=int, default=64,
                    help="with --data: windows (an isojax checkpoint) or series (a folder, minilm) to embed")
    em.add_argument("--text", default=None, help="a text file, one sentence per line (instead of --data)")
    em.add_argument("--pooling", choices=["mean", "first", "last"], default=None,
                    help="with --text, or --data and a Chronos folder: one row per sentence or series "
                         "(mean/first/last token) instead of one per token")
    em.add_argument("--max-len", type=int, default=128, help="with --text: tokens per sentence at most")
    em.add_argument("--seed", type=int, default=0, help="PRNG seed")
    em.add_argument("--out", default="results/hidden.npz",
                    help="output .npz: `hidden` [L+1, rows, d]; with --text also `text_index`, `token_position` "
                         "[rows]; with a Chronos folder `series_index`, `token_position` [rows] and `scale` [series]")
    em.add_argument("--drop-bad-rows", action="store_true", help=DROP_HELP)
    add_limit(em, ("params", "layers", "text_mb", "data_mb"))
    em.set_defaults(run=run)

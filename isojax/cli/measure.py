"""`isojax measure`: every isotropy measure of saved hidden states, per layer
(`isojax.isotropy.files.measure_file`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from isojax.cli._common import add_force, add_limit

__all__ = ["add", "run"]

def run(args: argparse.Namespace) -> int:
    """Run the subcommand on parsed flags; returns its exit status (a ValueError is a user error)."""
    from isojax.isotropy.files import measure_file

    rows, written = measure_file(Path(args.file), Path(args.out), measures=args.measures,
                                 max_points=args.max_points, seed=args.seed, force=args.force)
    print(f"{len(rows)} layers measured -> {', '.join(str(p) for p in written)}")
    return 0


def add(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """The subcommand's parser, with its flags, help and defaults."""
    me = sub.add_parser("measure", formatter_class=fmt,
                        help="every isotropy measure of saved hidden states, per layer -> CSV + JSON + figure")
    me.add_argument("file", help=".npy/.npz/.safetensors holding [n, d] or [layers, n, d], or one array per layer "
                                 "(real numbers; read one layer at a time)")
    me.add_argument("--measures", nargs="+", metavar="NAME", default=None, help="only these measures (default: all)")
    me.add_argument("--max-points", type=int, default=2000, help="points per layer for the clustered cosine")
    me.add_argument("--seed", type=int, default=0, help="PRNG seed (layer l uses fold_in(key(seed), l))")
    me.add_argument("--out", default="results/measures.csv",
                    help="the table OUT.csv; derived from it and written beside it: the sidecar OUT.csv.json and the "
                         "figure OUT.png and OUT.pdf (all four renamed into place together at the end)")
    add_force(me, "OUT.csv.json, OUT.png, OUT.pdf")
    add_limit(me, ("layer_mb", "layers"))
    me.set_defaults(run=run)

"""`isojax plot`: columns of a results table against one another, in the isojax style (`isojax.plots.plot_table`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add", "run"]


def _where(items: list[str] | None) -> dict[str, str]:
    """--where KEY=VALUE ... -> {KEY: VALUE}; a malformed or repeated KEY is a ValueError."""
    where: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--where must be COLUMN=VALUE, got {item!r}")
        if key in where:
            raise ValueError(f"--where names {key!r} twice")
        where[key] = value
    return where


def run(args: argparse.Namespace) -> int:
    """Run the subcommand on parsed flags; returns its exit status (a ValueError is a user error)."""
    from isojax import plots

    written = plots.plot_table(Path(args.table), args.x, args.y, by=args.by, where=_where(args.where),
                               out=args.out)
    print(f"{', '.join(str(p) for p in written)}")
    return 0


def add(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """The subcommand's parser, with its flags, help and defaults."""
    pl = sub.add_parser("plot", formatter_class=fmt,
                        help="draw columns of a results table (e.g. a sweep's) against one another -> .png + .pdf")
    pl.add_argument("table", help="a results table (.csv), e.g. from isojax sweep or isojax measure")
    pl.add_argument("--x", required=True, help="the column on the x axis (numeric), e.g. knob")
    pl.add_argument("--y", required=True, nargs="+", metavar="COLUMN",
                    help="the column(s) to draw (numeric), one panel each, e.g. isoscore cosine")
    pl.add_argument("--by", default=None, help="one line per value of this column, e.g. family")
    pl.add_argument("--where", nargs="+", metavar="COLUMN=VALUE", default=None,
                    help="keep only these rows, e.g. n=500 (a sweep's other parameters must take one value)")
    pl.add_argument("--out", default=None,
                    help="the figure (writes OUT.png and OUT.pdf); default beside the table: TABLE_<y>_vs_<x>")
    pl.set_defaults(run=run)

"""What every subcommand shares: the numeric flags' ranges, checked before anything runs; the one-line usage
error; the help text of --data."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Iterator

__all__ = ["LIMITS", "DATA_HELP", "DROP_HELP", "Parser", "in_range", "check_ranges", "one_line", "os_error",
           "add_limit", "limits", "add_force"]

# Every numeric flag's range (inclusive), checked in one place (`check_ranges`) before anything runs, for the
# flags and for the values of a sweep --config alike. The upper bounds keep a typo from asking for memory no
# machine has (a measures cell holds n × n distances and d × d covariances).
LIMITS: dict[str, tuple[int, int]] = {
    "instances": (1, 1_000_000),
    "seed": (0, 2**30),
    "n": (2, 20_000),
    "d": (2, 8192),
    "replicates": (1, 10_000),
    "replicate": (0, 10_000),
    "layers": (1, 64),
    "d_model": (1, 4096),
    "heads": (1, 256),
    "seq_len": (2, 8192),  # a next-token loss needs at least two tokens per window
    "steps": (1, 10_000_000),
    "max_sequences": (1, 1_000_000),
    "max_len": (2, 4096),
    "max_points": (3, 1_000_000),
    "jobs": (1, 64),
    "windows": (1, 100_000),
    "samples": (1, 10_000),
}

class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def in_range(flag: str, value) -> None:
    low, high = LIMITS[flag]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"--{flag.replace('_', '-')} must be an integer in [{low}, {high}], got {value!r}")


def check_ranges(args) -> None:
    """Every numeric flag of the parsed command line within LIMITS, and every float finite."""
    for flag in LIMITS:
        if getattr(args, flag, None) is not None:
            in_range(flag, getattr(args, flag))
    for knob in getattr(args, "knobs", None) or []:
        if not math.isfinite(knob):
            raise ValueError(f"--knobs must be finite numbers, got {knob!r}")


DATA_HELP = "teacher | gp:<kernel> | real:<name> | csv:PATH[:COLUMN] | npy:PATH (your own series)"
DROP_HELP = ("with --data csv:...: drop the rows with a non-numeric or empty cell in a series column (without it "
             "such a cell is refused, naming its row and column)")


def one_line(message: str) -> str:
    """A message on one line (an error shown to a user is never more)."""
    return " ".join(str(message).split())


def os_error(err: OSError) -> str:
    """An OSError (a full disk, a permission) as one line naming the file."""
    where = f": {err.filename!r}" if err.filename else ""
    return one_line(f"{err.strerror or err}{where}")


def add_limit(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """The --limit NAME=VALUE flag (repeatable), its help listing the bounds `names` with their defaults."""
    from isojax.inputs import BOUNDS

    listed = "; ".join(f"{n}={BOUNDS[n][0]:g}: {BOUNDS[n][1]}" for n in names)
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help=f"raise or lower a bound on what input files may declare ({listed})")


@contextlib.contextmanager
def limits(args: argparse.Namespace) -> Iterator[None]:
    """The --limit values of the parsed command line in force for the block (`isojax.inputs.bounds`)."""
    from isojax import inputs

    values = dict(inputs.parse_bound(text) for text in getattr(args, "limit", None) or [])
    with inputs.bounds(**values):
        yield


def add_force(parser: argparse.ArgumentParser, derived: str) -> None:
    """The --force flag: replace files derived from --out (`derived` lists them) that isojax did not write."""
    parser.add_argument("--force", action="store_true",
                        help=f"replace the files derived from --out ({derived}) even if isojax did not write them "
                             "(without it they are refused)")

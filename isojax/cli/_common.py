"""What every subcommand shares: the numeric flags' ranges, checked before anything runs; the one-line usage
error; the help text of --data."""

from __future__ import annotations

import argparse
import math

__all__ = ["LIMITS", "DATA_HELP", "Parser", "in_range", "check_ranges", "one_line"]

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


def one_line(message: str) -> str:
    """A message on one line (an error shown to a user is never more)."""
    return " ".join(str(message).split())

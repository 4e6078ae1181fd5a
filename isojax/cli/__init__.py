"""The `isojax` command. Each subcommand parses its flags and calls one library function:

  check      every statement of docs/theory.md over random instances  (isojax.theory.run_checks)
  sweep      isotropy measures over a grid of synthetic families        (isojax.runs.measures.measures_sweep)
  train      a numeric LM to a safetensors checkpoint                    (isojax.models.commands.train_model)
  embed      every layer's hidden states of a model on numeric data      (isojax.models.commands.embed_data)
             or on sentences, one per line (--text)                      (isojax.pretrained.embed_text)
  measure    every isotropy measure of saved hidden states, per layer    (isojax.isotropy.files.measure_file)
  plot       columns of a results table against one another              (isojax.plots.plot_table)
  reproduce  every experiment and figure of the study, from a checkout   (experiments/runner.py: reproduce)

A user error (a bad flag, a missing or malformed file, invalid input, a file larger than a --limit) prints one
line and exits 2, never a traceback, and is caught before any compute: nothing is written. A failed write (a
full disk) is one line and exit 2, with no temporary file left. Ctrl-C, SIGTERM and SIGHUP finish or drop the
current step, remove temporary files, release locks, and exit 128 + the signal (130, 143, 129) with one line.
Only regular files are read (a FIFO or a device is refused at once), and every size a file declares is checked
against a bound before anything is allocated: see each command's --limit.
"""

from __future__ import annotations

import argparse
import signal
import sys

import isojax
from isojax.cli import _common, check, embed, measure, plot, reproduce, sweep, train
from isojax.cli._common import LIMITS

__all__ = ["LIMITS", "build_parser", "main"]

SUBCOMMANDS = (check, sweep, train, embed, measure, plot, reproduce)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `isojax` command (every flag with its help and default)."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = _common.Parser(prog="isojax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"isojax {isojax.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add(sub, fmt)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `isojax` command; returns its exit status (0 done, 1 a check failed, 2 a user error or a failed
    write (a full disk), 128 + the signal when interrupted: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP). Usage errors
    exit through SystemExit(2), as argparse does. Sets XLA's CPU flags first
    (`isojax.runs.runtime.configure_xla`), before JAX starts."""
    from isojax.runs import runtime

    runtime.configure_xla()
    from isojax.runs import signals

    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"isojax {args.command}"
    try:
        with signals.raising():  # SIGTERM and SIGHUP unwind like Ctrl-C: temporary files removed, locks released
            _common.check_ranges(args)
            with _common.limits(args):
                return args.run(args)
    except ValueError as err:  # the library's word for invalid input: one line, never a traceback
        print(f"{prog}: error: {_common.one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine's (a full disk, a permission): one line, naming the file
        print(f"{prog}: error: {_common.os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM, SIGHUP: 128 + the signal
        detail = f": {_common.one_line(err)}" if str(err) else ""
        signum = getattr(err, "signum", signal.SIGINT)
        by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        print(f"{prog}: interrupted{by}{detail}", file=sys.stderr)
        return 128 + signum

"""`isojax reproduce --quick` from an empty results folder: wall time and peak memory, for each --jobs given.

Run: python benchmarks/reproduce_quick.py [--jobs 1 2] [--keep DIR]
Each run is the CLI in a fresh process writing into a new temporary folder (so no model cache or table is
reused). Memory is sampled every 0.2 s from /proc: the peak of the SUM of the resident sets of the command and
all its child processes (with --jobs 2 two experiments, each its own JAX runtime, are alive at once), next to
the largest single process. After the runs, the tables of every run are compared byte for byte.
"""

from __future__ import annotations

import argparse
import filecmp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)
from _common import machine


def _tree_rss(root_pid: int) -> tuple[int, int]:
    """(sum, max) of the resident set sizes in bytes of root_pid and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:  # the process ended while being read
            continue
        pid, ppid = int(fields["Pid"]), int(fields["PPid"])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    total, largest, todo = 0, 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        largest = max(largest, rss.get(pid, 0))
        todo += children.get(pid, [])
    return total, largest


def run(jobs: int, out: Path) -> tuple[float, int, int]:
    """Wall seconds, peak summed RSS and peak single-process RSS of one `isojax reproduce --quick`."""
    cmd = [sys.executable, "-m", "isojax.cli", "reproduce", "--quick", "--jobs", str(jobs), "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    peak_sum = peak_one = 0
    while proc.poll() is None:
        total, largest = _tree_rss(proc.pid)
        peak_sum, peak_one = max(peak_sum, total), max(peak_one, largest)
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"reproduce --jobs {jobs} failed with exit {proc.returncode}")
    return seconds, peak_sum, peak_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--keep", help="write the runs under this folder instead of a temporary one")
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="isojax-reproduce-"))
    print("| --jobs | wall (s) | peak memory, all processes (GB) | largest process (GB) |")
    print("|---|---|---|---|")
    outs = []
    for jobs in args.jobs:
        out = base / f"jobs{jobs}"
        seconds, peak_sum, peak_one = run(jobs, out)
        outs.append(out)
        print(f"| {jobs} | {seconds:.0f} | {peak_sum / 1e9:.2f} | {peak_one / 1e9:.2f} |", flush=True)
    tables = sorted(p.name for p in (outs[0] / "results").glob("*.csv"))
    for other in outs[1:]:
        _, differ, missing = filecmp.cmpfiles(outs[0] / "results", other / "results", tables, shallow=False)
        print(f"\ntables of {other.name} vs {outs[0].name}: {len(tables) - len(differ) - len(missing)} of "
              f"{len(tables)} identical" + (f"; differ: {differ + missing}" if differ or missing else ""))


if __name__ == "__main__":
    main()

"""The check table as a reader sees it (`isojax check`): one line per row with its units and the instances it
ran on, then what the instance counts and the notes mean; and the same as JSON."""

from __future__ import annotations

import dataclasses
import math

from isojax.theory.harness import CheckReport, CheckRow

__all__ = ["format_report", "report_json"]


def _number(x: float) -> str:
    return "n/a" if isinstance(x, float) and math.isnan(x) else f"{x:.3g}"


def format_report(report: CheckReport, dtype: str, seconds: float | None = None) -> str:
    """The table: statement, what is compared, units, worst residual, tolerance, margin, instances and verdict
    per row; rows that test none of an `--impl` object's functions read "n/a". Below it: why a row ran on
    fewer (or other) instances than asked for, the notes, and a summary line."""
    rows = list(report)
    width = max(len(r.compares) for r in rows)
    units = max(len(r.units) for r in rows)
    lines = [f"{'stmt':5} {'compares':{width}} {'units':{units}} {'max residual':>12} {'tolerance':>10} "
             f"{'margin':>8} {'instances':>9}  pass"]
    scopes: dict[str, list[str]] = {}
    for r in rows:
        mark = ""
        if r.scope or (r.applicable and r.instances != report.requested):
            scopes.setdefault(r.scope or f"{r.instances} instances", []).append(r.statement)
            mark = "*"
        verdict = "n/a" if not r.applicable else "yes" if r.passed else "NO"
        lines.append(f"{r.statement:5} {r.compares:{width}} {r.units:{units}} {_number(r.max_residual):>12} "
                     f"{_number(r.tolerance):>10} {_number(r.margin) if r.applicable else 'n/a':>8} "
                     f"{str(r.instances) + mark:>9}  {verdict}")
    if scopes:
        lines += ["", f"* instances other than the {report.requested} asked for (each check splits them over its "
                      "shape configurations):"]
        lines += [f"  {', '.join(dict.fromkeys(stmts))}: {scope}" for scope, stmts in scopes.items()]
    notes = [r for r in rows if r.note]
    if notes:
        lines += ["", "notes (information, not verdicts):"]
        lines += [f"  {r.statement}: {r.note}" for r in notes]
    applicable = [r for r in rows if r.applicable]
    failed = [r for r in applicable if not r.passed]
    skipped = len(rows) - len(applicable)
    timing = "" if seconds is None else (
        f"; {seconds:.1f} s in all; summed over the checks (which overlap on threads): "
        f"{report.compile_seconds:.1f} s compiling, {report.run_seconds:.1f} s running the compiled checks")
    what = "" if report.impl == "isojax" else f" of {report.impl}"
    lines += ["", f"{len(applicable) - len(failed)}/{len(applicable)} rows{what} pass in {dtype}"
              + (f" ({skipped} not applicable)" if skipped else "") + timing]
    return "\n".join(lines)


def _json_row(row: CheckRow) -> dict:
    """A row for JSON: non-finite numbers (a margin of inf when the residual is exactly 0) as strings."""
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(row).items()}


def report_json(report: CheckReport, dtype: str, seed: int, seconds: float) -> dict:
    """The report as a JSON-ready dict: dtype, seed, implementation, verdict, seconds and every row's fields."""
    return {"dtype": dtype, "seed": seed, "impl": report.impl, "requested": report.requested,
            "passed": report.passed,
            "seconds": {"total": seconds, "compile": report.compile_seconds, "run": report.run_seconds},
            "rows": [_json_row(r) for r in report]}

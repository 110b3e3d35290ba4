"""``run_eval.py report RUN_DIR... [--out DIR]``: comparison tables (md/csv/html) and plots (png)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run directories (an experiment dir or single runs; shards merged)")
    parser.add_argument("--out", help="folder for the tables and plots (default: <first run>/report)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.report.build import build_report, console_summary
    from harness.report.load import ReportError

    out = Path(args.out) if args.out else Path(args.runs[0]) / "report"
    try:
        report = build_report(args.runs, out)
    except ReportError as exc:
        print(f"run_eval.py report: {exc}", file=sys.stderr)
        return 2
    print(console_summary(report))
    print(f"wrote {len(report.files)} files to {out}: " + ", ".join(sorted(p.name for p in report.files.values())))
    return 0

"""``run_eval.py report RUN_DIR... [--out DIR]``: comparison tables (md/csv/html) and plots (png)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run directories (an experiment dir or single runs; shards merged)")
    parser.add_argument("--out", help="folder for the tables and plots (default: <first run>/report)")
    parser.add_argument("--max-thumbnails", type=int, default=1000, metavar="N",
                        help="draw at most N per-sample thumbnail strips in report.html (0: none; default 1000)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.report.build import build_report, console_summary
    from harness.report.load import ReportError

    out = Path(args.out) if args.out else Path(args.runs[0]) / "report"
    try:
        report = build_report(args.runs, out, max_thumbnails=args.max_thumbnails)
    except ReportError as exc:
        print(f"run_eval.py report: {exc}", file=sys.stderr)
        return 2
    print(console_summary(report))
    strips = [p for p in report.files if p.startswith("thumbs/")]
    names = sorted(p.name for k, p in report.files.items() if not k.startswith("thumbs/"))
    print(f"wrote {len(report.files)} files to {out}: " + ", ".join(names)
          + (f" and {len(strips)} thumbnail strips in thumbs/" if strips else ""))
    return 0

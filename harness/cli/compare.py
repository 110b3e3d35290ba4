"""``run_eval.py compare --baseline DIR RUN... --tolerance PTS``: CI gate, non-zero exit on a regression.

Pairs the runs by run id (or the single run on each side), pairs samples by id, and fails when a
split's accuracy fell by more than ``--tolerance`` points with McNemar's exact p < ``--alpha``.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="the new run directories")
    parser.add_argument("--baseline", required=True, action="append", help="baseline run directory (e.g. results/...)")
    parser.add_argument("--tolerance", type=float, default=2.0, help="allowed drop in accuracy points (default 2)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of the paired test")
    parser.add_argument("--metric", default="correct", choices=["correct", "evidence_hit"],
                        help="binary per-sample outcome compared (evidence_hit: pruner-only runs)")
    parser.add_argument("--out", help="write the comparison table here as CSV")


def run(args: argparse.Namespace) -> int:
    from harness.report.compare import compare
    from harness.report.load import ReportError, load_records
    from harness.report.tables import to_markdown

    try:
        base, new = load_records(args.baseline), load_records(args.runs)
    except ReportError as exc:
        print(f"run_eval.py compare: {exc}", file=sys.stderr)
        return 2
    result = compare(base, new, tolerance=args.tolerance, alpha=args.alpha, metric=args.metric)
    if args.out:
        result.table.to_csv(args.out, index=False)
    cols = ["run_id", "split", "value", "n", "acc_baseline", "acc_new", "diff_pts", "ci_low_pts", "ci_high_pts",
            "worse", "better", "mcnemar_p", "regressed"]
    if not result.table.empty:
        print(to_markdown(result.table[cols], floatfmt="{:.3g}"))
    for run_id in result.missing_runs:
        print(f"MISSING: baseline run {run_id} has no counterpart in the new results", file=sys.stderr)
    for row in result.regressions.itertuples():
        print(f"REGRESSION: {row.run_id} split {row.split}={row.value}: {row.acc_baseline:.1f}% -> "
              f"{row.acc_new:.1f}% ({row.diff_pts:+.1f} pts, paired-bootstrap 95% CI "
              f"[{row.ci_low_pts:+.1f}, {row.ci_high_pts:+.1f}], "
              f"McNemar p={row.mcnemar_p:.2g}, {row.worse} worse / {row.better} better, n={row.n}) "
              f"beyond tolerance {args.tolerance} pts", file=sys.stderr)
    if result.passed:
        print(f"OK: no split dropped more than {args.tolerance} pts with p < {args.alpha}")
        return 0
    return 1

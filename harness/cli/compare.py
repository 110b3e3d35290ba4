"""``run_eval.py compare --baseline DIR RUN... --tolerance PTS``: the CI gate.

Pairs the runs by run id (or the single run on each side) and samples by id. First it refuses a
run that is not comparable (other settings, or baseline samples absent); then it judges every
split with a one-sided exact McNemar test of "the drop exceeds 0", Holm-adjusted across all
judged splits of all runs, after checking that a drop of ``--tolerance`` points could be detected
(docs/regression.md). ``--exact`` also requires every sample's output and kept-token counts to
be unchanged (deterministic CI subsets).

Exit status: 0 OK; 1 REGRESSION (a significant drop, a missing run, or an exact-check change);
2 bad input; 3 UNDERPOWERED (no drop shown, but a drop of the tolerance could not have been
detected at this n); 4 NOT COMPARABLE (settings differ or baseline samples are absent).
"""

from __future__ import annotations

import argparse
import sys

from harness.report.gate import VERDICT_EXIT


def _keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="the new run directories")
    parser.add_argument("--baseline", required=True, action="append", help="baseline run directory (e.g. results/...)")
    parser.add_argument("--tolerance", type=float, default=2.0,
                        help="smallest drop in points the gate must detect with --power (default 2)")
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise false-alarm rate (default 0.05)")
    parser.add_argument("--power", type=float, default=0.8,
                        help="probability of detecting a drop of --tolerance required of each judged test (default 0.8)")
    parser.add_argument("--metric", default="correct", choices=["correct", "evidence_hit"],
                        help="binary per-sample outcome compared (evidence_hit: pruner-only runs)")
    parser.add_argument("--gate-splits", type=_keys, default=None, metavar="SPLITS",
                        help="comma-separated split columns gated (in the Holm family); others are reported only. "
                             "Default: every split; 'none': overall only")
    parser.add_argument("--require-power", type=_keys, default=[], metavar="SPLITS",
                        help="split columns whose every value must detect --tolerance too (default: overall only)")
    parser.add_argument("--exact", action="store_true",
                        help="also fail when any sample's output or kept-token counts changed (deterministic runs)")
    parser.add_argument("--allow-mismatch", type=_keys, default=[], metavar="KEYS",
                        help="comma-separated setting keys or prefixes allowed to differ (e.g. pruner.params.policy,"
                             "benchmark.limit, records.extraction)")
    parser.add_argument("--max-absent", type=float, default=0.0, metavar="SHARE",
                        help="largest share of a baseline run's samples the new run may lack (default 0)")
    parser.add_argument("--out", help="write the comparison table here as CSV")


def run(args: argparse.Namespace) -> int:
    from harness.report.comparable import comparability_problems
    from harness.report.compare import compare, exact_changes, pair_runs
    from harness.report.load import ReportError, load_records
    from harness.report.tables import to_markdown

    try:
        base, new = load_records(args.baseline), load_records(args.runs)
    except ReportError as exc:
        print(f"run_eval.py compare: {exc}", file=sys.stderr)
        return 2
    gate_splits = None if args.gate_splits is None else [s for s in args.gate_splits if s != "none"]
    pairs = pair_runs(base, new)
    problems = comparability_problems(base, new, pairs, allow=args.allow_mismatch, max_absent=args.max_absent)
    for line in problems:
        print(f"NOT COMPARABLE: {line}", file=sys.stderr)
    if problems:
        print(f"refused: the runs differ from the baseline ({len(problems)} difference(s)); "
              "--allow-mismatch KEYS compares them on purpose", file=sys.stderr)
        return VERDICT_EXIT["NOT_COMPARABLE"]
    try:
        result = compare(base, new, tolerance=args.tolerance, alpha=args.alpha, metric=args.metric,
                         power=args.power, gate_splits=gate_splits, require_power=args.require_power)
    except ValueError as exc:
        print(f"run_eval.py compare: {exc}", file=sys.stderr)
        return 2
    if args.exact:
        result.changes = exact_changes(base, new, pairs)
    if args.out:
        result.table.to_csv(args.out, index=False)
    cols = ["run_id", "split", "value", "n", "acc_baseline", "acc_new", "diff_pts", "ci_low_pts", "ci_high_pts",
            "worse", "better", "p", "p_holm", "mde_pts", "regressed"]
    if not result.table.empty:
        print(to_markdown(result.table[cols], floatfmt="{:.3g}"))
    for run_id in result.missing_runs:
        print(f"MISSING: baseline run {run_id} has no counterpart in the new results", file=sys.stderr)
    for line in result.changes:
        print(f"CHANGED: {line}", file=sys.stderr)
    for row in result.regressions.itertuples():
        print(f"REGRESSION: {row.run_id} split {row.split}={row.value}: {row.acc_baseline:.1f}% -> "
              f"{row.acc_new:.1f}% ({row.diff_pts:+.1f} pts, paired-bootstrap 95% CI "
              f"[{row.ci_low_pts:+.1f}, {row.ci_high_pts:+.1f}], "
              f"{row.worse} worse / {row.better} better, n={row.n}, one-sided McNemar p={row.p:.2g}, "
              f"Holm-adjusted {row.p_holm:.2g} < alpha {args.alpha})", file=sys.stderr)
    verdict = result.verdict
    if verdict == "UNDERPOWERED":
        for row in result.underpowered.itertuples():
            print(f"UNDERPOWERED: {row.run_id} split {row.split}={row.value}: n={row.n} ({row.worse} worse / "
                  f"{row.better} better) detects a drop of {row.mde_pts:.1f} pts with power {args.power}, "
                  f"not the --tolerance {args.tolerance} pts", file=sys.stderr)
        print(f"UNDERPOWERED: no significant drop, but this comparison could not have detected a "
              f"{args.tolerance}-point drop; add samples or state a larger --tolerance (exit 3)", file=sys.stderr)
    elif verdict == "OK":
        print(f"OK: no significant drop (family-wise alpha {args.alpha}, Holm over {int(result.table['gated'].sum())} "
              f"tests); each required test detects a {args.tolerance}-point drop with power >= {args.power}"
              + ("; outputs and kept tokens unchanged" if args.exact else ""))
    return VERDICT_EXIT[verdict]

"""``run_eval.py score``: score a predictions file with a benchmark's own scorer.

Accepts our JSONL (``{"question_id": ..., "output": "..."}`` per line) and lmms-eval's
``*_samples_<task>.jsonl`` logs, so lmms-eval users can re-score their runs under any of the
three extraction conventions. Prints the accuracy table, writes ``<stem>.score.csv`` and
``<stem>.score.md`` next to the predictions (or under ``--out``), and with ``--json`` prints one
JSON object as the last line:
``{"overall": <acc %>, "extraction": "<name>", "by": {"duration": {"short": ...}, ...}, ...}``
(with ``--extraction all``: the default convention's figures plus ``"conventions": {name: {...}}``).
Exit status: 0 scored, 2 bad input (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.extraction import CONVENTIONS

BENCHMARK_CHOICES = ("videomme", "videomme_w_subtitle", "hlvid", "synthetic_needle")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", required=True, choices=BENCHMARK_CHOICES)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="dataset directory or HF dataset id in the local cache (default: the benchmark's id)",
    )
    parser.add_argument(
        "--predictions", required=True, type=Path, help="our JSONL or an lmms-eval *_samples_*.jsonl"
    )
    parser.add_argument(
        "--extraction",
        choices=(*CONVENTIONS, "all"),
        default=None,
        help="default: the benchmark's (lmms-eval-regex)",
    )
    parser.add_argument(
        "--out",
        type=str,  # not Path: Path("DIR/") drops the slash that says DIR is a directory
        default=None,
        help="output directory (an existing one, or DIR/ which is created) or file prefix "
        "(default: beside the predictions)",
    )
    parser.add_argument(
        "--strip-reasoning",
        action="store_true",
        help="remove <think>...</think> / <thinking>...</thinking> blocks before extraction (as lmms-eval can)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary object as the last line")


def run(args: argparse.Namespace) -> int:
    from benchmarks.data import DataNotFoundError
    from benchmarks.predictions import read_predictions
    from benchmarks.registry import get_benchmark
    from benchmarks.scoring import PredictionError, index_predictions

    try:
        kwargs = {"data_dir": args.data_dir} if args.data_dir and args.benchmark != "synthetic_needle" else {}
        if args.strip_reasoning:
            kwargs["reasoning_tags"] = True
        bench = get_benchmark(args.benchmark, **kwargs)
        predictions = index_predictions(
            read_predictions(args.predictions), bench.sample_by_id(), str(args.predictions)
        )
    except (DataNotFoundError, PredictionError, FileNotFoundError, ValueError, KeyError) as exc:
        print(f"run_eval.py score: {exc}", file=sys.stderr)
        return 2
    conventions = (
        list(CONVENTIONS) if args.extraction == "all" else [args.extraction or bench.default_extraction]
    )
    if args.extraction == "all":  # the benchmark's default first: it is the headline number
        conventions.sort(key=lambda c: c != bench.default_extraction)
    table = pd.concat([bench.aggregate(bench.score(predictions, c)) for c in conventions], ignore_index=True)

    csv_path, md_path = _output_paths(args.predictions, args.out)
    md = to_markdown(table, getattr(bench, "published", {}))
    try:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(csv_path, index=False)
        md_path.write_text(md)
    except OSError as exc:
        print(f"run_eval.py score: cannot write {csv_path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(md)
    overall = table[table["split"] == "overall"].iloc[0]
    for what, note in (
        ("no_prediction", "had no prediction (counted wrong)"),
        ("invalid_sample", "are invalid samples (not scored)"),
    ):
        if overall[what]:
            print(f"warning: {overall[what]} of {overall['n']} questions {note}", file=sys.stderr)
    print(f"wrote {csv_path} and {md_path}")
    if args.json:
        print(json.dumps(summary(table, conventions, bench.name)))
    return 0


def _output_paths(predictions: Path, out: str | Path | None) -> tuple[Path, Path]:
    """``<stem>.score.csv/.md`` beside the predictions, in ``out`` when it is a directory (an
    existing one, or one written with a trailing slash, created by the caller), else ``out.csv/.md``."""
    stem = predictions.name.removesuffix(".jsonl").removesuffix(".json")
    if out is None:
        base = predictions.parent / f"{stem}.score"
    elif Path(out).is_dir() or str(out).endswith(("/", "\\")):
        base = Path(out) / f"{stem}.score"
    else:
        base = Path(out)
    return base.with_name(base.name + ".csv"), base.with_name(base.name + ".md")


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _convention_summary(table: pd.DataFrame) -> dict[str, Any]:
    overall = table[table["split"] == "overall"].iloc[0]
    by: dict[str, dict[str, float | None]] = {}
    for row in table[table["split"] != "overall"].itertuples(index=False):
        by.setdefault(row.split, {})[row.group] = _num(row.accuracy)
    return {
        "overall": _num(overall["accuracy"]),
        "ci95": [_num(overall["ci95_low"]), _num(overall["ci95_high"])],
        "n": int(overall["n"]),
        "scored": int(overall["scored"]),
        "unanswered": int(overall["unanswered"]),
        "no_prediction": int(overall["no_prediction"]),
        "invalid_sample": int(overall["invalid_sample"]),
        "by": by,
    }


def summary(table: pd.DataFrame, conventions: list[str], benchmark: str) -> dict[str, Any]:
    """The ``--json`` object: the first convention's figures (+ every convention when several)."""
    per = {c: _convention_summary(table[table["extraction"] == c]) for c in conventions}
    out: dict[str, Any] = {"benchmark": benchmark, "extraction": conventions[0], **per[conventions[0]]}
    if len(conventions) > 1:
        out["conventions"] = per
    return out


def _fmt(x: Any, digits: int = 1) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def to_markdown(table: pd.DataFrame, published: dict[str, float] | None = None) -> str:
    """Accuracy table (one block per convention) and published figures, as markdown."""
    head = ["split", "group", "n", "scored", "accuracy %", "95% CI (clustered)", "unanswered", "no prediction",
            "invalid"]
    lines = []
    for convention, part in table.groupby("extraction", sort=False):
        lines += [f"### {part['benchmark'].iloc[0]} — extraction `{convention}`", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in part.itertuples(index=False):
            ci = "n/a" if math.isnan(r.ci95_low) else f"{r.ci95_low:.1f}–{r.ci95_high:.1f}"
            cells = [
                r.split,
                r.group,
                r.n,
                r.scored,
                _fmt(r.accuracy),
                ci,
                r.unanswered,
                r.no_prediction,
                r.invalid_sample,
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    if published:
        lines += ["Published (accuracy %): " + ", ".join(f"{k} {v:.1f}" for k, v in published.items()), ""]
    return "\n".join(lines)

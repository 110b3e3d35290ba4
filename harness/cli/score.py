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
        "--predictions",
        required=True,
        type=Path,
        help="our JSONL, a run directory of ours (or its records file), or an lmms-eval *_samples_*.jsonl",
    )
    parser.add_argument(
        "--extraction",
        choices=(*CONVENTIONS, "all"),
        default=None,
        help="default: what the input says (an lmms-eval log: the extractor that wrote it; our run: its "
        "convention), else the benchmark's (lmms-eval-regex)",
    )
    parser.add_argument(
        "--complete",
        action="store_true",
        help="score the whole sample set, counting questions without a prediction as wrong "
        "(default: score the questions the predictions contain, and print the coverage)",
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
    from benchmarks.scoring import PredictionError, index_predictions, score_samples
    from harness.cli.score_input import ScoreInputError, read_input

    try:
        given = read_input(args.predictions, args.benchmark, args.data_dir, args.strip_reasoning)
        bench = given.benchmark
        known = {s.id: s for s in given.samples}
        predictions = index_predictions(given.log.pairs, known, str(args.predictions))
        conventions, why = _conventions(args.extraction, given, bench, predictions)
    except (DataNotFoundError, PredictionError, ScoreInputError, FileNotFoundError, ValueError, KeyError) as exc:
        print(f"run_eval.py score: {exc}", file=sys.stderr)
        return 2
    scored = given.samples if args.complete else [s for s in given.samples if s.id in predictions]
    table = pd.concat(
        [bench.aggregate(score_samples(bench, scored, predictions, c)) for c in conventions], ignore_index=True
    )
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
    n_total, n_given = len(given.samples), len(predictions)
    print(f"extraction: {conventions[0]} ({why})")
    print(f"sample set: {given.sample_set}")
    coverage = f"coverage: {n_given} of {n_total} questions have a prediction"
    if n_given < n_total:
        coverage += (
            f"; the {n_total - n_given} others count as wrong (--complete)"
            if args.complete
            else f"; scored on those {n_given} (--complete counts the others as wrong)"
        )
    print(coverage)
    overall = table[table["split"] == "overall"].iloc[0]
    for what, note in (
        ("no_prediction", "had no prediction (counted wrong)"),
        ("invalid_sample", "are invalid samples (not scored)"),
    ):
        if overall[what]:
            print(f"warning: {overall[what]} of {overall['n']} questions {note}", file=sys.stderr)
    print(f"wrote {csv_path} and {md_path}")
    if args.json:
        out = summary(table, conventions, bench.name)
        out.update({"coverage": {"predicted": n_given, "total": n_total, "complete": bool(args.complete)},
                    "extraction_source": why})
        print(json.dumps(out))
    return 0


def _conventions(requested: str | None, given, bench, predictions) -> tuple[list[str], str]:  # noqa: ANN001
    """Which convention(s) to score with, and why (printed: the number depends on it)."""
    from benchmarks.extraction import LMMS_EVAL_EXTRACTORS, check_convention, conventions_matching

    if requested == "all":
        conventions = sorted(CONVENTIONS, key=lambda c: c != bench.default_extraction)
        return conventions, "--extraction all; the first is the benchmark's default"
    if requested:
        return [requested], "--extraction"
    log = given.log
    if log.lmms_eval:
        written = [(predictions.get(q), a) for q, a in log.pred_answers.items() if q in predictions]
        if not written:
            return [bench.default_extraction], "lmms-eval log without pred_answer: the benchmark's default"
        matching = conventions_matching(written)
        releases = dict(LMMS_EVAL_EXTRACTORS)
        if not matching:
            raise ValueError(
                f"{given.path}: no known extractor reproduces the log's pred_answer letters "
                f"(tried {', '.join(releases)}); pass --extraction"
            )
        if len(matching) == len(releases):
            return [matching[0]], "lmms-eval log: every extractor reproduces its letters; they score alike"
        return [matching[0]], f"the extractor that wrote this lmms-eval log ({releases[matching[0]]})"
    if len(log.extractions) == 1:
        return [check_convention(next(iter(log.extractions)))], "the convention the run scored with"
    if len(log.extractions) > 1:
        raise ValueError(f"{given.path}: records scored under several conventions {sorted(log.extractions)}; "
                         "pass --extraction")
    return [bench.default_extraction], "the benchmark's default"


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

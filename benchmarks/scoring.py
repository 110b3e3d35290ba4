"""Model outputs -> one scored row per question, shared by every benchmark.

Why one place: the rules for broken input must be the same everywhere so that no benchmark
silently reports a wrong number:

- a prediction for a question the benchmark does not have -> error (wrong data set or ids);
- two predictions for one question -> error (which one would count?);
- a question without prediction -> status ``no_prediction``, counted as wrong;
- a sample that cannot be scored (``Sample.invalid_reason``, e.g. answer not among its
  options) -> status ``invalid_sample``, out of the denominator, reported in the table;
- no letter extracted -> status ``unanswered``; wrong, or out of the denominator for the
  ``videomme-official`` convention (exactly what that script does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from benchmarks.extraction import check_convention, counts_unanswered

if TYPE_CHECKING:
    from benchmarks.base import Benchmark, Sample


class PredictionError(ValueError):
    """Predictions that cannot be scored as given (unknown or duplicate question ids)."""


def index_predictions(
    pairs: Iterable[tuple[str, str | None]], known: Iterable[str], source: str = "predictions"
) -> dict[str, str | None]:
    """``{question_id: output}`` from (id, output) pairs; unknown or duplicate ids raise PredictionError."""
    known_ids = set(known)
    out: dict[str, str | None] = {}
    duplicates: list[str] = []
    unknown: list[str] = []
    for qid, output in pairs:
        qid = str(qid)
        if qid not in known_ids:
            unknown.append(qid)
            continue
        if qid in out:
            duplicates.append(qid)
            continue
        out[qid] = output
    if unknown:
        shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise PredictionError(
            f"{source}: {len(unknown)} prediction(s) for questions this benchmark does not have: {shown}"
        )
    if duplicates:
        shown = ", ".join(sorted(set(duplicates))[:10])
        raise PredictionError(
            f"{source}: duplicate predictions for question(s) {shown}; keep one output per question"
        )
    return out


def score_output(
    benchmark: Benchmark, sample: Sample, output: str | None, convention: str | None = None
) -> dict[str, Any]:
    """How one output scores: pred (letter or None), status, counted (in the denominator), correct, reason.

    ``output`` None means the sample has no prediction (it failed or was never run).
    """
    convention = check_convention(convention or benchmark.default_extraction)
    if sample.invalid_reason:
        return {
            "pred": None,
            "status": "invalid_sample",
            "counted": False,
            "correct": False,
            "reason": sample.invalid_reason,
        }
    if output is None:
        return {
            "pred": None,
            "status": "no_prediction",
            "counted": True,
            "correct": False,
            "reason": "no prediction for this question",
        }
    pred = benchmark.extract_answer(output, sample, convention)
    if pred is None:
        counted = counts_unanswered(convention)
        return {
            "pred": None,
            "status": "unanswered",
            "counted": counted,
            "correct": False,
            "reason": "no letter in output",
        }
    return {"pred": pred, "status": "ok", "counted": True, "correct": pred == sample.answer, "reason": ""}


def score_samples(
    benchmark: Benchmark,
    samples: Iterable[Sample],
    predictions: Mapping[str, str | None],
    convention: str | None = None,
) -> pd.DataFrame:
    """One row per sample: ids, group metadata, output, extracted letter, status, counted, correct."""
    convention = check_convention(convention or benchmark.default_extraction)
    rows = []
    for sample in samples:
        output = predictions.get(sample.id)
        rows.append(
            {
                "sample_id": sample.id,
                benchmark.cluster_column: sample.metadata.get(benchmark.cluster_column, sample.video_path),
                **{col: sample.metadata.get(col) for col in benchmark.group_columns},
                "answer": sample.answer,
                "output": output,
                "extraction": convention,
                **score_output(benchmark, sample, output, convention),
            }
        )
    return pd.DataFrame(rows)

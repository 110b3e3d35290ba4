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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from benchmarks.extraction import REASONING_TAGS, check_convention, counts_unanswered, extract

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


@dataclass(frozen=True)
class AnswerRules:
    """How an output becomes a letter, without the data set: the letters scanned and the reasoning
    blocks stripped first. A multiple-choice benchmark holds one (``MultipleChoiceBenchmark.answer_rules``);
    the report rebuilds it from a run's benchmark name and settings (:func:`answer_rules`), so it
    re-extracts exactly as the run did without opening the data set.
    """

    fixed_choices: tuple[str, ...] | None = ("A", "B", "C", "D")  # None: each sample's own letters
    reasoning_tags: tuple[tuple[str, str], ...] | None = None

    @classmethod
    def make(cls, fixed_choices: Sequence[str] | None, reasoning_tags: bool | Sequence | None) -> AnswerRules:
        """``reasoning_tags``: True = lmms-eval's ``<think>``/``<thinking>`` pairs, a list of pairs, or None/False."""
        tags = REASONING_TAGS if reasoning_tags is True else (reasoning_tags or None)
        return cls(None if fixed_choices is None else tuple(fixed_choices),
                   None if tags is None else tuple((str(a), str(b)) for a, b in tags))

    def choices(self, options: Sequence[str] | None) -> tuple[str, ...] | None:
        """The letters an extractor scans: the benchmark's fixed set, else one per option (A, B, ...)."""
        if self.fixed_choices:
            return self.fixed_choices
        return tuple(chr(ord("A") + i) for i in range(len(options or ())))

    def extract(self, output: str, options: Sequence[str] | None, convention: str) -> str | None:
        return extract(output, convention, self.choices(options), self.reasoning_tags)


def answer_rules(benchmark: str, settings: Mapping[str, Any] | None = None) -> AnswerRules | None:
    """The rules a run of ``benchmark`` (with constructor ``settings``, e.g. ``reasoning_tags``) extracted
    with; None for a benchmark this package does not know (no guess: its letters could be anything)."""
    from benchmarks.registry import get_benchmark_class

    try:
        cls = get_benchmark_class(str(benchmark))
    except (KeyError, ImportError):
        return None
    if not hasattr(cls, "fixed_choices"):
        return None
    return AnswerRules.make(cls.fixed_choices, (settings or {}).get("reasoning_tags"))


@dataclass(frozen=True)
class Score:
    """How one output scores. ``pred``: the letter extracted (also kept for an invalid sample, as
    information); ``counted``: in the accuracy denominator; ``reason``: why not ``ok``."""

    pred: str | None
    status: str  # ok | unanswered | invalid_sample | no_prediction
    counted: bool
    correct: bool
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"pred": self.pred, "status": self.status, "counted": self.counted, "correct": self.correct,
                "reason": self.reason}


def score_answer(
    output: str | None,
    answer: str | None,
    extract_letter: Callable[[str], str | None],
    convention: str | None,
    invalid_reason: str | None = None,
) -> Score:
    """The one scoring rule, used by ``eval`` (each record), ``score`` and the report alike.

    ``extract_letter`` turns the output into a letter (a benchmark's ``extract_answer`` for one
    sample, or :class:`AnswerRules` ``.extract``); ``convention`` decides whether an output without
    a letter stays in the denominator (None: it does).
    """
    if convention is not None:
        check_convention(convention)
    if output is None:
        if invalid_reason:
            return Score(None, "invalid_sample", False, False, invalid_reason)
        return Score(None, "no_prediction", True, False, "no prediction for this question")
    pred = extract_letter(output)
    if invalid_reason:
        return Score(pred, "invalid_sample", False, False, invalid_reason)
    if pred is None:
        counted = True if convention is None else counts_unanswered(convention)
        return Score(None, "unanswered", counted, False, "no letter in output")
    return Score(pred, "ok", True, str(pred) == str(answer))


def score_output(
    benchmark: Benchmark, sample: Sample, output: str | None, convention: str | None = None
) -> dict[str, Any]:
    """How one output scores: pred (letter or None), status, counted (in the denominator), correct, reason.

    ``output`` None means the sample has no prediction (it failed or was never run).
    """
    convention = convention or getattr(benchmark, "default_extraction", None)
    return score_answer(
        output,
        sample.answer,
        lambda text: benchmark.extract_answer(text, sample, convention),
        convention,
        getattr(sample, "invalid_reason", None),
    ).as_dict()


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

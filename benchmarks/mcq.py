"""Shared behaviour of multiple-choice benchmarks: extraction, scoring and aggregation.

Each concrete benchmark only says where its samples come from and how its prompt reads;
everything that decides a number (which letter was chosen, who is in the denominator, the
confidence interval) lives here and in extraction/scoring/stats, so benchmarks cannot drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from benchmarks.base import Benchmark, Sample
from benchmarks.extraction import CONVENTIONS, REASONING_TAGS, check_convention
from benchmarks.scoring import AnswerRules, index_predictions, score_output, score_samples
from benchmarks.stats import SCORE_COLUMNS, accuracy_table

# Column names accepted for the question id and for the model output in runner records.
ID_COLUMNS = ("sample_id", "question_id", "id")
OUTPUT_COLUMNS = ("output", "text", "response", "prediction")


class MultipleChoiceBenchmark(Benchmark):
    """A benchmark whose samples are lettered options with one correct letter."""

    # The letters the convention scans for; the published VideoMME scorers hard-code A-D.
    fixed_choices: tuple[str, ...] | None = ("A", "B", "C", "D")

    def __init__(self, extraction: str | None = None, reasoning_tags: bool | list | None = None) -> None:
        self.default_extraction = check_convention(extraction or type(self).default_extraction)
        # True = lmms-eval's <think>/<thinking> pairs; a list of [start, end] pairs = those; None = off.
        self.reasoning_tags = REASONING_TAGS if reasoning_tags is True else (reasoning_tags or None)
        self._by_id: dict[str, Sample] | None = None

    # -- lookup ---------------------------------------------------------------------------
    def sample_by_id(self) -> dict[str, Sample]:
        if self._by_id is None:
            self._by_id = {s.id: s for s in self.samples()}
        return self._by_id

    # -- extraction -----------------------------------------------------------------------
    @property
    def answer_rules(self) -> AnswerRules:
        """What decides a letter (choices, reasoning tags), as the report rebuilds it from a run's settings."""
        return AnswerRules.make(self.fixed_choices, self.reasoning_tags)

    def extract_answer(self, output: str, sample: Sample, convention: str | None = None) -> str | None:
        return self.answer_rules.extract(output, sample.options, convention or self.default_extraction)

    # -- scoring --------------------------------------------------------------------------
    def score_output(
        self, sample: Sample, output: str | None, convention: str | None = None
    ) -> dict[str, Any]:
        """One output's score (pred, status, counted, correct, reason): what a runner record stores."""
        return score_output(self, sample, output, convention)

    def score(self, predictions: Mapping[str, str | None], convention: str | None = None) -> pd.DataFrame:
        """Per-question score frame (see benchmarks/scoring.py) for ``{question_id: output}``."""
        return score_samples(self, self.sample_by_id().values(), predictions, convention)

    def score_all(self, predictions: Mapping[str, str | None]) -> dict[str, pd.DataFrame]:
        """Accuracy tables under every convention, for side-by-side reports."""
        return {c: self.aggregate(self.score(predictions, c)) for c in CONVENTIONS}

    def aggregate(self, records: pd.DataFrame, convention: str | None = None) -> pd.DataFrame:
        """Accuracy table from per-sample records.

        ``records`` is either a score frame (has correct/counted/status), or runner records
        with an id column (sample_id | question_id | id) and an output column
        (output | text | response | prediction; null = the sample failed), which are scored
        here with ``convention`` (default: this benchmark's).
        """
        needed = (*SCORE_COLUMNS, self.cluster_column, *self.group_columns)
        if all(c in records.columns for c in needed):
            scores = records
        else:
            id_col = next((c for c in ID_COLUMNS if c in records.columns), None)
            out_col = next((c for c in OUTPUT_COLUMNS if c in records.columns), None)
            if id_col is None or out_col is None:
                raise ValueError(
                    f"{self.name}.aggregate: records need an id column ({'|'.join(ID_COLUMNS)}) and an output "
                    f"column ({'|'.join(OUTPUT_COLUMNS)}), or the score columns {list(needed)}; got {list(records.columns)}"
                )
            pairs = [(str(i), _none_if_null(o)) for i, o in zip(records[id_col], records[out_col])]
            predictions = index_predictions(pairs, self.sample_by_id(), source=f"{self.name} records")
            scores = self.score(predictions, convention)
        table = accuracy_table(scores, self.group_columns, self.cluster_column)
        table.insert(
            0, "extraction", scores["extraction"].iloc[0] if "extraction" in scores and len(scores) else ""
        )
        table.insert(0, "benchmark", self.name)
        return table


def _none_if_null(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def lettered(options: list[str]) -> str:
    """'A. first\\nB. second ...' as the prompts list them."""
    return "\n".join(f"{chr(ord('A') + i)}. {text}" for i, text in enumerate(options))

"""The one interface every benchmark implements; adding a benchmark is one module."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class Evidence:
    """Where the answer lives (synthetic benchmark): frames [start, end) and a pixel box (x0, y0, x1, y1).

    ``detail_px``: the size in source pixels of the finest detail that must be resolved to read
    the answer (a glyph stroke). Evidence shrunk below one pixel per detail is illegible, so a
    pruner that keeps it only at a lower resolution has not kept it. None: always legible.
    """

    frame_start: int
    frame_end: int
    box: tuple[int, int, int, int]
    detail_px: float | None = None


@dataclass
class Sample:
    id: str
    video_path: str
    question: str
    options: list[str]  # option texts in letter order (A, B, C, D, ...)
    answer: str  # the correct letter
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. duration, domain, category
    evidence: list[Evidence] | None = None
    # Set when the sample itself cannot be scored (e.g. its answer is not among its options): it is
    # still yielded so reports count it, but it never enters an accuracy denominator.
    invalid_reason: str | None = None
    # Set when the sample's own data cannot be used safely (e.g. its video path leaves the dataset
    # directory): the runner records the sample as failed with this reason and opens nothing.
    data_error: str | None = None

    @property
    def letters(self) -> list[str]:
        """The option letters in order (A, B, C, ... one per option)."""
        return [chr(ord("A") + i) for i in range(len(self.options))]


class Benchmark(ABC):
    name: str = "base"
    # Answer-extraction convention used when none is named (see benchmarks/extraction.py).
    default_extraction: str = "lmms-eval-regex"
    # Sample.metadata keys reported as splits by ``aggregate`` (besides "overall").
    group_columns: tuple[str, ...] = ()
    # Sample.metadata key whose questions are correlated (same video): the CI cluster.
    cluster_column: str = "video_id"
    # Decoding settings the published numbers used (greedy, short answers).
    generation_kwargs: dict[str, Any] = {"max_new_tokens": 16, "do_sample": False}
    # Published accuracies (%) to print beside ours in reports: {"model name": accuracy}.
    published: dict[str, float] = {}

    @abstractmethod
    def samples(self, limit: int | None = None) -> Iterator[Sample]:
        """Yield samples; a sample whose video is missing is still yielded (the runner records it failed)."""

    @abstractmethod
    def build_prompt(self, sample: Sample, **kwargs: Any) -> str:
        """The text prompt (without the visual placeholder, which the adapter inserts)."""

    @abstractmethod
    def extract_answer(self, output: str, sample: Sample, convention: str | None = None) -> str | None:
        """The letter the model chose, or None when none can be extracted."""

    @abstractmethod
    def aggregate(self, records: pd.DataFrame) -> pd.DataFrame:
        """Accuracy overall and per split (with confidence intervals) from per-sample records."""

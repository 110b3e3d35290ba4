"""The one interface every benchmark implements; adding a benchmark is one module."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class Evidence:
    """Where the answer lives (synthetic benchmark): frames [start, end) and a pixel box (x0, y0, x1, y1)."""

    frame_start: int
    frame_end: int
    box: tuple[int, int, int, int]


@dataclass
class Sample:
    id: str
    video_path: str
    question: str
    options: list[str]  # option texts in letter order (A, B, C, D, ...)
    answer: str  # the correct letter
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. duration, domain, category
    evidence: list[Evidence] | None = None


class Benchmark(ABC):
    name: str = "base"

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

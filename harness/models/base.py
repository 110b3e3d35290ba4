"""The adapter contract: frames + Selection + prompt -> Generation (answer, tokens, timings)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from harness.pruning.selection import Selection, TokenGeometry
from harness.stages import STAGES  # noqa: F401 - the stage names, defined once (harness/stages.py)

PruneStage = Literal["pre_vit", "post_vit", "native"]


@dataclass
class TokenCounts:
    visual_before: int  # visual tokens the unpruned model would send to the LLM
    visual_after: int  # visual tokens the LLM actually saw
    prompt: int  # whole prompt length fed to the LLM (text + kept visual tokens)
    generated: int


@dataclass
class Generation:
    text: str
    tokens: TokenCounts
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (see STAGES)
    peak_memory_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ModelAdapter(ABC):
    """One model family. Subclasses live in one readable file each (harness/models/<family>.py)."""

    name: str = "base"

    @classmethod
    @abstractmethod
    def from_pretrained(cls, path_or_id: str, device: str = "cpu", dtype: str = "auto", **kwargs: Any) -> ModelAdapter:
        """Load from a local HF-layout directory or an HF cache id (never downloads when offline)."""

    @abstractmethod
    def token_geometry(self, num_frames: int, height: int, width: int) -> TokenGeometry:
        """The token grid this model would produce for ``num_frames`` frames of ``height x width``."""

    @abstractmethod
    def generate(
        self,
        frames: np.ndarray,
        selection: Selection | None,
        prompt: str,
        *,
        fps: float,
        max_new_tokens: int = 16,
        prune_stage: PruneStage = "post_vit",
    ) -> Generation:
        """Answer ``prompt`` about ``frames`` (uint8 (T, H, W, 3)) seeing only ``selection``'s tokens."""

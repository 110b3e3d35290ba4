"""The adapter contract: frames + Selection + prompt -> Generation (answer, tokens, timings).

Three base classes, one per kind of family (a family's spec names its ``base``, see
harness/models/spec.py):

- ``ModelAdapter``: what the runner calls (``from_pretrained``, ``token_geometry``, ``generate``).
- ``MRopeAdapter``: + what the vLLM backend's ``mrope_keep_mask`` route and the vLLM reference
  command call on an M-RoPE (Qwen-VL) adapter.
- ``PooledAdapter`` (harness/models/pooled.py): + what the ``prompt_embeds`` route calls on a
  1-D RoPE adapter, with the shared ``generate`` built on those steps.

A concrete subclass that leaves an abstract method unimplemented is refused when its class
statement runs (import time), not at the first sample; a base meant to stay abstract says
``class X(ModelAdapter, abstract=True)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

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
    #: a feature-stage method's final keep (bool, the selection's grid): the tokens it chose from
    #: the features, for pruner-only evidence scoring after the model ran; None otherwise
    kept_grid: Any = None


class ModelAdapter(ABC):
    """One model family. Subclasses live in one readable file each (harness/models/<family>.py)."""

    name: str = "base"

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        """Refuse, at import, a concrete adapter that leaves a declared method unimplemented."""
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        missing = sorted(
            attr for attr in dir(cls) if getattr(getattr(cls, attr, None), "__isabstractmethod__", False)
        )
        if missing:
            raise TypeError(
                f"adapter {cls.__module__}.{cls.__qualname__} does not implement {', '.join(missing)} "
                f"(declared by its base class); implement them or declare the class abstract=True"
            )

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


class MRopeAdapter(ModelAdapter, abstract=True):
    """An M-RoPE family (Qwen-VL): the steps the vLLM ``mrope_keep_mask`` route and reference use.

    The vLLM route sends raw frames + a keep mask, so it needs this adapter's exact prompt text
    and selection checks; the reference command (harness/backends/vllm/reference.py) rebuilds
    the adapter's prefill inputs step by step to compare logprobs.
    """

    model_class: ClassVar[type]  # the transformers model class (built weightless by the vLLM route)
    model: Any  # the transformers model
    processor: Any  # its stock processor
    video_token_id: int

    @abstractmethod
    def chat_text(self, prompt: str) -> str:
        """The prompt wrapped by the checkpoint's chat template, video first."""

    @abstractmethod
    def fit_to_selection(
        self, frames: np.ndarray, native: TokenGeometry, selection: Selection
    ) -> tuple[np.ndarray, TokenGeometry, bool]:
        """Check ``selection`` fits ``frames``; (frames resized to its size, its geometry, resized?)."""

    @abstractmethod
    def prepare(self, frames: np.ndarray, prompt: str, *, fps: float, selection: Selection | None = None) -> Any:
        """The stock processor's inputs (``.batch``) and their geometry (``.geometry``)."""

    @abstractmethod
    def kept_indices(self, prepared: Any, selection: Selection | None) -> Any:
        """Indices of the kept visual tokens in the processor's order."""

    @abstractmethod
    def visual_features(self, prepared: Any, kept: Any, prune_stage: PruneStage) -> Any:
        """The kept tokens' visual features (after or before the ViT, by ``prune_stage``)."""

    @abstractmethod
    def llm_inputs(self, batch: dict[str, Any], kept: Any, features: Any) -> dict[str, Any]:
        """The LLM's prefill kwargs: kept tokens only, at their unpruned M-RoPE positions."""

    def stock_inputs(self, frames: np.ndarray, prompt: str, *, fps: float) -> dict[str, Any]:
        """What the stock model gets for these frames (keep-all must answer as ``model.generate`` on it)."""
        return self.prepare(frames, prompt, fps=fps).batch

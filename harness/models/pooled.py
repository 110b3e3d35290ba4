"""``PooledAdapter``: the shared pipeline of 1-D RoPE families fed pooled/projected visual tokens.

LLaVA-OneVision and InternVL3 run the same steps (their modules say how each step is done for
that architecture): the stock processor writes one placeholder per visual token
(``preprocess``); the vision tower + projector encode every token (``encode_video``, post_vit) or
only the kept ones (``encode_pre_vit``); ``prune`` removes the unkept placeholders and gives the
kept tokens their UNPRUNED 1-D positions; ``generate_pruned`` (harness/models/rope1d.py) runs
our greedy prefill/decode loop. The native AutoGaze route (``prune_stage: native``) encodes one
token per gaze (``encode_native``) at consecutive positions. ``generate`` and the loading live
here once; a family implements the abstract steps.

The vLLM ``prompt_embeds`` route (harness/backends/vllm/engine.py) calls ``model_geometry``,
``preprocess``, ``encode_video``, ``prune``, ``pixel_key``, ``placeholder_id`` and ``model``:
they are declared here so a new 1-D family cannot forget one.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from harness.models.base import Generation, ModelAdapter, PruneStage
from harness.models.common import StageTimer, reset_peak_memory
from harness.models.frames import check_frames
from harness.models.loading import parse_dtype, resolve_model_dir
from harness.models.rope1d import PrunedInputs, generate_pruned, native_sequence, run_geometry
from harness.pruning.native_gaze import NativeGaze, NativeTarget, native_gaze_of
from harness.pruning.selection import Selection, TokenGeometry

PRUNE_STAGES = ("pre_vit", "post_vit", "native")


class PooledAdapter(ModelAdapter, abstract=True):
    """A 1-D RoPE family whose LLM sees one projected feature per visual token (see the module doc)."""

    model_class: ClassVar[type]  # the transformers model class
    modality: ClassVar[Literal["video", "image"]]  # the processor's placeholder kind
    pixel_key: ClassVar[str]  # the processor output holding the pixels
    newline_tokens: ClassVar[int] = 0  # visual tokens appended after the grid, never pruned
    # ``extra`` keys of a post_vit/pre_vit generation whose pre_vit values ``encode_pre_vit`` returns
    vit_extra_keys: ClassVar[tuple[str, ...]] = ("vit_tokens",)
    native_attn_types: ClassVar[tuple[str, ...]]  # the vision tower's attention layouts (native route)

    model: Any
    processor: Any
    source: str
    device: torch.device
    native_attn: str
    placeholder_id: int  # the token id of one visual placeholder in ``input_ids``

    def __init__(self, model: torch.nn.Module, processor: Any, source: str, native_attn: str = "block_causal"):
        """The parts every 1-D family holds; a family's ``__init__`` reads its geometry after this."""
        if native_attn not in self.native_attn_types:
            raise ValueError(f"{source}: native_attn {native_attn!r}; valid: {', '.join(self.native_attn_types)}")
        self.native_attn = native_attn
        self.model = model.eval()
        self.processor = processor
        self.source = source
        self.device = next(model.parameters()).device

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load_parts(
        cls, path_or_id: str, device: str, dtype: str, kwargs: dict[str, Any]
    ) -> tuple[Path, torch.nn.Module, Any, str]:
        """(local dir, model on ``device``, processor, native_attn) loaded offline.

        ``cache_dir`` and ``native_attn`` are taken out of ``kwargs``; the rest goes to the model's
        ``from_pretrained`` (e.g. ``attn_implementation``).
        """
        from transformers import AutoProcessor

        local = resolve_model_dir(path_or_id, cache_dir=kwargs.pop("cache_dir", None))
        native_attn = kwargs.pop("native_attn", "block_causal")
        model = cls.model_class.from_pretrained(
            local, dtype=parse_dtype(dtype), local_files_only=True, **kwargs
        ).to(device)
        processor = AutoProcessor.from_pretrained(local, local_files_only=True)
        return local, model, processor, native_attn

    # -- the steps a family implements ---------------------------------------------------------

    @abstractmethod
    def chat_text(self, prompt: str) -> str:
        """The prompt wrapped by the checkpoint's chat template, one video placeholder before the text."""

    @abstractmethod
    def preprocess(
        self, frames: np.ndarray, prompt: str, geometry: TokenGeometry | None = None
    ) -> dict[str, torch.Tensor]:
        """The stock processor's output at ``geometry`` (native when None), on ``self.device``."""

    @abstractmethod
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Every visual token's projected feature (N + newline_tokens, D), raster order."""

    @abstractmethod
    def encode_pre_vit(self, pixels: torch.Tensor, selection: Selection) -> tuple[torch.Tensor, dict[str, Any]]:
        """Pre-ViT pruning: the kept tokens' features (+ newline tokens) and ``vit_extra_keys`` values."""

    @abstractmethod
    def prune(
        self, inputs: dict[str, torch.Tensor], features: torch.Tensor, selection: Selection, *, only_kept: bool = False,
        signals: dict[str, torch.Tensor] | None = None,
    ) -> PrunedInputs:
        """The LLM inputs seeing only ``selection``'s tokens (``features``: all, or only_kept: the kept).

        With every token's features, a feature-stage method (``selection.reducer``) runs here
        (``stages.feature_stage``), with ``signals`` when it needs tower signals.
        """

    def encode_video_signals(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """``encode_video`` plus the tower signals a reducer may need (``FeatureReducer.needs``);
        None here: a family that can read them overrides this (LLaVA-OV), the others refuse."""
        return self.encode_video(pixels), None

    @abstractmethod
    def native_target(self, num_frames: int = 0, height: int = 0, width: int = 0) -> NativeTarget:
        """What AutoGaze gazes at for this tower (the native route)."""

    @abstractmethod
    def encode_native(self, pixels: torch.Tensor, gaze: NativeGaze) -> torch.Tensor:
        """One projected LLM token per gaze (+ newline tokens), slot order."""

    def native_run_lengths(self, gaze: NativeGaze) -> list[int] | None:
        """Tokens per placeholder run in the native route (None: one run holds them all)."""
        return None

    def native_vit_extra(self, gaze: NativeGaze, num_frames: int) -> dict[str, Any]:
        """``extra`` keys saying what the ViT ran on in the native route."""
        return {"vit_tokens": gaze.count}

    def stop_ids(self) -> set[int] | None:
        """Token ids that end generation (None: the checkpoint's generation_config)."""
        return None

    # -- shared --------------------------------------------------------------------------------

    def model_geometry(self, frames: np.ndarray, selection: Selection | None) -> TokenGeometry:
        """The geometry the model runs at: native, or the selection's smaller size (``downsample``)."""
        native = self.token_geometry(len(frames), *frames.shape[1:3])
        return run_geometry(native, selection, self.name)

    def stock_inputs(self, frames: np.ndarray, prompt: str, *, fps: float) -> dict[str, Any]:
        """What the stock model gets for these frames (keep-all must answer as ``model.generate`` on it)."""
        return self.preprocess(frames, prompt)

    def _extra(self, fps: float, prune_stage: str, vit: dict[str, Any]) -> dict[str, Any]:
        head = {"newline_tokens": self.newline_tokens} if self.newline_tokens else {}
        return {**head, "fps": fps, "prune_stage": prune_stage, **vit}

    def _generate_native(
        self, frames: np.ndarray, gaze: NativeGaze, prompt: str, *, fps: float, max_new_tokens: int
    ) -> Generation:
        """One LLM token per AutoGaze gaze (+ newline tokens), at consecutive positions."""
        timer = StageTimer(self.device)
        reset_peak_memory(self.device)
        inputs = self.preprocess(frames, prompt)
        with timer.stage("vision"):
            features = self.encode_native(inputs[self.pixel_key], gaze)
        pruned = native_sequence(
            inputs["input_ids"], self.placeholder_id, features, self.modality, self.native_run_lengths(gaze)
        )
        vit = {
            **self.native_vit_extra(gaze, len(frames)),
            "gazes": gaze.count,
            "native_attn": self.native_attn,
            "native_scales": list(gaze.target.scales),
        }
        native = self.token_geometry(len(frames), *frames.shape[1:3])
        return self._decode(frames, pruned, native, timer, max_new_tokens, self._extra(fps, "native", vit), None)

    def _decode(
        self,
        frames: np.ndarray,
        pruned: PrunedInputs,
        geometry: TokenGeometry,
        timer: StageTimer,
        max_new_tokens: int,
        extra: dict[str, Any],
        stop: set[int] | None,
        selection: Selection | None = None,
    ) -> Generation:
        """Greedy prefill/decode of ``pruned``; ``visual_before`` is the native model's count + newlines.

        ``selection``'s in-LLM stage (FastV, DyCoke's KV stage), if any, runs in the decoding loop.
        """
        native = self.token_geometry(len(frames), *frames.shape[1:3])
        return generate_pruned(
            self.model,
            self.processor.tokenizer,
            pruned,
            geometry,
            visual_before=native.total_tokens + self.newline_tokens,
            timer=timer,
            device=self.device,
            max_new_tokens=max_new_tokens,
            extra=extra,
            stop=stop,
            selection=selection,
            visual_token_id=self.placeholder_id,
        )

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
        """Answer ``prompt`` about ``frames`` seeing only the selected tokens (greedy).

        ``visual_before`` counts the native model's tokens (+ newline tokens) even when a
        ``downsample`` selection makes it run smaller; ``visual_after`` what the LLM saw.
        """
        if prune_stage not in PRUNE_STAGES:
            raise ValueError(f"prune_stage must be 'pre_vit', 'post_vit' or 'native', got {prune_stage!r}")
        check_frames(frames)
        if prune_stage == "native":
            gaze = native_gaze_of(selection, self.native_target(), len(frames), self.name)
            if gaze is not None:
                return self._generate_native(frames, gaze, prompt, fps=fps, max_new_tokens=max_new_tokens)
            prune_stage = "post_vit"  # a token selection (other pruners, none): the stock path
        geometry = self.model_geometry(frames, selection)
        if selection is None:
            selection = Selection.keep_all(geometry)
        if selection.reducer is not None:
            prune_stage = "post_vit"  # a feature-stage method (DyCoke, VidCom2) reads every token's features
        timer = StageTimer(self.device)
        reset_peak_memory(self.device)
        inputs = self.preprocess(frames, prompt, geometry)
        vit: dict[str, Any] = dict.fromkeys(self.vit_extra_keys)
        signals = None
        with timer.stage("vision"):
            if prune_stage == "pre_vit":
                features, vit = self.encode_pre_vit(inputs[self.pixel_key], selection)
            elif selection.reducer is not None and selection.reducer.needs:
                features, signals = self.encode_video_signals(inputs[self.pixel_key])
            else:
                features = self.encode_video(inputs[self.pixel_key])
        more = {} if signals is None else {"signals": signals}  # tower signals only for a reducer that needs them
        pruned = self.prune(inputs, features, selection, only_kept=prune_stage == "pre_vit", **more)
        extra = self._extra(fps, prune_stage, vit)
        return self._decode(frames, pruned, geometry, timer, max_new_tokens, extra, self.stop_ids(), selection)

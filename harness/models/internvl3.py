"""InternVL3 adapter (transformers ``InternVLForConditionalGeneration``, the ``-hf`` checkpoints).

Where tokens are pruned: AFTER the pixel shuffle + MLP projector (``post_vit``), or BEFORE
InternViT (``pre_vit``: the ViT runs only on the 2x2 patch blocks the kept tokens read, frame by
frame, CLS token included; see ``encode_kept`` and ``harness/models/internvit_kept.py`` for what
differs from stock and why). transformers 5.24 treats a
video as one image per frame: ``InternVLProcessor`` resizes every frame to the video
processor's square size and writes ``FrameN: <img>`` + ``image_seq_length`` x ``<IMG_CONTEXT>``
+ ``</img>`` per frame; ``InternVLModel.get_image_features`` runs InternViT per frame, drops the
CLS token, pixel-shuffles each 2x2 block of patches into one token (downsample_ratio 0.5) and
projects it. So one temporal group = one frame, and a frame holds
(size / patch)^2 * downsample_ratio^2 tokens (448 / 14 = 32 -> 16 x 16 = 256), in raster
(row, col) order: the shuffle's two transposes cancel, checked in the tests against the stock
model.

Policy for the text around each frame: ``FrameN: <img>`` and ``</img>`` always stay, also for a
frame whose tokens are all pruned; they are prompt text, not visual tokens, and keeping them
keeps every remaining token at its unpruned position. Only ``<IMG_CONTEXT>`` tokens are pruned.

How the LLM sees the kept tokens: as for LLaVA-OV (see ``harness/models/llava_onevision.py``):
unkept placeholders removed from ``input_ids``, kept features through the stock
``mm_encoder_outputs={"image": ...}`` route, explicit 1D ``position_ids`` of the unpruned prompt
(the LM is Qwen2), all-ones ``attention_mask``, and our own greedy prefill/decode loop so that
prefill (TTFT) and decode are timed apart. Both stages feed the LLM the same way; only where the
kept tokens' features come from differs. ``Generation.extra["vit_tokens"]`` is the number of
patches InternViT ran on (pre_vit; the per-frame CLS tokens, one per frame with any kept patch,
are in ``extra["vit_cls_tokens"]``); None for post_vit, where it ran on every patch.

Native AutoGaze route (``prune_stage: native``, docs/pruning.md): one gaze = one LLM token.
AutoGaze gazes 28-px cells (the 2x2 patches one shuffled token reads) at four scales; InternViT
embeds the 4 patches of each gazed cell at its scale (+ one CLS per frame), pixel shuffle and
projector as stock (``harness/models/internvit_gazed.py``). Frame ``t``'s ``<IMG_CONTEXT>`` run
holds exactly frame ``t``'s gazes (possibly none; ``FrameN: <img>...</img>`` stays), positions
consecutive. Tokens = gazes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import InternVLForConditionalGeneration

from harness.models.frames import check_frames, resize_frames
from harness.models.internvit_gazed import ATTN_TYPES as NATIVE_ATTN_TYPES
from harness.models.internvit_gazed import encode_gazed_cells
from harness.models.internvit_kept import shuffled_features_pre_vit
from harness.models.pipeline import choice, parse_pipeline
from harness.models.pooled import PooledAdapter
from harness.models.rope1d import PrunedInputs, processor_square_size, prune_sequence
from harness.pruning.native_gaze import NativeGaze, NativeTarget, native_target_for
from harness.pruning.selection import Selection, TokenGeometry
from harness.pruning.stages import feature_stage


@dataclass(frozen=True)
class InternVLPipeline:
    """``model.pipeline`` keys of InternVL3; the default is stock transformers'."""

    # generation_config: stop at its eos ids; tokenizer_eos: only tokenizer.eos_token_id
    # (lmms-eval's internvl_hf: generate(eos_token_id=tokenizer.eos_token_id))
    stop: str = choice("generation_config", "tokenizer_eos")


class InternVL3Adapter(PooledAdapter):
    """InternVL3: pruning after the pixel shuffle + MLP or before InternViT, one temporal group per frame."""

    name = "internvl3"
    model_class = InternVLForConditionalGeneration
    modality = "image"  # transformers treats a video as one image per frame
    pixel_key = "pixel_values"
    vit_extra_keys = ("vit_tokens", "vit_cls_tokens")
    native_attn_types = NATIVE_ATTN_TYPES

    def __init__(
        self,
        model: InternVLForConditionalGeneration,
        processor: Any,
        source: str,
        native_attn: str = "block_causal",
    ):
        super().__init__(model, processor, source, native_attn)
        self.pipeline = InternVLPipeline()
        config = model.config
        self.patch_size = int(config.vision_config.patch_size[0])
        self.merge = round(1 / config.downsample_ratio)
        self.frame_height, self.frame_width = processor_square_size(processor.video_processor.size, source)
        self.image_token_id = self.placeholder_id = int(config.image_token_id)
        per_frame = (self.frame_height // self.patch_size) * (self.frame_width // self.patch_size)
        per_frame //= self.merge**2
        if per_frame != processor.image_seq_length:
            raise ValueError(
                f"{source}: frames of {self.frame_height}x{self.frame_width} give {per_frame} tokens per frame "
                f"but the processor writes image_seq_length={processor.image_seq_length} placeholders"
            )

    @classmethod
    def from_pretrained(
        cls, path_or_id: str, device: str = "cpu", dtype: str = "auto", pipeline: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> InternVL3Adapter:
        """Load model + processor offline from a local HF directory or an HF cache id (``cache_dir`` kwarg).

        ``native_attn`` (kwarg): InternViT's attention layout for ``prune_stage: native``;
        ``pipeline``: ``model.pipeline`` keys (:class:`InternVLPipeline`)."""
        pipe = parse_pipeline(InternVLPipeline, pipeline, cls.name)
        _, model, processor, native_attn = cls.load_parts(path_or_id, device, dtype, kwargs)
        adapter = cls(model, processor, source=str(path_or_id), native_attn=native_attn)
        adapter.pipeline = pipe
        return adapter

    def stop_ids(self) -> set[int] | None:
        """``pipeline.stop``: None = the generation config's eos ids (stock)."""
        if self.pipeline.stop == "tokenizer_eos":
            return {int(self.processor.tokenizer.eos_token_id)}
        return None

    def token_geometry(self, num_frames: int, height: int, width: int) -> TokenGeometry:
        """Frames are resized to the video processor's square size, so ``height``/``width`` do not matter."""
        return TokenGeometry(
            num_frames=num_frames,
            height=self.frame_height,
            width=self.frame_width,
            patch_size=self.patch_size,
            temporal_patch_size=1,
            spatial_merge_size=self.merge,
        )

    # -- the pipeline, step by step (public so tests can compare each step with stock) ---------

    def chat_text(self, prompt: str) -> str:
        """The prompt wrapped by the checkpoint's chat template, one ``<video>`` before the text."""
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def preprocess(
        self, frames: np.ndarray, prompt: str, geometry: TokenGeometry | None = None
    ) -> dict[str, torch.Tensor]:
        """The stock processor's output: input_ids with every placeholder, pixel_values (T, 3, S, S).

        At a non-native ``geometry`` the frames are resized here to its size and a copy of the
        processor writes ``grid_h * grid_w`` placeholders per frame (its ``image_seq_length`` is
        fixed); InternViT interpolates its position embeddings to the new size.
        """
        check_frames(frames)
        native = self.token_geometry(len(frames), *frames.shape[1:3])
        processor, kwargs = self.processor, {}
        if geometry is not None and geometry != native:
            frames = resize_frames(frames, geometry.height, geometry.width)
            processor = copy.copy(self.processor)
            processor.image_seq_length = geometry.tokens_per_group
            kwargs["do_resize"] = False
        inputs = processor(text=[self.chat_text(prompt)], videos=[frames], return_tensors="pt", **kwargs)
        return {k: v.to(self.device) for k, v in inputs.items()}

    @torch.inference_mode()
    def encode_video(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected tokens (T * tokens_per_frame, D) in raster (frame, row, col) order."""
        out = self.model.model.get_image_features(pixel_values=pixel_values, return_dict=True)
        return out.pooler_output.flatten(0, 1)

    @torch.inference_mode()
    def encode_kept(self, pixel_values: torch.Tensor, selection: Selection) -> tuple[torch.Tensor, int, int]:
        """Pre-ViT pruning: projected features of the kept tokens only (K, D), raster order.

        InternViT runs on the patches the kept tokens read (their 2x2 shuffle blocks) plus each
        such frame's CLS token, frame-independently; then the stock shuffle on a zero-filled grid
        and the stock projector (``harness/models/internvit_kept.py``). Returns the features, the
        number of patches the ViT ran on and the number of CLS tokens it ran with them.
        """
        self._check_selection_grid(pixel_values, selection)
        features, vit_keep = shuffled_features_pre_vit(self.model.model, pixel_values, selection.keep)
        cls_tokens = int(vit_keep.flatten(1).any(1).sum())
        return features, int(vit_keep.sum()), cls_tokens

    def encode_pre_vit(self, pixels: torch.Tensor, selection: Selection) -> tuple[torch.Tensor, dict[str, Any]]:
        """``encode_kept`` for the shared ``generate``: kept tokens, ``vit_tokens`` and ``vit_cls_tokens``."""
        features, vit_tokens, cls_tokens = self.encode_kept(pixels, selection)
        return features, {"vit_tokens": vit_tokens, "vit_cls_tokens": cls_tokens}

    def _check_selection_grid(self, pixel_values: torch.Tensor, selection: Selection) -> None:
        frames, _, height, width = pixel_values.shape
        cell = self.patch_size * self.merge
        grid = (selection.geometry.grid_t, selection.geometry.grid_h, selection.geometry.grid_w)
        if grid != (frames, height // cell, width // cell):
            raise ValueError(
                f"selection grid {grid} does not match the token grid {(frames, height // cell, width // cell)} "
                "of these inputs"
            )

    # -- the native AutoGaze route (prune_stage "native") --------------------------------------

    def native_target(self, num_frames: int = 0, height: int = 0, width: int = 0) -> NativeTarget:
        """Every frame is resized to one square size, so the frames' shape does not matter.

        AutoGaze gazes at 28-px cells (one pixel-shuffled LLM token = 2x2 patches of 14) at four
        scales: 56/140/224/448 px for the 448 checkpoints (rule in harness/models/internvit_gazed.py)."""
        cell = self.patch_size * self.merge
        return native_target_for(self.frame_height // cell, cell, self.frame_height)

    @torch.inference_mode()
    def encode_native(self, pixel_values: torch.Tensor, gaze: NativeGaze) -> torch.Tensor:
        """One projected LLM token per gaze (K, D), slot order (frame, scale ascending, raster)."""
        if self.frame_height != self.frame_width:
            raise ValueError(
                f"{self.source}: the native route needs square frames, got {self.frame_height}x{self.frame_width}"
            )
        return encode_gazed_cells(self.model.model, pixel_values, gaze, self.native_attn)

    def native_run_lengths(self, gaze: NativeGaze) -> list[int] | None:
        """Frame ``t``'s ``<IMG_CONTEXT>`` run holds exactly frame ``t``'s gazes (possibly none)."""
        return gaze.gazed_per_frame

    def native_vit_extra(self, gaze: NativeGaze, num_frames: int) -> dict[str, Any]:
        """InternViT embeds the 4 patches of each gazed cell, plus one CLS token per frame."""
        return {"vit_tokens": 4 * gaze.count, "vit_cls_tokens": num_frames}

    def prune(
        self,
        inputs: dict[str, torch.Tensor],
        features: torch.Tensor,
        selection: Selection,
        *,
        only_kept: bool = False,
        signals: dict[str, torch.Tensor] | None = None,
    ) -> PrunedInputs:
        """The LLM inputs seeing only ``selection``'s tokens; frame wrappers stay.

        ``features`` covers every token (post_vit), or with ``only_kept`` just the kept ones in
        raster order (what ``encode_kept`` returns for pre_vit). A feature-stage method
        (``selection.reducer``) runs on every token's features here (``stages.feature_stage``).
        """
        self._check_selection_grid(inputs["pixel_values"], selection)
        if only_kept:
            keep, kept, reduction = selection.keep.flatten().to(features.device), features, None
        else:
            keep, kept, reduction = feature_stage(selection, features, signals, self.name)
        return prune_sequence(inputs["input_ids"], self.image_token_id, keep, kept, "image", reduction=reduction)

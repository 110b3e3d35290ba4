"""Qwen3-VL adapter (transformers ``Qwen3VLForConditionalGeneration``): post- and pre-ViT pruning.

Shares the Qwen2.5-VL mechanics (``harness/models/qwen2_5_vl.py``: stock processor with
``video_metadata``, kept ``<|video_pad|>`` ids with their positions from the stock
``get_rope_index`` on the full sequence, ``mm_encoder_outputs`` + explicit 4-row
``position_ids``, timed greedy decode). What differs in Qwen3-VL:

- Patch 16; the video processor's ``smart_resize`` bounds the pixels of the whole clip
  (frames x height x width), so ``token_geometry`` depends on the frame count.
- The processor writes ``<t seconds>`` text and ``<|vision_start|>``/``<|vision_end|>`` around
  each temporal group's ``<|video_pad|>`` run (timestamps from ``video_metadata``), and
  ``get_rope_index`` treats each group as its own grid. Dropping unkept pads inside those runs
  keeps every other token and position as in the unpruned prompt.
- DeepStack: the ViT emits one extra feature map per ``deepstack_visual_indexes`` layer; the LLM
  adds them to the hidden states at the visual positions of its first layers. They are cut with
  the SAME kept indices as the main features, so each kept token gets its own DeepStack rows.
- ``do_sample_frames=False``: the stock default would resample the frames to 2 fps.

``pre_vit``: the stock vision tower runs on the kept merge units only, with precomputed kwargs
(``transformers.vision_utils`` contract): the kept rows of the learned position-embedding
interpolation (``interp_indices``/``interp_weights``), of the rotary (h, w) positions, and one
``cu_seqlens`` segment per temporal group of its kept patches (Qwen3-VL has no window attention).
Keep-all gives tensors identical to the stock ones (tested).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from transformers import Qwen3VLForConditionalGeneration
from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures
from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as qwen3_smart_resize
from transformers.vision_utils import get_vision_interpolation_indices_and_weights, get_vision_position_ids

from harness.models.qwen2_5_vl import Qwen25VLAdapter, VisualFeatures


class Qwen3VLAdapter(Qwen25VLAdapter):
    """Qwen3-VL: frames + Selection + prompt -> Generation (see the module docstring)."""

    name = "qwen3_vl"
    model_class: ClassVar[type] = Qwen3VLForConditionalGeneration

    def native_target(self, num_frames: int, height: int, width: int) -> Any:
        """Not implemented for Qwen3-VL (DeepStack features, timestamp M-RoPE): see docs/pruning.md."""
        raise ValueError(
            "prune_stage 'native' is not implemented for qwen3_vl (its DeepStack features and timestamp "
            "positions need their own rule; the design is in docs/pruning.md); use post_vit or pre_vit"
        )

    def _processor_hw(self, num_frames: int, height: int, width: int) -> tuple[int, int]:
        """The frame size the stock Qwen3-VL video processor resizes to (mirrors its ``resize``)."""
        if not self.pipeline.processor_resize:
            return height, width
        vp = self.processor.video_processor
        factor = self.patch_size * self.merge_size
        max_pixels = vp.size["longest_edge"]
        if getattr(vp, "cap_pixels_per_frame", None):
            frame_cap = vp.max_video_tokens * factor * factor
            per_frame = max(
                min(frame_cap, vp.size["longest_edge"] // num_frames), int(vp.size["shortest_edge"] * 1.05)
            )
            max_pixels = per_frame * num_frames
        # The stock smart_resize refuses a single frame (t < temporal factor); the processor pads
        # first only in patchify, so a 1-frame clip cannot be processed by the stock path either.
        return qwen3_smart_resize(
            num_frames=num_frames,
            height=height,
            width=width,
            temporal_factor=self.temporal_patch_size,
            factor=factor,
            min_pixels=vp.size["shortest_edge"],
            max_pixels=max_pixels,
        )

    @torch.inference_mode()
    def encode_all(self, batch: dict[str, torch.Tensor]) -> VisualFeatures:
        out = self.model.model.get_video_features(
            self._pixels(batch), batch["video_grid_thw"], return_dict=True
        )
        # deepstack layers come split per video (tuples) since transformers 5.18, whole before
        deepstack = [d if torch.is_tensor(d) else torch.cat(d, dim=0) for d in out.deepstack_features]
        return VisualFeatures(torch.cat(out.pooler_output, dim=0), deepstack)

    def vision_kwargs_for_kept(self, grid_thw: torch.Tensor, kept: torch.Tensor) -> dict[str, torch.Tensor]:
        t, h, w = (int(v) for v in grid_thw[0])
        m, unit = self.merge_size, self.merge_size**2
        device = kept.device
        rows = (kept[:, None] * unit + torch.arange(unit, device=device)).reshape(-1)
        visual = self.model.model.visual
        indices, weights = get_vision_interpolation_indices_and_weights(
            grid_thw,
            num_grid_per_side=visual.num_grid_per_side,
            mode=visual.interpolation_mode,
            align_corners=visual.interpolation_align_corners,
            spatial_merge_size=m,
        )
        position_ids = get_vision_position_ids(grid_thw, m)
        per_group = torch.bincount(kept // ((h // m) * (w // m)), minlength=t)
        per_group = per_group[per_group > 0]
        rows_src = rows.to(grid_thw.device)
        return {
            "rows": rows,
            "interp_indices": indices[rows_src].to(device),
            "interp_weights": weights[rows_src].to(device),
            "position_ids": position_ids[rows_src].to(device),
            "cu_seqlens": F.pad((per_group * unit).cumsum(0), (1, 0)).to(torch.int32),
        }

    @torch.inference_mode()
    def encode_kept(self, batch: dict[str, torch.Tensor], kept: torch.Tensor) -> VisualFeatures:
        grid = batch["video_grid_thw"]
        pre = self.vision_kwargs_for_kept(grid, kept.to(self.device))
        rows = pre.pop("rows")
        out = self.model.model.visual(self._pixels(batch)[rows], grid_thw=grid, return_dict=True, **pre)
        return VisualFeatures(out.pooler_output, list(out.deepstack_features))

    def encoder_outputs(self, features: VisualFeatures) -> Any:
        return BaseModelOutputWithDeepstackFeatures(
            pooler_output=(features.embeds,),
            deepstack_features=[(d,) for d in features.deepstack],
        )

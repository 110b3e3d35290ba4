"""vLLM Qwen2.5-VL / Qwen3-VL subclasses that show the LLM only a Selection's kept video tokens.

Why a subclass and not vLLM's ``video_pruning_rate`` (EVS) route: EVS decides WHICH tokens to
keep (and how many, from one global rate) inside the model; we must apply OUR per-sample mask.
And the positions of the kept tokens are known when the request arrives (they are those of the
unpruned prompt), so no runtime position fix-up is needed: we override the three places where
vLLM derives something from ``video_grid_thw`` alone:

1. the multimodal processor's prompt update writes one ``<|video_pad|>`` per KEPT token (vLLM:
   one per grid token; Qwen3-VL: per frame, between that frame's timestamp and
   ``<|vision_start|>``/``<|vision_end|>``, which always stay). The mask arrives per request in ``mm_processor_kwargs``
   (``requests.KEEP_KWARG``), is removed before the HF processor runs, and travels on as a
   processed field (``requests.KEEP_FIELD``), one bool per grid token, split per video;
2. ``embed_multimodal`` runs the stock vision tower on every patch (post-ViT pruning, as the
   transformers adapter's default) and returns the kept rows;
3. ``get_mrope_input_positions`` gives each kept token its unpruned (t, h, w) position and the
   text after the video its unpruned positions (``requests.pruned_mrope_positions``), exactly
   what the transformers adapter computes (its ``get_rope_index`` on the full prompt under the same
   ``model.pipeline.text_positions`` rule, unkept columns deleted).

With no mask in a request (or the dummy inputs of vLLM's memory profiling) everything equals
the stock model. Images are untouched. vLLM's EVS path stays off (``video_pruning_rate`` unset),
so none of its approximations apply (it offsets the text after a pruned video by the grid
width, not by the unpruned maximum position, and truncates ``second_per_grid_ts`` to an int).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import BatchFeature
from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLDummyInputsBuilder,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
    Qwen2_5_VLProcessingInfo,
)
from vllm.model_executor.models.qwen3_vl import (
    Qwen3VLDummyInputsBuilder,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMultiModalProcessor,
    Qwen3VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig
from vllm.multimodal.processing import PromptReplacement

from harness.backends.vllm.requests import (
    KEEP_FIELD,
    KEEP_KWARG,
    TEXT_POSITIONS_ATTR,
    keep_mask_from_kwarg,
    pruned_mrope_positions,
    qwen2_5_vl_span,
    qwen3_vl_frame_spans,
)


def _without_keep(kwargs: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in kwargs.items() if k != KEEP_KWARG}


def _split_keep(keep: object, sizes: list[int]) -> list[torch.Tensor]:
    """The keep field arrives as one flat tensor or a list of per-video tensors (vLLM batching)."""
    if isinstance(keep, torch.Tensor):
        flat = keep.flatten()
    else:
        flat = torch.cat([torch.as_tensor(k).flatten() for k in keep])
    if flat.numel() != sum(sizes):
        raise ValueError(f"keep mask of {flat.numel()} entries for videos of {sizes} tokens")
    return list(flat.bool().split(sizes))


# ---------------------------------------------------------------------------------------------
# Processing (runs where vLLM renders prompts): mask in, kept placeholder counts out.
# ---------------------------------------------------------------------------------------------


class _KeepInfoMixin:
    def get_hf_processor(self, **kwargs: object):
        # The HF processor is built (and cached) from these kwargs: our list-valued key is
        # neither one of its options nor hashable.
        return super().get_hf_processor(**_without_keep(kwargs))


class _KeepProcessorMixin:
    """Strips the keep kwarg before the HF processor and re-attaches it as a processed field."""

    def _tokens_per_video(self, video_grid_thw: torch.Tensor) -> list[int]:
        merge = self.info.get_hf_config().vision_config.spatial_merge_size
        return (video_grid_thw.prod(-1) // (merge * merge)).tolist()

    def _apply_hf_processor_main(self, mm_items: Any, hf_kwargs: Mapping[str, object]) -> BatchFeature:
        # The one entry every family's HF-processor call goes through (Qwen3-VL overrides the
        # layers below it and calls the HF processor per video itself).
        keep = hf_kwargs.get(KEEP_KWARG)
        out = super()._apply_hf_processor_main(mm_items, _without_keep(hf_kwargs))
        if "video_grid_thw" in out:
            out[KEEP_FIELD] = keep_mask_from_kwarg(keep, self._tokens_per_video(out["video_grid_thw"]))
        # (vLLM also calls this for the text alone, with the same kwargs: nothing to attach then.)
        return out

    def _get_mm_fields_config(
        self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]
    ) -> Mapping[str, MultiModalFieldConfig]:
        fields = dict(super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs))
        grid = hf_inputs.get("video_grid_thw", torch.empty((0, 3), dtype=torch.long))
        fields[KEEP_FIELD] = MultiModalFieldConfig.flat_from_sizes(
            "video", torch.tensor(self._tokens_per_video(grid), dtype=torch.long), keep_on_cpu=True
        )
        return fields

    def _video_keep(self, out_mm_kwargs: Any, item_idx: int) -> torch.Tensor:
        return out_mm_kwargs["video"][item_idx][KEEP_FIELD].data.bool()


class HarnessQwen25VLProcessingInfo(_KeepInfoMixin, Qwen2_5_VLProcessingInfo):
    pass


class HarnessQwen25VLMultiModalProcessor(_KeepProcessorMixin, Qwen2_5_VLMultiModalProcessor):
    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs) -> Sequence[Any]:
        updates = list(super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs))
        video_pad = self.info.get_tokenizer().get_vocab()[
            self.info.get_hf_processor(**hf_processor_mm_kwargs).video_token
        ]

        def kept_pads(item_idx: int) -> list[int]:
            return [video_pad] * int(self._video_keep(out_mm_kwargs, item_idx).sum())

        return [u for u in updates if u.modality != "video"] + [
            PromptReplacement(modality="video", target=[video_pad], replacement=kept_pads)
        ]


class HarnessQwen3VLProcessingInfo(_KeepInfoMixin, Qwen3VLProcessingInfo):
    pass


class HarnessQwen3VLMultiModalProcessor(_KeepProcessorMixin, Qwen3VLMultiModalProcessor):
    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs) -> Sequence[Any]:
        updates = list(super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs))
        stock = next(u for u in updates if u.modality == "video")
        config = self.info.get_hf_config()
        tokenizer = self.info.get_tokenizer()

        def kept_frames(item_idx: int):
            item = out_mm_kwargs["video"][item_idx]
            t = int(item["video_grid_thw"].data[0])
            per_frame = self._video_keep(out_mm_kwargs, item_idx).view(t, -1).sum(-1).tolist()
            return Qwen3VLMultiModalProcessor.get_video_repl(
                tokens_per_frame=[int(n) for n in per_frame],
                timestamps=item["timestamps"].data,
                tokenizer=tokenizer,
                vision_start_token_id=config.vision_start_token_id,
                vision_end_token_id=config.vision_end_token_id,
                video_token_id=config.video_token_id,
                select_token_id=True,
            )

        return [u for u in updates if u.modality != "video"] + [
            PromptReplacement(modality="video", target=stock.target, replacement=kept_frames)
        ]


# ---------------------------------------------------------------------------------------------
# Models (run in the engine): kept rows of the vision output, unpruned positions.
# ---------------------------------------------------------------------------------------------


class _KeepModelMixin:
    def embed_multimodal(self, **kwargs: object):
        keep = kwargs.pop(KEEP_FIELD, None)
        out = super().embed_multimodal(**kwargs)
        if keep is None or not out:
            return out
        # The stock method returns one tensor per item, modalities in kwargs order.
        order = list(self._parse_and_validate_multimodal_inputs(**kwargs).keys())
        counts = {
            "image": len(kwargs["image_grid_thw"]) if "image_grid_thw" in kwargs else 0,
            "video": len(kwargs["video_grid_thw"]) if "video_grid_thw" in kwargs else 0,
        }
        items, start = list(out), 0
        for modality in order:
            if modality == "video":
                videos = items[start : start + counts["video"]]
                masks = _split_keep(keep, [v.shape[0] for v in videos])
                items[start : start + counts["video"]] = [v[m.to(v.device)] for v, m in zip(videos, masks)]
            start += counts[modality]
        return tuple(items)


def _text_positions(config: Any) -> str:
    """``model.pipeline.text_positions``, set by the engine as an HF config override
    (:data:`requests.TEXT_POSITIONS_ATTR`); absent = ``reference``, vLLM's own rule."""
    return getattr(config, TEXT_POSITIONS_ATTR, None) or "reference"


@MULTIMODAL_REGISTRY.register_processor(
    HarnessQwen25VLMultiModalProcessor,
    info=HarnessQwen25VLProcessingInfo,
    dummy_inputs=Qwen2_5_VLDummyInputsBuilder,
)
class HarnessQwen25VLForConditionalGeneration(_KeepModelMixin, Qwen2_5_VLForConditionalGeneration):
    """Stock vLLM Qwen2.5-VL + the per-request keep mask (module docstring)."""

    def get_mrope_input_positions(
        self, input_tokens: list[int], mm_features: list[Any]
    ) -> tuple[torch.Tensor, int]:
        vision = self.config.vision_config
        spans = []
        for feature in mm_features:
            data = feature.data
            grid = data[f"{feature.modality}_grid_thw"].data.tolist()
            if feature.modality == "video":
                seconds = data.get("second_per_grid_ts")
                keep = data.get(KEEP_FIELD)
                spans.append(
                    qwen2_5_vl_span(
                        feature.mm_position.offset,
                        grid,
                        vision.spatial_merge_size,
                        second_per_grid=float(seconds.data) if seconds is not None else 1.0,
                        tokens_per_second=getattr(vision, "tokens_per_second", 1.0),
                        keep=keep.data.bool() if keep is not None else None,
                    )
                )
            else:
                spans.append(qwen2_5_vl_span(feature.mm_position.offset, grid, vision.spatial_merge_size))
        return pruned_mrope_positions(len(input_tokens), spans, _text_positions(self.config))


@MULTIMODAL_REGISTRY.register_processor(
    HarnessQwen3VLMultiModalProcessor,
    info=HarnessQwen3VLProcessingInfo,
    dummy_inputs=Qwen3VLDummyInputsBuilder,
)
class HarnessQwen3VLForConditionalGeneration(_KeepModelMixin, Qwen3VLForConditionalGeneration):
    """Stock vLLM Qwen3-VL + the per-request keep mask. DeepStack features ride in the same rows.

    Qwen3-VL positions: each frame is its own (1, h, w) grid after its timestamp text; so every
    frame becomes one ``MediaSpan`` located by its ``<|vision_start|>`` (present even for a frame
    with no kept token).
    """

    def get_mrope_input_positions(
        self, input_tokens: list[int], mm_features: list[Any]
    ) -> tuple[torch.Tensor, int]:
        merge = self.config.vision_config.spatial_merge_size
        spans = []
        for feature in mm_features:
            data = feature.data
            grid = data[f"{feature.modality}_grid_thw"].data.tolist()
            if feature.modality == "video":
                keep = data.get(KEEP_FIELD)
                spans += qwen3_vl_frame_spans(
                    input_tokens,
                    feature.mm_position.offset,
                    grid,
                    merge,
                    self.config.vision_start_token_id,
                    self.config.vision_end_token_id,
                    keep.data.bool() if keep is not None else None,
                )
            else:
                spans.append(qwen2_5_vl_span(feature.mm_position.offset, grid, merge))
        return pruned_mrope_positions(len(input_tokens), spans, _text_positions(self.config))

"""LLaVA-OneVision / LLaVA-Video adapter (transformers ``LlavaOnevisionForConditionalGeneration``).

Where tokens are pruned: AFTER pooling (post_vit), or before SigLIP (pre_vit: the ViT runs only
on the patches the kept pooled tokens read; see ``encode_kept``). transformers 5.24 ``LlavaOnevisionModel.get_video_features``
runs SigLIP on every frame at the processor's fixed size, projects each patch with the MLP, then
bilinearly pools each frame's P x P patch grid to ceil(P/2) x ceil(P/2) (P = image_size / patch:
27 -> 14 for the 384 px checkpoints) and appends ONE ``image_newline`` embedding after the last
frame. Those pooled tokens, in raster order (frame, row, col), are exactly the ``<video>``
placeholders of the prompt, so a ``Selection`` over (frames, pooled rows, pooled cols) indexes
them directly.

Newline policy: the single trailing ``image_newline`` token is always KEPT (it marks the end of
the video for the LLM, is not a view of any pixel, and no pruner can score it). It is counted in
``TokenCounts.visual_before`` / ``visual_after`` because the LLM does see it.

How the LLM sees only the kept tokens, without monkey-patching: the unkept ``<video>``
placeholders are removed from ``input_ids``; the kept pooled features go in through the stock
``mm_encoder_outputs={"video": ...}`` route; the LM is Qwen2 with 1D RoPE, so each remaining
token gets the position it had in the UNPRUNED sequence via explicit ``position_ids`` (gaps
where tokens were dropped). A 2D all-ones ``attention_mask`` is always passed: without it (and
without a cache) transformers' mask builder reads gapped ``position_ids`` as packed sequences.

Why prefill and decode are driven here rather than by ``model.generate``: ``generate`` does
extend explicit 1D ``position_ids`` correctly (last + 1 per new token; checked in
transformers 5.24 ``_update_model_kwargs_for_generation``), but it cannot report prefill
(time to first token) apart from decode, which every record needs. ``greedy_decode`` is a
plain argmax loop over the KV cache; the tests check it yields the same ids as the stock
``generate`` on the same inputs.

Native AutoGaze route (``prune_stage: native``, see docs/pruning.md): AutoGaze gazes at SigLIP's
own patch size (14) and four scales (``native_target``); SigLIP embeds only the gazed patches,
each at its scale; the projector maps each to one LLM token (no video pooling); the LLM gets
those tokens in slot order (frame, scale ascending, raster) plus the trailing newline, in place
of the ``<video>`` placeholders, at consecutive positions (the prompt is rebuilt with exactly
that many placeholders, so text after the video moves with it). Tokens = gazes + 1.

LLaVA-Video checkpoints in the transformers layout of this class load through the same adapter
(the lmms-lab originals are in the original LLaVA repo's format and need converting first).
The adapter reproduces the transformers class (one trailing newline, 2x2 bilinear pooling), not
the original repo's options; LLaVA-Video's optional "time instruction" is left to the prompt.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration

from harness.models.attention_capture import capture_attention, received_and_keys
from harness.models.base import Generation, ModelAdapter, PruneStage
from harness.models.common import StageTimer, reset_peak_memory
from harness.models.frames import check_frames, resize_frames
from harness.models.gazed_siglip import ATTN_TYPES
from harness.models.loading import parse_dtype, resolve_model_dir
from harness.models.pipeline import choice, parse_pipeline
from harness.models.rope1d import (
    PrunedInputs,
    generate_pruned,
    native_sequence,
    processor_square_size,
    prune_sequence,
    run_geometry,
)
from harness.pruning.native_gaze import NativeGaze, NativeTarget, native_gaze_of, native_target_for
from harness.pruning.selection import Selection, TokenGeometry
from harness.pruning.stages import feature_stage, reduction_record

# ---------------------------------------------------------------------------------------------
# The adapter.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LlavaPipeline:
    """``model.pipeline`` keys of LLaVA-OneVision; the defaults are stock transformers'."""

    # processor: [video, text] through the processor's chat template; video_token_text: the
    # string "<video>\n" + prompt through the tokenizer's (lmms-eval's simple llava_hf)
    prompt: str = choice("processor", "video_token_text")
    stop: str = choice("generation_config", "tokenizer_eos")


class LlavaOnevisionAdapter(ModelAdapter):
    """LLaVA-OneVision / LLaVA-Video: pruning after the projector + 2x2 bilinear pooling."""

    name = "llava_onevision"
    POOL_STRIDE = 2  # transformers' apply_pooling halves each side (ceil)

    def __init__(
        self,
        model: LlavaOnevisionForConditionalGeneration,
        processor: Any,
        source: str,
        native_attn: str = "block_causal",
    ):
        if native_attn not in ATTN_TYPES:
            raise ValueError(f"{source}: native_attn {native_attn!r}; valid: {', '.join(ATTN_TYPES)}")
        self.native_attn = native_attn
        self.model = model.eval()
        self.processor = processor
        self.pipeline = LlavaPipeline()
        self.source = source
        self.device = next(model.parameters()).device
        vision = model.config.vision_config
        self.patch_size = int(vision.patch_size)
        self.image_size = int(vision.image_size)
        self.patches_per_side = self.image_size // self.patch_size
        self.pooled_per_side = math.ceil(self.patches_per_side / self.POOL_STRIDE)
        self.video_token_id = int(model.config.video_token_id)
        frame_size = processor_square_size(processor.video_processor.size, source)
        if frame_size != (self.image_size, self.image_size):
            raise ValueError(
                f"{source}: the video processor resizes frames to {frame_size} but the vision tower "
                f"(and the stock pooling) expects {self.image_size}x{self.image_size}"
            )

    @classmethod
    def from_pretrained(
        cls, path_or_id: str, device: str = "cpu", dtype: str = "auto", pipeline: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> LlavaOnevisionAdapter:
        """Load model + processor offline from a local HF directory or an HF cache id.

        ``cache_dir`` (kwarg) points at a non-default HF cache; ``native_attn`` (kwarg) is the
        SigLIP attention layout of ``prune_stage: native`` (default ``block_causal``); other kwargs
        go to the model's ``from_pretrained`` (e.g. ``attn_implementation``).
        """
        pipe = parse_pipeline(LlavaPipeline, pipeline, cls.name)
        local = resolve_model_dir(path_or_id, cache_dir=kwargs.pop("cache_dir", None))
        native_attn = kwargs.pop("native_attn", "block_causal")
        model = LlavaOnevisionForConditionalGeneration.from_pretrained(
            local, dtype=parse_dtype(dtype), local_files_only=True, **kwargs
        ).to(device)
        processor = AutoProcessor.from_pretrained(local, local_files_only=True)
        if getattr(processor, "num_image_tokens", None) is None:
            raise ValueError(
                f"{local}: processor config lacks num_image_tokens; the LLaVA-OV processor cannot "
                "count video placeholders without it"
            )
        adapter = cls(model, processor, source=str(path_or_id), native_attn=native_attn)
        adapter.pipeline = pipe
        return adapter

    # -- geometry -----------------------------------------------------------------------------

    def token_geometry(self, num_frames: int, height: int, width: int) -> TokenGeometry:
        """Every frame is resized to the tower's square size, so the grid ignores ``height``/``width``.

        The grid per frame is ceil(P/2) x ceil(P/2) pooled tokens (P patches per side). TokenGeometry
        describes a token as a square of ``patch_size * spatial_merge_size`` pixels, so the
        reported frame side is the NOMINAL ``ceil(P/2) * 2 * patch`` (392 px for the 384 px
        checkpoints, whose 27 patches pool to 14): it makes the grid exact; the pixel footprint of
        a pooled token differs from it by under 4%.
        """
        side = self.pooled_per_side * self.POOL_STRIDE * self.patch_size
        return TokenGeometry(
            num_frames=num_frames,
            height=side,
            width=side,
            patch_size=self.patch_size,
            temporal_patch_size=1,
            spatial_merge_size=self.POOL_STRIDE,
        )

    def model_geometry(self, frames: np.ndarray, selection: Selection | None) -> TokenGeometry:
        """The geometry the model runs at: native, or the selection's smaller size (``downsample``)."""
        native = self.token_geometry(len(frames), *frames.shape[1:3])
        return run_geometry(native, selection, self.name)

    # -- the pipeline, step by step (public so tests can compare each step with stock) ---------

    def chat_text(self, prompt: str) -> str:
        """The prompt wrapped by the checkpoint's chat template, with one ``<video>`` before the text.

        ``pipeline.prompt: video_token_text`` (lmms-eval's simple ``llava_hf``): the user turn is the
        string ``"<video>\n" + prompt`` through the TOKENIZER's chat template.
        """
        if self.pipeline.prompt == "video_token_text":
            turn = [{"role": "user", "content": f"{self.processor.video_token}\n{prompt}"}]
            return self.processor.tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def preprocess(
        self, frames: np.ndarray, prompt: str, geometry: TokenGeometry | None = None
    ) -> dict[str, torch.Tensor]:
        """The stock processor's output (input_ids with every placeholder, pixel_values_videos).

        At a non-native ``geometry`` the frames are resized here to its exact size (2 patches per
        pooled token) and a copy of the processor is told the matching patch count, because the
        processor counts placeholders from its fixed ``num_image_tokens``.
        """
        check_frames(frames)
        native = self.token_geometry(len(frames), *frames.shape[1:3])
        processor, kwargs = self.processor, {}
        if geometry is not None and geometry != native:
            frames = resize_frames(frames, geometry.height, geometry.width)
            processor = copy.copy(self.processor)
            processor.num_image_tokens = (geometry.height // self.patch_size) * (
                geometry.width // self.patch_size
            )
            kwargs["do_resize"] = False
        inputs = processor(text=[self.chat_text(prompt)], videos=[frames], return_tensors="pt", **kwargs)
        return {k: v.to(self.device) for k, v in inputs.items()}

    @torch.inference_mode()
    def encode_video(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """Pooled, projected video tokens (T * g * g + 1, D): raster (frame, row, col), newline last.

        At the tower's native size this is the stock ``get_video_features``; at another size
        ``encode_video_any_size`` (the stock pooling hard-codes the native patch grid).
        """
        if tuple(pixel_values_videos.shape[-2:]) != (self.image_size, self.image_size):
            return self.encode_video_any_size(pixel_values_videos)
        out = self.model.model.get_video_features(pixel_values_videos=pixel_values_videos, return_dict=True)
        return out.pooler_output.flatten(0, 1)

    @torch.inference_mode()
    def encode_video_signals(self, pixel_values_videos: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``encode_video`` plus the tower signals VisionZip reads, pooled onto the same token grid.

        The signals come from the tower layer that produces the features (``vision_feature_layer``):
        the attention each patch receives (mean over heads and queries) and the keys (mean over
        heads), read by ``attention_capture`` during the stock forward, then 2x2-bilinear pooled
        exactly as the features are, so row i of each is LLM token i.
        """
        layer = self.model.config.vision_feature_layer
        if not isinstance(layer, int):
            raise ValueError(f"{self.name}: tower signals need one feature layer, got {layer!r}")
        layers = next(m for n, m in self.model.model.vision_tower.named_modules() if n.endswith("encoder.layers"))
        source = layers[layer] if layer < 0 else layers[layer - 1]
        with capture_attention(source.self_attn, received_and_keys) as captured:
            features = self.encode_video(pixel_values_videos)
        received, keys = captured["received"], captured["keys"]
        if self.model.config.vision_feature_select_strategy == "default":
            received, keys = received[:, 1:], keys[:, 1:]
        frames, _, height, width = pixel_values_videos.shape[1:]
        rows, cols = height // self.patch_size, width // self.patch_size
        size = [math.ceil(rows / self.POOL_STRIDE), math.ceil(cols / self.POOL_STRIDE)]
        grid = torch.cat([received[..., None], keys], dim=-1).view(frames, rows, cols, -1).permute(0, 3, 1, 2)
        pooled = torch.nn.functional.interpolate(grid, size=size, mode="bilinear").permute(0, 2, 3, 1)
        pooled = pooled.reshape(-1, pooled.shape[-1])
        return features, {"received": pooled[:, 0], "keys": pooled[:, 1:]}

    @torch.inference_mode()
    def encode_video_any_size(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """The stock video path for any frame size: SigLIP (interpolated positions) -> MLP -> pool.

        Same steps as ``LlavaOnevisionModel.get_video_features`` + ``apply_pooling`` (feature
        layer, select strategy, bilinear ceil(P/2) pooling, one trailing newline); the tests check
        it equals the stock output at the native size.
        """
        config, inner = self.model.config, self.model.model
        _, frames, _, height, width = pixel_values_videos.shape
        out = inner.vision_tower(
            pixel_values_videos.flatten(0, 1), output_hidden_states=True, interpolate_pos_encoding=True
        )
        layer = config.vision_feature_layer
        if isinstance(layer, int):
            hidden = out.hidden_states[layer]
        else:
            hidden = torch.cat([out.hidden_states[i] for i in layer], dim=-1)
        if config.vision_feature_select_strategy == "default":
            hidden = hidden[:, 1:]
        features = inner.multi_modal_projector(hidden)
        rows, cols = height // self.patch_size, width // self.patch_size
        grid = features.view(frames, rows, cols, -1).permute(0, 3, 1, 2)
        pooled_size = [math.ceil(rows / self.POOL_STRIDE), math.ceil(cols / self.POOL_STRIDE)]
        pooled = torch.nn.functional.interpolate(grid, size=pooled_size, mode="bilinear")
        pooled = pooled.permute(0, 2, 3, 1).reshape(-1, features.shape[-1])
        return torch.cat([pooled, inner.image_newline[None].to(pooled)], dim=0)

    @torch.inference_mode()
    def encode_kept(
        self, pixel_values_videos: torch.Tensor, selection: Selection
    ) -> tuple[torch.Tensor, int]:
        """Pre-ViT pruning: SigLIP runs only on the patches the kept pooled tokens read.

        Policy (harness/models/gazed_siglip.py ``pooled_features_pre_vit``): for each kept pooled
        token the ViT computes every patch its bilinear pooling reads; projector and pooling then
        run as stock on a grid that is zero elsewhere. Returns the kept tokens + the trailing
        newline (K + 1, D) and the number of patches the ViT processed.
        """
        from harness.models.gazed_siglip import pooled_features_pre_vit

        config, inner = self.model.config, self.model.model
        if config.vision_feature_select_strategy != "full":
            raise ValueError(
                f"{self.source}: pre-ViT pruning needs vision_feature_select_strategy='full' "
                f"(SigLIP has no CLS token), got {config.vision_feature_select_strategy!r}"
            )
        kept, vit_keep = pooled_features_pre_vit(
            inner.vision_tower,
            inner.multi_modal_projector,
            pixel_values_videos[0],
            selection.keep,
            feature_layer=config.vision_feature_layer,
        )
        features = torch.cat([kept, inner.image_newline[None].to(kept)], dim=0)
        return features, int(vit_keep.sum())

    # -- the native AutoGaze route (prune_stage "native") --------------------------------------

    def native_target(self, num_frames: int = 0, height: int = 0, width: int = 0) -> NativeTarget:
        """What AutoGaze gazes at for this tower: SigLIP patches (14 px) at four scales.

        Frames are resized to one square size, so their shape does not matter here.

        The finest scale is the area SigLIP's patch grid covers: P x P patches of the processor's
        frame (27 x 14 = 378 px of the 384 px frame for the 384 checkpoints; a ``valid`` patch
        conv ignores the last 6 px, so does this route). The coarser scales keep AutoGaze's
        trained ratios (grids 2/4/7/14 of its 224-px tiles), rounded to whole patches: 56, 112,
        196, 378 px (grids 4, 8, 14, 27) for the 384 checkpoints, as the authors' 56/112/196/392
        for a 392-px tower.
        """
        return native_target_for(self.patches_per_side, self.patch_size, self.image_size)

    @torch.inference_mode()
    def encode_native(self, pixel_values_videos: torch.Tensor, gaze: NativeGaze) -> torch.Tensor:
        """Gazed patches -> SigLIP (only those, each at its scale) -> projector; newline appended.

        SigLIP runs through ``GazedSiglipVisionEncoder`` on the stock tower's weights: per-scale
        bicubic frame resize and bicubic position interpolation (as the authors' SigLIP), the
        attention layout ``native_attn`` (default ``block_causal``: a token sees its own frame
        and earlier ones, the authors' recommendation; ``frame_independent`` is what the stock
        video path does). The stock bilinear 2x2 video pooling is NOT applied: it is an op on a
        dense single-scale grid, and one LLM token per gaze is the authors' recipe. Returns
        (gazes + 1, D) in slot order (frame, then scale ascending, then raster), newline last.
        """
        from harness.models.gazed_siglip import GazedSiglipVisionEncoder

        config, inner = self.model.config, self.model.model
        if config.vision_feature_select_strategy != "full":
            raise ValueError(
                f"{self.source}: the native route needs vision_feature_select_strategy='full' "
                f"(SigLIP has no CLS token), got {config.vision_feature_select_strategy!r}"
            )
        side = gaze.target.scales[-1]
        pixels = pixel_values_videos[:, :, :, :side, :side]  # what the stock patch conv reads
        encoder = GazedSiglipVisionEncoder(
            inner.vision_tower, scales=gaze.target.scales, attn_type=self.native_attn
        )
        out = encoder(pixels, gaze.gazing.to(pixels.device), feature_layer=config.vision_feature_layer)
        projected = inner.multi_modal_projector(out.real_features()[0])
        return torch.cat([projected, inner.image_newline[None].to(projected)], dim=0)

    def _generate_native(
        self, frames: np.ndarray, gaze: NativeGaze, prompt: str, *, fps: float, max_new_tokens: int
    ) -> Generation:
        """One LLM token per AutoGaze gaze (+ the newline), at consecutive positions (see module doc)."""
        timer = StageTimer(self.device)
        reset_peak_memory(self.device)
        inputs = self.preprocess(frames, prompt)
        with timer.stage("vision"):
            features = self.encode_native(inputs["pixel_values_videos"], gaze)
        pruned = native_sequence(inputs["input_ids"], self.video_token_id, features, "video")
        native = self.token_geometry(len(frames), *frames.shape[1:3])
        return generate_pruned(
            self.model,
            self.processor.tokenizer,
            pruned,
            native,
            visual_before=native.total_tokens + 1,
            timer=timer,
            device=self.device,
            max_new_tokens=max_new_tokens,
            extra={
                "newline_tokens": 1,
                "fps": fps,
                "prune_stage": "native",
                "vit_tokens": gaze.count,
                "gazes": gaze.count,
                "native_attn": self.native_attn,
                "native_scales": list(gaze.target.scales),
            },
        )

    def prune(
        self, inputs: dict[str, torch.Tensor], features: torch.Tensor, selection: Selection,
        signals: dict[str, torch.Tensor] | None = None,
    ) -> PrunedInputs:
        """The LLM inputs seeing only ``selection``'s pooled tokens plus the trailing newline."""
        frames, _, height, width = inputs["pixel_values_videos"].shape[1:]
        rows = math.ceil(height // self.patch_size / self.POOL_STRIDE)
        cols = math.ceil(width // self.patch_size / self.POOL_STRIDE)
        grid = (selection.geometry.grid_t, selection.geometry.grid_h, selection.geometry.grid_w)
        if grid != (frames, rows, cols):
            raise ValueError(
                f"selection grid {grid} does not match the pooled grid {(frames, rows, cols)} of these inputs"
            )
        keep, kept, reduction = feature_stage(selection, features[:-1], signals, self.name)  # newline row stays
        keep = torch.cat([keep, torch.ones(1, dtype=torch.bool, device=keep.device)])
        pruned = prune_sequence(inputs["input_ids"], self.video_token_id, keep, torch.cat([kept, features[-1:]]), "video")
        pruned.reduction = reduction_record(reduction)
        return pruned

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
        """Answer ``prompt`` about ``frames`` seeing only the selected pooled tokens (greedy).

        ``visual_before`` counts the native model's tokens (+ newline) even when a ``downsample``
        selection makes it run smaller; ``visual_after`` what the LLM saw (+ newline).
        """
        if prune_stage not in ("pre_vit", "post_vit", "native"):
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
        vit_tokens, signals = None, None
        with timer.stage("vision"):
            if prune_stage == "pre_vit":
                features, vit_tokens = self.encode_kept(inputs["pixel_values_videos"], selection)
            elif selection.reducer is not None and "tower_attention" in selection.reducer.needs:
                features, signals = self.encode_video_signals(inputs["pixel_values_videos"])
            else:
                features = self.encode_video(inputs["pixel_values_videos"])
        if prune_stage == "pre_vit":
            keep = torch.cat([selection.keep.flatten(), torch.ones(1, dtype=torch.bool)])
            pruned = prune_sequence(inputs["input_ids"], self.video_token_id, keep, features, "video")
        else:
            pruned = self.prune(inputs, features, selection, signals)
        native = self.token_geometry(len(frames), *frames.shape[1:3])
        return generate_pruned(
            self.model,
            self.processor.tokenizer,
            pruned,
            geometry,
            visual_before=native.total_tokens + 1,
            timer=timer,
            device=self.device,
            max_new_tokens=max_new_tokens,
            extra={"newline_tokens": 1, "fps": fps, "prune_stage": prune_stage, "vit_tokens": vit_tokens},
            selection=selection,
            visual_token_id=self.video_token_id,
            stop={int(self.processor.tokenizer.eos_token_id)} if self.pipeline.stop == "tokenizer_eos" else None,
        )

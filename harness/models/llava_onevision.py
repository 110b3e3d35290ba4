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
from transformers import LlavaOnevisionForConditionalGeneration

from harness.models.attention_capture import capture_attention, received_and_keys
from harness.models.frames import check_frames, resize_frames
from harness.models.gazed_siglip import ATTN_TYPES
from harness.models.pipeline import choice, parse_pipeline
from harness.models.pooled import PooledAdapter
from harness.models.rope1d import PrunedInputs, processor_square_size, prune_sequence
from harness.pruning.native_gaze import NativeGaze, NativeTarget, native_target_for
from harness.pruning.selection import Selection, TokenGeometry
from harness.pruning.stages import feature_stage

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


class LlavaOnevisionAdapter(PooledAdapter):
    """LLaVA-OneVision / LLaVA-Video: pruning after the projector + 2x2 bilinear pooling."""

    name = "llava_onevision"
    model_class = LlavaOnevisionForConditionalGeneration
    modality = "video"
    pixel_key = "pixel_values_videos"
    newline_tokens = 1  # the trailing image_newline (see the module docstring)
    native_attn_types = ATTN_TYPES
    POOL_STRIDE = 2  # transformers' apply_pooling halves each side (ceil)

    def __init__(
        self,
        model: LlavaOnevisionForConditionalGeneration,
        processor: Any,
        source: str,
        native_attn: str = "block_causal",
    ):
        super().__init__(model, processor, source, native_attn)
        self.pipeline = LlavaPipeline()
        vision = model.config.vision_config
        self.patch_size = int(vision.patch_size)
        self.image_size = int(vision.image_size)
        self.patches_per_side = self.image_size // self.patch_size
        self.pooled_per_side = math.ceil(self.patches_per_side / self.POOL_STRIDE)
        self.video_token_id = self.placeholder_id = int(model.config.video_token_id)
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
        local, model, processor, native_attn = cls.load_parts(path_or_id, device, dtype, kwargs)
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
        # positional: the argument is ``pixel_values`` up to transformers 5.17, ``pixel_values_videos`` later
        out = self.model.model.get_video_features(pixel_values_videos, return_dict=True)
        features = out.pooler_output.flatten(0, 1)
        frames, side = pixel_values_videos.shape[1], math.ceil(self.image_size // self.patch_size / self.POOL_STRIDE)
        if features.shape[0] == frames * side * side:  # up to 5.17 the forward, not this call, adds the newline
            features = torch.cat([features, self.model.model.image_newline[None].to(features)], dim=0)
        return features

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

        Policy (harness/models/siglip_kept.py ``pooled_features_pre_vit``): for each kept pooled
        token the ViT computes every patch its bilinear pooling reads; projector and pooling then
        run as stock on a grid that is zero elsewhere. Returns the kept tokens + the trailing
        newline (K + 1, D) and the number of patches the ViT processed.
        """
        from harness.models.siglip_kept import pooled_features_pre_vit

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

    def encode_pre_vit(self, pixels: torch.Tensor, selection: Selection) -> tuple[torch.Tensor, dict[str, Any]]:
        """``encode_kept`` for the shared ``generate``: kept tokens + newline, and ``vit_tokens``."""
        features, vit_tokens = self.encode_kept(pixels, selection)
        return features, {"vit_tokens": vit_tokens}

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

    def prune(
        self,
        inputs: dict[str, torch.Tensor],
        features: torch.Tensor,
        selection: Selection,
        *,
        only_kept: bool = False,
        signals: dict[str, torch.Tensor] | None = None,
    ) -> PrunedInputs:
        """The LLM inputs seeing only ``selection``'s pooled tokens plus the trailing newline.

        ``features`` covers every token + the newline (post_vit), or with ``only_kept`` just the
        kept ones + the newline (what ``encode_kept`` returns for pre_vit). A feature-stage method
        (``selection.reducer``) runs on every token's features, the newline row aside.
        """
        frames, _, height, width = inputs["pixel_values_videos"].shape[1:]
        rows = math.ceil(height // self.patch_size / self.POOL_STRIDE)
        cols = math.ceil(width // self.patch_size / self.POOL_STRIDE)
        grid = (selection.geometry.grid_t, selection.geometry.grid_h, selection.geometry.grid_w)
        if grid != (frames, rows, cols):
            raise ValueError(
                f"selection grid {grid} does not match the pooled grid {(frames, rows, cols)} of these inputs"
            )
        if only_kept:
            keep = torch.cat([selection.keep.flatten(), torch.ones(1, dtype=torch.bool)]).to(features.device)
            return prune_sequence(inputs["input_ids"], self.video_token_id, keep, features, "video")
        keep, kept, reduction = feature_stage(selection, features[:-1], signals, self.name)  # newline row stays
        keep = torch.cat([keep, torch.ones(1, dtype=torch.bool, device=keep.device)])
        return prune_sequence(inputs["input_ids"], self.video_token_id, keep, torch.cat([kept, features[-1:]]), "video",
                              reduction=reduction)

    def stop_ids(self) -> set[int] | None:
        """``pipeline.stop: tokenizer_eos`` (lmms-eval's llava_hf) stops at the tokenizer's EOS only."""
        if self.pipeline.stop == "tokenizer_eos":
            return {int(self.processor.tokenizer.eos_token_id)}
        return None

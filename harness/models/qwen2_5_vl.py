"""Qwen2.5-VL adapter (transformers ``Qwen2_5_VLForConditionalGeneration``), pre- and post-ViT pruning.

Token layout. The stock video processor resizes every frame with ``smart_resize`` (sides a
multiple of patch 14 x merge 2 = 28, pixel count within the processor's min/max), repeats the
last frame up to a multiple of the temporal patch (2), and emits patches grouped by 2x2 merge
unit: rows ``4k .. 4k+3`` of ``pixel_values_videos`` are exactly the four ViT patches that become
LLM token ``k``, and ``k`` runs in raster order over (temporal group, merged row, merged col),
which is the ``Selection.keep`` grid order. The prompt holds one ``<|video_pad|>`` per token.

How the LLM sees only the kept tokens, without monkey-patching (transformers >= 5.24):
- 3D M-RoPE positions come from the stock ``get_rope_index`` on the FULL (unpruned) sequence;
  the unkept ``<|video_pad|>`` ids and the same position columns are dropped, so every kept
  token keeps the (t, h, w) position it had, and the text after the video keeps its positions.
- The kept features go in through the stock ``mm_encoder_outputs={"video": ...}`` route with
  explicit ``position_ids`` of 4 rows (row 0 = plain text positions ``arange(L)``, used by the
  attention-mask builder; rows 1-3 = M-RoPE t/h/w).

``post_vit``: the stock ``get_video_features`` runs on every patch; the kept rows are selected.
``pre_vit``: the stock vision tower runs on the kept merge units only. Its forward accepts
precomputed ``position_ids`` / ``cu_seqlens`` / ``window_index`` / ``cu_window_seqlens`` (the
``transformers.vision_utils`` contract), so we pass ours, computed for the kept rows:
- rotary positions: the rows of the full (h, w) patch-position table at the kept patches;
- ``cu_seqlens`` (full-attention blocks): one segment per temporal group, of its kept patches
  (empty groups dropped), as the stock model does per frame;
- window attention: a kept unit belongs to the window its ORIGINAL (row, col) fell in; windows in
  the stock order (group, window row, window col), units inside a window in raster order;
  empty windows dropped. With a keep-all selection every tensor equals the stock one, so the
  outputs are identical (tested). What differs from running the ViT on all patches: unkept
  patches neither attend nor are attended to — that is the point of pre-ViT pruning.

Prefill and decode are driven here (a greedy argmax loop over the KV cache) so that prefill
(time to first token) is timed apart from decoding; each step extends every position row by 1,
as stock ``generate`` does. Tests check the ids equal stock ``generate``'s.

``fps`` passed to ``generate`` is the rate of the FRAMES GIVEN (after the harness's sampling): it
becomes the processor's ``video_metadata`` (without it the processor assumes 24 fps and the
temporal positions, ``second_per_grid_ts``, are silently wrong).

``model.pipeline`` (``QwenPipeline``) changes the preprocessing, e.g. to lmms-eval's
(``model.preset: lmms-eval``, docs/lmms_eval.md): ``resize: qwen_vl_utils`` resizes the frames
first as qwen-vl-utils' ``fetch_video`` does (its ``smart_resize`` bounds, torchvision bicubic with
antialias, uint8), before the processor (which then keeps that size); ``min_pixels``/``max_pixels``
set the processor's pixel bounds as ``AutoProcessor.from_pretrained(min_pixels=, max_pixels=)``
does; ``stop: tokenizer_eos`` stops at the tokenizer's eos only, as
``generate(eos_token_id=tokenizer.eos_token_id)`` does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize
from transformers.video_utils import VideoMetadata
from transformers.vision_utils import get_vision_position_ids

from harness.models.base import Generation, MRopeAdapter, PruneStage, TokenCounts
from harness.models.common import StageTimer, peak_memory_mb, reset_peak_memory
from harness.models.decoding import greedy_decode
from harness.models.frames import check_frames, resize_frames
from harness.models.loading import parse_dtype, resolve_model_dir
from harness.models.pipeline import choice, parse_pipeline
from harness.pruning.native_gaze import NativeGaze, NativeTarget, native_gaze_of
from harness.pruning.selection import Selection, TokenGeometry
from harness.pruning.stages import Reduction, reduction_record, run_reducer

# ---------------------------------------------------------------------------------------------
# Values passed between the adapter's steps.
# ---------------------------------------------------------------------------------------------


@dataclass
class VisualFeatures:
    """LLM-ready visual tokens (rows in Selection raster order) and, for Qwen3-VL, DeepStack maps."""

    embeds: torch.Tensor  # (N, D)
    deepstack: list[torch.Tensor] = field(default_factory=list)  # each (N, D)

    def rows(self, index: torch.Tensor) -> VisualFeatures:
        return VisualFeatures(self.embeds[index], [d[index] for d in self.deepstack])


@dataclass
class PreparedInputs:
    """What the processor produced for one clip, plus the geometry it implies."""

    batch: dict[str, torch.Tensor]
    geometry: TokenGeometry  # geometry of the tokens in ``batch`` (after any selection resize)
    native_tokens: int  # visual tokens the unpruned model would use on the ORIGINAL frames


@dataclass(frozen=True)
class QwenPipeline:
    """``model.pipeline`` keys of the Qwen families; the defaults are stock transformers'."""

    resize: str = choice("processor", "qwen_vl_utils")
    min_pixels: int | None = None  # processor pixel bounds (None: the checkpoint's)
    max_pixels: int | None = None
    frame_max_pixels: int | None = None  # resize qwen_vl_utils: per-frame cap (VIDEO_MAX_TOKEN_NUM * 28^2)
    total_pixels: int | None = None  # resize qwen_vl_utils: whole-clip budget (MODEL_SEQ_LEN * 28^2 * 0.9)
    stop: str = choice("generation_config", "tokenizer_eos")
    # Where the text after a video resumes in M-RoPE: "reference" (default) = Qwen's own rule,
    # the one the checkpoints were trained with (also transformers <= 5.2.0 and vLLM): after the
    # video's largest position; "transformers" = the installed get_rope_index (since transformers
    # 5.3.0: video start + max(h, w) / merge), i.e. stock generate / lmms-eval on this install.
    # They differ when the temporal extent exceeds the spatial one (long videos, low frame rate).
    text_positions: str = choice("reference", "transformers")
    system_prompt: str | None = None  # an explicit system turn (None: the chat template's default)
    processor_resize: bool = True  # False: the processor keeps the frames' size (do_resize=False)

    def __post_init__(self) -> None:
        if self.resize == "qwen_vl_utils":
            missing = [k for k in ("min_pixels", "frame_max_pixels", "total_pixels") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"model.pipeline resize qwen_vl_utils needs {', '.join(missing)}")


def reference_text_positions(positions: torch.Tensor, token_types: torch.Tensor) -> torch.Tensor:
    """Positions (3, B, L) where each text run after a visual run starts at the largest position
    so far + 1 (Qwen's reference ``get_rope_index``), everything after it shifted alike.

    ``positions`` are transformers' (>= 5.3: text resumes at ``start + max(h, w) / merge``, which
    is never later), so the shift is >= 0; visual runs keep their layout relative to their start.
    """
    out = positions.clone()
    for b in range(positions.shape[1]):
        types = token_types[b].to(positions.device)
        starts = [0, *((types[1:] != types[:-1]).nonzero().squeeze(-1) + 1).tolist(), types.numel()]
        shift = 0
        for s, e in zip(starts[:-1], starts[1:]):
            out[:, b, s:e] += shift
            if s > 0 and int(types[s]) == 0 and int(types[s - 1]) != 0:
                delta = int(out[:, b, :s].max()) + 1 - int(out[0, b, s])
                out[:, b, s:e] += delta
                shift += delta
    return out


# ---------------------------------------------------------------------------------------------
# The adapter.
# ---------------------------------------------------------------------------------------------


class Qwen25VLAdapter(MRopeAdapter):
    """Qwen2.5-VL: frames + Selection + prompt -> Generation (see the module docstring)."""

    name = "qwen2_5_vl"
    model_class: ClassVar[type] = Qwen2_5_VLForConditionalGeneration

    def __init__(self, model: torch.nn.Module, processor: Any, source: str = "",
                 pipeline: QwenPipeline | None = None):
        self.model = model.eval()
        self.pipeline = pipeline or QwenPipeline()
        self.processor = processor
        self.source = source
        self.device = next(model.parameters()).device
        vision = model.config.vision_config
        self.patch_size = int(vision.patch_size)
        self.merge_size = int(vision.spatial_merge_size)
        self.temporal_patch_size = int(vision.temporal_patch_size)
        self.video_token_id = int(model.config.video_token_id)

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        device: str = "cpu",
        dtype: str = "auto",
        *,
        cache_dir: str | Path | None = None,
        local_files_only: bool = True,
        attn_implementation: str | None = None,
        pipeline: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Qwen25VLAdapter:
        """Load from a local HF-layout dir or an HF cache id (``local_files_only``: never downloads)."""
        pipe = parse_pipeline(QwenPipeline, pipeline, cls.name)
        local = resolve_model_dir(path_or_id, cache_dir=cache_dir, local_files_only=local_files_only)
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        model = cls.model_class.from_pretrained(
            local, dtype=parse_dtype(dtype), local_files_only=True, **kwargs
        )
        processor = AutoProcessor.from_pretrained(local, local_files_only=True)
        if pipe.min_pixels or pipe.max_pixels:
            # what AutoProcessor.from_pretrained(min_pixels=, max_pixels=) does (lmms-eval), without
            # the deprecated keywords: both processors' pixel bounds
            for proc in (processor.image_processor, processor.video_processor):
                size = dict(proc.size)
                if pipe.min_pixels:
                    size["shortest_edge"] = pipe.min_pixels
                if pipe.max_pixels:
                    size["longest_edge"] = pipe.max_pixels
                proc.size = size
        return cls(model.to(device), processor, source=str(path_or_id), pipeline=pipe)

    # -- geometry ------------------------------------------------------------------------------

    def pre_resized_hw(self, num_frames: int, height: int, width: int) -> tuple[int, int]:
        """The size ``resize: qwen_vl_utils`` gives the frames before the processor (else unchanged).

        qwen-vl-utils' ``fetch_video`` bounds: at least ``min_pixels``; at most ``max_pixels``,
        the per-frame cap and the clip budget ``total_pixels / T * 2``, never below 1.05 x min.
        """
        p = self.pipeline
        if p.resize != "qwen_vl_utils":
            return height, width
        cap = max(min(p.frame_max_pixels, p.total_pixels / num_frames * self.temporal_patch_size),
                  int(p.min_pixels * 1.05))
        if p.max_pixels is not None:
            cap = min(p.max_pixels, cap)
        factor = self.patch_size * self.merge_size
        return smart_resize(height, width, factor=factor, min_pixels=p.min_pixels, max_pixels=cap)

    def pre_resize(self, frames: np.ndarray) -> np.ndarray:
        """``resize: qwen_vl_utils``: torchvision bicubic + antialias on the uint8 frames."""
        if self.pipeline.resize != "qwen_vl_utils":
            return frames
        t, h, w = frames.shape[:3]
        size = self.pre_resized_hw(t, h, w)
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.functional import resize

        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        out = resize(video, list(size), interpolation=InterpolationMode.BICUBIC, antialias=True)
        return out.permute(0, 2, 3, 1).contiguous().numpy()

    def _resized_hw(self, num_frames: int, height: int, width: int) -> tuple[int, int]:
        """The size the model sees frames of ``height x width`` at: pre-resize, then the processor's."""
        return self._processor_hw(num_frames, *self.pre_resized_hw(num_frames, height, width))

    def _processor_hw(self, num_frames: int, height: int, width: int) -> tuple[int, int]:
        """The frame size the stock video processor resizes to (mirrors its ``resize``)."""
        if not self.pipeline.processor_resize:
            return height, width
        vp = self.processor.video_processor
        factor = self.patch_size * self.merge_size
        max_pixels = vp.size["longest_edge"]
        if getattr(vp, "cap_pixels_per_frame", None):
            total = int(vp.max_video_tokens * factor * factor * 0.9)
            max_pixels = max(
                min(max_pixels, total * self.temporal_patch_size // num_frames),
                int(vp.size["shortest_edge"] * 1.05),
            )
        return smart_resize(
            height, width, factor=factor, min_pixels=vp.size["shortest_edge"], max_pixels=max_pixels
        )

    def _geometry(self, num_frames: int, height: int, width: int) -> TokenGeometry:
        tps = self.temporal_patch_size
        return TokenGeometry(
            num_frames=math.ceil(num_frames / tps) * tps,  # the processor repeats the last frame
            height=height,
            width=width,
            patch_size=self.patch_size,
            temporal_patch_size=tps,
            spatial_merge_size=self.merge_size,
        )

    def token_geometry(self, num_frames: int, height: int, width: int) -> TokenGeometry:
        """The grid for ``num_frames`` frames of ``height x width`` after the processor's resize.

        ``num_frames`` is rounded up to a multiple of the temporal patch, as the processor pads.
        """
        if num_frames < 1 or height < 1 or width < 1:
            raise ValueError(f"token_geometry needs positive sizes, got {num_frames} x {height} x {width}")
        return self._geometry(num_frames, *self._resized_hw(num_frames, height, width))

    # -- inputs --------------------------------------------------------------------------------

    def chat_text(self, prompt: str) -> str:
        """The checkpoint's chat template with the video first, then the question."""
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        if self.pipeline.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.pipeline.system_prompt}]})
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def fit_to_selection(
        self, frames: np.ndarray, native: TokenGeometry, selection: Selection
    ) -> tuple[np.ndarray, TokenGeometry, bool]:
        """Check ``selection`` was made for this model and these frames; resize to its size if it differs.

        ``native`` is ``token_geometry`` of ``frames``. Returns ``(frames, geometry, resized)``:
        the frames to process (resized for a ``downsample`` selection), the geometry the processor
        must then produce, and whether a resize happened. Shared with the vLLM backend's M-RoPE
        route so both accept and refuse exactly the same selections, with the same messages.
        """
        t = frames.shape[0]
        sg = selection.geometry
        if (sg.patch_size, sg.spatial_merge_size, sg.temporal_patch_size) != (
            self.patch_size,
            self.merge_size,
            self.temporal_patch_size,
        ):
            raise ValueError(f"selection geometry {sg} was not made for {self.name} (patch/merge/temporal)")
        if sg.grid_t != native.grid_t:
            raise ValueError(
                f"selection has {sg.grid_t} temporal groups, the {t} frames give {native.grid_t}"
            )
        if (sg.height, sg.width) == (native.height, native.width):
            return frames, native, False
        factor = self.patch_size * self.merge_size
        if sg.height % factor or sg.width % factor:
            raise ValueError(f"selection size {sg.height}x{sg.width} is not a multiple of {factor} px")
        return resize_frames(frames, sg.height, sg.width), self._geometry(t, sg.height, sg.width), True

    def prepare(
        self, frames: np.ndarray, prompt: str, *, fps: float, selection: Selection | None = None,
        frame_indices: Any = None, source_frames: int | None = None,
    ) -> PreparedInputs:
        """Run the stock processor on the frames (resized to ``selection.geometry`` when that differs)."""
        check_frames(frames)
        if not fps or fps <= 0:
            raise ValueError(f"fps must be the positive frame rate of the frames given, got {fps!r}")
        t = frames.shape[0]
        frames = self.pre_resize(frames)
        h, w = frames.shape[1:3]
        factor = self.patch_size * self.merge_size
        if not self.pipeline.processor_resize and (h % factor or w % factor):
            raise ValueError(f"{self.name}: model.pipeline.processor_resize false needs frame sides that are "
                             f"multiples of {factor} px, got {w}x{h} (use resize: qwen_vl_utils)")
        native = self._geometry(t, *self._processor_hw(t, h, w))
        video_kwargs: dict[str, Any] = {"do_sample_frames": False}
        if not self.pipeline.processor_resize:
            video_kwargs["do_resize"] = False
        geometry = native
        if selection is not None:
            frames, geometry, resized = self.fit_to_selection(frames, native, selection)
            if resized:
                video_kwargs["do_resize"] = False  # the processor would smart_resize it back
        indices = list(range(t)) if frame_indices is None else [int(i) for i in frame_indices]
        if len(indices) != t:
            raise ValueError(f"{len(indices)} frame indices for {t} frames")
        meta = VideoMetadata(
            total_num_frames=t if frame_indices is None else int(source_frames or max(indices) + 1),
            fps=float(fps),
            width=int(frames.shape[2]),
            height=int(frames.shape[1]),
            frames_indices=indices,
            video_backend="harness",
        )
        batch = self.processor(
            text=[self.chat_text(prompt)],
            videos=[frames],
            video_metadata=[meta],
            return_tensors="pt",
            **video_kwargs,
        )
        grid = batch["video_grid_thw"][0].tolist()
        expected = [geometry.grid_t, geometry.grid_h * self.merge_size, geometry.grid_w * self.merge_size]
        if grid != expected:
            raise RuntimeError(f"{self.name}: processor grid {grid} != predicted {expected} for {geometry}")
        batch = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        return PreparedInputs(batch=batch, geometry=geometry, native_tokens=native.total_tokens)

    # -- vision --------------------------------------------------------------------------------

    def _pixels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["pixel_values_videos"].to(self.model.model.visual.dtype)

    @torch.inference_mode()
    def encode_all(self, batch: dict[str, torch.Tensor]) -> VisualFeatures:
        """Stock ``get_video_features`` on every patch (the post-ViT path and the reference)."""
        out = self.model.model.get_video_features(
            self._pixels(batch), batch["video_grid_thw"], return_dict=True
        )
        return VisualFeatures(torch.cat(out.pooler_output, dim=0))

    def vision_kwargs_for_kept(self, grid_thw: torch.Tensor, kept: torch.Tensor) -> dict[str, torch.Tensor]:
        """Precomputed ViT inputs (rotary positions, cu_seqlens, windows) for the kept merge units."""
        t, h, w = (int(v) for v in grid_thw[0])
        m, unit = self.merge_size, self.merge_size**2
        gh, gw = h // m, w // m
        device = kept.device
        rows = (kept[:, None] * unit + torch.arange(unit, device=device)).reshape(-1)
        position_ids = get_vision_position_ids(grid_thw, m)[rows.to(grid_thw.device)].to(device)

        group = kept // (gh * gw)
        per_group = torch.bincount(group, minlength=t)
        per_group = per_group[per_group > 0]
        cu_seqlens = F.pad((per_group * unit).cumsum(0), (1, 0)).to(torch.int32)

        vision = self.model.config.vision_config
        ws = vision.window_size // m // self.patch_size  # window side in merged units
        row, col = (kept % (gh * gw)) // gw, kept % gw
        n_wh, n_ww = gh // ws + 1, gw // ws + 1
        key = group * (n_wh * n_ww) + (row // ws) * n_ww + (col // ws)
        window_index = torch.sort(key, stable=True).indices
        _, counts = torch.unique_consecutive(key[window_index], return_counts=True)
        cu_window_seqlens = F.pad((counts * unit).cumsum(0), (1, 0)).to(torch.int32)
        return {
            "rows": rows,
            "position_ids": position_ids,
            "cu_seqlens": cu_seqlens,
            "window_index": window_index,
            "cu_window_seqlens": cu_window_seqlens,
        }

    @torch.inference_mode()
    def encode_kept(self, batch: dict[str, torch.Tensor], kept: torch.Tensor) -> VisualFeatures:
        """Pre-ViT pruning: the stock vision tower on the kept merge units only (module docstring)."""
        grid = batch["video_grid_thw"]
        pre = self.vision_kwargs_for_kept(grid, kept.to(self.device))
        rows = pre.pop("rows")
        out = self.model.model.visual(self._pixels(batch)[rows], grid_thw=grid, **pre)
        return VisualFeatures(out.pooler_output)

    # -- LLM inputs ----------------------------------------------------------------------------

    def encoder_outputs(self, features: VisualFeatures) -> BaseModelOutputWithPooling:
        # A tuple: the model concatenates one tensor per video.
        return BaseModelOutputWithPooling(pooler_output=(features.embeds,))

    def rope_index(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """3D M-RoPE positions (3, 1, L) of the FULL sequence: stock, or with ``text_positions:
        reference`` the text after each video moved to resume after its largest position."""
        extra = {"second_per_grid_ts": batch["second_per_grid_ts"]} if "second_per_grid_ts" in batch else {}
        positions, _ = self.model.model.get_rope_index(
            batch["input_ids"],
            batch["mm_token_type_ids"],
            video_grid_thw=batch["video_grid_thw"],
            attention_mask=batch["attention_mask"],
            **extra,
        )
        if self.pipeline.text_positions == "reference":
            positions = reference_text_positions(positions, batch["mm_token_type_ids"])
        return positions

    def llm_inputs(
        self, batch: dict[str, torch.Tensor], kept: torch.Tensor, features: VisualFeatures
    ) -> dict:
        """``input_ids``/``position_ids``/``mm_encoder_outputs`` showing the LLM only the ``kept`` tokens.

        ``features`` holds exactly the kept tokens' rows (in ``kept`` order).
        """
        input_ids = batch["input_ids"]
        video_cols = (input_ids[0] == self.video_token_id).nonzero().squeeze(-1)
        kept = kept.to(input_ids.device)
        if features.embeds.shape[0] != kept.numel():
            raise ValueError(f"{features.embeds.shape[0]} feature rows for {kept.numel()} kept tokens")
        if kept.numel() and int(kept.max()) >= video_cols.numel():
            raise ValueError(f"kept index {int(kept.max())} beyond the {video_cols.numel()} video tokens")
        seq_keep = torch.ones(input_ids.shape[1], dtype=torch.bool, device=input_ids.device)
        drop = torch.ones(video_cols.numel(), dtype=torch.bool, device=input_ids.device)
        drop[kept] = False
        seq_keep[video_cols[drop]] = False
        positions = self.rope_index(batch)[:, :, seq_keep]
        length = int(seq_keep.sum())
        text_row = torch.arange(length, device=input_ids.device).view(1, 1, -1)
        return {
            "input_ids": input_ids[:, seq_keep],
            "attention_mask": torch.ones(1, length, dtype=torch.long, device=input_ids.device),
            "position_ids": torch.cat([text_row, positions], dim=0),
            "mm_encoder_outputs": {"video": self.encoder_outputs(features)},
        }

    # -- the contract --------------------------------------------------------------------------

    def kept_indices(self, prepared: PreparedInputs, selection: Selection | None) -> torch.Tensor:
        if selection is None:
            return torch.arange(prepared.geometry.total_tokens, device=self.device)
        return selection.kept_indices.to(self.device)

    def visual_features(
        self, prepared: PreparedInputs, kept: torch.Tensor, prune_stage: PruneStage
    ) -> VisualFeatures:
        if kept.numel() == 0:
            raise ValueError(f"{self.name}: the selection keeps no visual token (at least one is needed)")
        if prune_stage == "pre_vit":
            return self.encode_kept(prepared.batch, kept)
        if prune_stage == "post_vit":
            return self.encode_all(prepared.batch).rows(kept)
        raise ValueError(f"prune_stage must be 'pre_vit' or 'post_vit', got {prune_stage!r}")

    def reduced_features(
        self, prepared: PreparedInputs, selection: Selection
    ) -> tuple[VisualFeatures, torch.Tensor, Reduction]:
        """A feature-stage method on every token's features: (kept features, kept indices, reduction).

        DeepStack maps (Qwen3-VL) get the same reduction as the main features, row for row.
        """
        full = self.encode_all(prepared.batch)
        reduction = run_reducer(selection.reducer, full.embeds, selection.geometry, None, self.name)
        kept = reduction.keep.nonzero().squeeze(-1).to(self.device)
        if kept.numel() == 0:
            raise ValueError(f"{self.name}: the {selection.pruner} reduction keeps no visual token")
        features = VisualFeatures(reduction.apply(full.embeds), [reduction.apply(d) for d in full.deepstack])
        return features, kept, reduction

    # -- the native AutoGaze route (prune_stage "native", harness/models/qwen_native.py) --------

    def native_target(self, num_frames: int, height: int, width: int) -> NativeTarget:
        """28-px cells (one merged token) at four scales of the processor's square frame; AutoGaze
        gazes the first frame of each temporal pair."""
        from harness.models.qwen_native import qwen_native_target

        return qwen_native_target(self, num_frames, height, width)

    def _generate_native(
        self, frames: np.ndarray, gaze: NativeGaze, prompt: str, *, fps: float, max_new_tokens: int
    ) -> Generation:
        """One merged LLM token per gaze, at the stock M-RoPE position of the finest token under it."""
        from harness.models.qwen_native import encode_native, native_llm_inputs

        timer = StageTimer(self.device)
        reset_peak_memory(self.device)
        start = time.perf_counter()
        prepared = self.prepare(frames, prompt, fps=fps)
        preprocess_s = time.perf_counter() - start
        with timer.stage("vision"):
            features = encode_native(self, prepared.batch, frames, gaze, fps)
        llm_inputs = native_llm_inputs(self, prepared.batch, gaze, features)
        ids = greedy_decode(self.model, llm_inputs, max_new_tokens=max_new_tokens, timer=timer)
        g = prepared.geometry
        return Generation(
            text=self.processor.tokenizer.decode(ids, skip_special_tokens=True),
            tokens=TokenCounts(
                visual_before=prepared.native_tokens,
                visual_after=int(features.shape[0]),
                prompt=int(llm_inputs["input_ids"].shape[1]),
                generated=len(ids),
            ),
            timings=dict(timer.seconds),
            peak_memory_mb=peak_memory_mb(self.device),
            extra={
                "prune_stage": "native",
                "preprocess_s": preprocess_s,
                "vit_tokens": 4 * gaze.count,
                "gazes": gaze.count,
                "native_attn": "per_temporal_group",
                "native_scales": list(gaze.target.scales),
                "model_size": [g.height, g.width],
                "token_grid": [g.grid_t, g.grid_h, g.grid_w],
                "output_ids": ids,
            },
        )

    @torch.inference_mode()
    def generate(
        self,
        frames: np.ndarray,
        selection: Selection | None,
        prompt: str,
        *,
        fps: float,
        max_new_tokens: int = 16,
        prune_stage: PruneStage = "post_vit",
        frame_indices: Any = None,
        source_frames: int | None = None,
    ) -> Generation:
        """Greedy answer to ``prompt`` about ``frames`` seeing only ``selection``'s visual tokens.

        ``frame_indices``/``source_frames`` (``frames.fps_convention: source``): the frames' source
        indices and the source's frame count for the processor's video metadata, with ``fps`` the
        source rate (Qwen3-VL's timestamps are index / fps); default: frames 0..T-1 at ``fps``.
        """
        if prune_stage == "native" and getattr(selection, "native", None) is not None:
            check_frames(frames)
            target = self.native_target(*frames.shape[:3])
            gaze = native_gaze_of(selection, target, self.token_geometry(*frames.shape[:3]).grid_t, self.name)
            return self._generate_native(frames, gaze, prompt, fps=fps, max_new_tokens=max_new_tokens)
        if prune_stage == "native":
            prune_stage = "post_vit"  # a token selection (other pruners, none): the stock path
        timer = StageTimer(self.device)
        reset_peak_memory(self.device)
        start = time.perf_counter()
        prepared = self.prepare(frames, prompt, fps=fps, selection=selection, frame_indices=frame_indices,
                                source_frames=source_frames)
        preprocess_s = time.perf_counter() - start  # CPU processor work: resize, normalise, patchify
        reduction, report = None, {}
        if selection is not None and selection.reducer is not None:
            prune_stage = "post_vit"  # a feature-stage method (DyCoke, VidCom2) reads every token's features
            with timer.stage("vision"):
                features, kept, reduction = self.reduced_features(prepared, selection)
        else:
            kept = self.kept_indices(prepared, selection)
            with timer.stage("vision"):
                features = self.visual_features(prepared, kept, prune_stage)
        llm_inputs = self.llm_inputs(prepared.batch, kept, features)
        stop = {int(self.processor.tokenizer.eos_token_id)} if self.pipeline.stop == "tokenizer_eos" else None
        ids = greedy_decode(self.model, llm_inputs, max_new_tokens=max_new_tokens, timer=timer, stop=stop,
                            llm=None if selection is None else selection.llm,
                            visual_token_id=self.video_token_id, report=report)
        text = self.processor.tokenizer.decode(ids, skip_special_tokens=True)
        if reduction is not None:
            report["reduction"] = reduction_record(reduction)
        tokens = TokenCounts(
            visual_before=prepared.native_tokens,
            visual_after=report["llm_pruning"]["visual_after"] if "llm_pruning" in report else int(kept.numel()),
            prompt=int(llm_inputs["input_ids"].shape[1]),
            generated=len(ids),
        )
        g = prepared.geometry
        return Generation(
            text=text,
            tokens=tokens,
            timings=dict(timer.seconds),
            peak_memory_mb=peak_memory_mb(self.device),
            kept_grid=None if reduction is None else reduction.keep.cpu(),
            extra={
                "prune_stage": prune_stage,
                "preprocess_s": preprocess_s,
                "model_size": [g.height, g.width],
                "token_grid": [g.grid_t, g.grid_h, g.grid_w],
                "text_positions": self.pipeline.text_positions,
                "output_ids": ids,
                **report,
            },
        )

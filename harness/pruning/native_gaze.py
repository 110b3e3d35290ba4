"""The ``native`` AutoGaze route: gaze at the ViT's own scales and patch size, as the authors do.

Why this exists: the mapped route (``harness.pruning.gaze_mapping``, policies ``expand`` /
``drop``) gazes 224-px tiles with AutoGaze's own 16-px cells and then projects those multi-scale
cells onto one model token grid, which inflates (``expand``) or discards (``drop``) gazes. The
authors' recipe (NVlabs/AutoGaze ``QUICK_START.md``, "Applying to Vision Encoders With Any Patch
Size or Input Size", and ``INTEGRATION.md``) instead calls AutoGaze with ``target_scales`` and
``target_patch_size`` equal to the ViT's, and the ViT embeds exactly the gazed patches, each at
its own scale. Then the LLM sees one token per gaze (plus the family's fixed tokens).

What an adapter states (``NativeTarget``): the square size its processor resizes frames to
(``resize``), the scales (ascending; the finest is the area the ViT's patch grid covers, cut
from the top-left of the resized frame exactly like a ``valid`` patch convolution does) and the
gaze cell size (``patch_size``, the ViT patch or, for towers that merge patches into one LLM
token, the merged footprint). This module gazes the frames at that target:

- every ``temporal_stride``-th frame (1; Qwen: 2, the first of each fused pair)
  -> AutoGaze's processor resize to ``resize`` px (its resample), top-left crop to the
  finest scale, AutoGaze normalisation;
- ``clip_len``-frame clips (the last padded by repeating its last frame; padded frames' gazes are
  dropped), ``batch_size`` clips per call, ``AutoGaze.gaze(..., target_scales, target_patch_size,
  independent_rows=True)`` (the authors' ``input_res_adapt``: pad to whole 224-px-equivalent
  tiles, gaze the tiles, stitch, crop the padding's gazes away);
- the per-scale masks of every frame -> one ``GazingInfo`` over the whole video (batch 1), ids
  ascending within a frame (scale by scale, raster order): the order the ViT and the LLM get.

The gaze count is AutoGaze's own: real (non-padded) gazes, summed over frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from harness.models.gazed_siglip import GazingInfo, MultiScaleLayout
from harness.pruning.gaze_mapping import temporal_union
from harness.pruning.selection import Selection, TokenGeometry


@dataclass(frozen=True)
class NativeTarget:
    """The ViT-side facts the native route gazes at (an adapter's ``native_target()``)."""

    scales: tuple[int, ...]  # ascending; scales[-1] = the finest = the side the patch grid covers
    patch_size: int  # side of one gaze cell at every scale (px)
    resize: int  # the processor's square frame size, >= scales[-1]
    temporal_stride: int = 1  # gaze every n-th frame (Qwen: the first frame of each fused pair)

    def __post_init__(self) -> None:
        if self.resize < self.scales[-1]:
            raise ValueError(
                f"native target: frames resized to {self.resize} px cannot hold scale {self.scales[-1]}"
            )
        MultiScaleLayout(tuple(self.scales), self.patch_size)  # validates order and divisibility

    @property
    def layout(self) -> MultiScaleLayout:
        return MultiScaleLayout(tuple(self.scales), self.patch_size)


#: Cells per side of each scale of the published AutoGaze on its 224-px tiles (32/64/112/224 px,
#: 16-px cells). A target keeps these ratios; AutoGaze needs as many scales as it was trained on.
AUTOGAZE_GRIDS = (2, 4, 7, 14)


def native_target_for(finest_grid: int, cell: int, resize: int) -> NativeTarget:
    """Scales for a ViT whose finest grid is ``finest_grid`` cells of ``cell`` px.

    Each coarser scale keeps AutoGaze's trained grid ratio (``AUTOGAZE_GRIDS``), rounded to whole
    cells (at least one, strictly ascending): 27 cells -> grids 4/8/14/27 (56/112/196/378 px at
    patch 14, LLaVA-OneVision); 28 -> 4/8/14/28 (the authors' 56/112/196/392 example).
    """
    top = AUTOGAZE_GRIDS[-1]
    grids: list[int] = []
    for g in AUTOGAZE_GRIDS[:-1]:
        want = max(1, round(finest_grid * g / top))
        grids.append(max(want, grids[-1] + 1) if grids else want)
    grids.append(finest_grid)
    if grids != sorted(set(grids)):
        raise ValueError(f"a {finest_grid}-cell grid is too small for {len(AUTOGAZE_GRIDS)} distinct scales")
    return NativeTarget(tuple(g * cell for g in grids), cell, resize)


def native_gaze_of(selection: Selection | None, target: NativeTarget, num_frames: int, family: str) -> NativeGaze | None:
    """The gazes an adapter's native route encodes, checked against its ViT; None if there are none.

    Only a ``NativeSelection`` (AutoGaze's ``select_native``) carries gazes. Any other selection
    (other pruners, the unpruned ``none`` run, the runner's warm-up) has none: the adapter then
    runs it as ``post_vit``, the family's stock path, so baselines and the unpruned reference stay
    comparable in a native run.
    """
    native = getattr(selection, "native", None)
    if native is None:
        return None
    if native.target != target:
        raise ValueError(f"{family}: gazes were made for {native.target}, this model's ViT needs {target}")
    if native.gazing.num_frames != num_frames:
        raise ValueError(f"{family}: gazes cover {native.gazing.num_frames} frames, {num_frames} given")
    return native


@dataclass
class NativeGaze:
    """AutoGaze's gazes of one video at a ``NativeTarget``: what the adapter's ViT encodes."""

    target: NativeTarget
    gazing: GazingInfo  # batch 1, all frames of the video
    seconds: float = 0.0

    @property
    def layout(self) -> MultiScaleLayout:
        return self.target.layout

    @property
    def gazed_per_frame(self) -> list[int]:
        real = ~self.gazing.if_padded_gazing[0]
        return [int(p.sum()) for p in real.split(self.gazing.num_gazing_each_frame.tolist())]

    @property
    def count(self) -> int:
        """AutoGaze's own gaze count: real gazes over every frame and scale."""
        return int(self.gazing.num_real()[0])

    def per_scale_counts(self) -> list[int]:
        return [int(m.sum()) for m in self.gazing.to_masks(self.layout)]

    @classmethod
    def full_finest(cls, target: NativeTarget, num_frames: int) -> NativeGaze:
        """Every cell of the finest scale and nothing coarser (the stock model's patches)."""
        layout = target.layout
        masks = [torch.zeros(1, num_frames, n, dtype=torch.bool) for n in layout.tokens_per_scale]
        masks[-1][:] = True
        return cls(target, GazingInfo.from_masks(masks, layout))


@dataclass
class NativeSelection(Selection):
    """A Selection for ``prune_stage: native``: the gazes themselves, not a token grid.

    ``keep`` is only the area the gazes cover on the model's usual token grid (every scale
    counted, as ``expand``), so evidence recall means the same as for the mapped route;
    ``num_kept`` and ``kept_per_group`` are AutoGaze's gaze counts, which are what the LLM sees.
    """

    native: NativeGaze | None = field(default=None)

    @property
    def num_kept(self) -> int:
        return self.native.count if self.native is not None else int(self.keep.sum())

    def kept_per_group(self) -> list[int]:
        return self.native.gazed_per_frame if self.native is not None else super().kept_per_group()


def coverage_grid(gaze: NativeGaze, geometry: TokenGeometry) -> torch.Tensor:
    """(grid_t, grid_h, grid_w) bool: model tokens whose area some gaze (any scale) covers."""
    from harness.gaze.tiling import VideoGaze

    layout = gaze.layout
    t = gaze.gazing.num_frames
    masks = [
        m[0].view(t, g, g).cpu() for m, g in zip(gaze.gazing.to_masks(layout), layout.grid_sizes, strict=True)
    ]
    side = layout.scales[-1]
    video = VideoGaze(np.arange(t), side, side, list(layout.scales), masks, np.zeros(t), 0, 0.0)
    grid = video.to_grid(geometry.grid_h, geometry.grid_w, "expand")
    if gaze.target.temporal_stride > 1:  # one gazed frame per temporal group already
        return grid
    return temporal_union(grid, geometry)


def native_frames(frames: np.ndarray, target: NativeTarget, processor: Any) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> AutoGaze-normalised (T, 3, S, S) over the ViT's area (S = finest scale)."""
    side = target.scales[-1]
    resized = processor.resize(frames, size={"height": target.resize, "width": target.resize})
    return processor.normalize(np.ascontiguousarray(resized[:, :side, :side]))


def gaze_native(
    model: Any,
    frames: np.ndarray,
    target: NativeTarget,
    *,
    gazing_ratio: float | None,
    task_loss_requirement: float | None,
    clip_len: int = 16,
    batch_size: int = 8,
    processor: Any = None,
    deterministic: bool = False,
) -> NativeGaze:
    """Gaze ``frames`` at ``target`` (see the module docstring for every step)."""
    from harness.gaze.tiling import _default_processor

    start = time.perf_counter()
    if processor is None:
        processor = _default_processor(model)
    video = native_frames(frames[:: target.temporal_stride], target, processor).to(model.device, model.dtype)
    t = video.shape[0]
    clips = []
    for s in range(0, t, clip_len):
        clip = video[s : s + clip_len]
        if clip.shape[0] < clip_len:
            clip = torch.cat([clip, clip[-1:].expand(clip_len - clip.shape[0], *clip.shape[1:])])
        clips.append(clip)
    layout = target.layout
    per_scale: list[list[torch.Tensor]] = [[] for _ in layout.scales]
    for b in range(0, len(clips), batch_size):
        out = model.gaze(
            torch.stack(clips[b : b + batch_size]),
            gazing_ratio=gazing_ratio,
            task_loss_requirement=task_loss_requirement,
            target_scales=list(target.scales),
            target_patch_size=target.patch_size,
            independent_rows=True,
            deterministic=deterministic,
        )
        for s, (mask, n) in enumerate(zip(out.gazing_mask, layout.tokens_per_scale, strict=True)):
            if mask.shape[-1] != n:
                raise ValueError(
                    f"AutoGaze returned {mask.shape[-1]} cells at scale {layout.scales[s]}, expected {n}"
                )
            per_scale[s].append(mask.bool().cpu().flatten(0, 1))
    masks = [torch.cat(m)[:t][None] for m in per_scale]  # (1, T, cells) per scale
    gazing = GazingInfo.from_masks(masks, layout)
    return NativeGaze(target, gazing, seconds=time.perf_counter() - start)


def select_for_native_stage(pruner: Any, adapter: Any, frames: Any, geometry: Any, budget: int | None,
                   fps: float | None) -> Any:
    """``prune_stage: native``: AutoGaze gazes at the adapter's own ViT scales (pruning/native_gaze.py).

    Other pruners (``none``, baselines at AutoGaze's matched count) select tokens as usual; the
    adapter runs those selections on its stock (``post_vit``) path, so one native run's records
    compare with the unpruned model and with baselines at the same LLM token count.
    """
    if not hasattr(pruner, "select_native"):
        return pruner.select(frames, geometry, budget=budget, fps=fps)
    if not hasattr(adapter, "native_target"):
        raise ValueError(f"prune_stage 'native' is not available for model family {getattr(adapter, 'name', '?')!r}")
    return pruner.select_native(frames, adapter.native_target(*frames.shape[:3]), geometry, fps=fps)

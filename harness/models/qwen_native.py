"""Qwen2.5-VL's native AutoGaze route (``prune_stage: native``): one gaze = one merged LLM token.

The design is in docs/pruning.md ("Qwen2.5-VL / Qwen3-VL"); this module implements it for
Qwen2.5-VL on the stock transformers modules:

- **Cell = the merged token** (2x2 patches of 14 px = 28 px). AutoGaze gazes 28-px cells at four
  scales (the processor's square frame size and three coarser ones at AutoGaze's ratios). The
  authors' tiling needs a square frame, so frames the processor resizes to a non-square size are
  refused with the reason.
- **Temporal pairs**: Qwen's Conv3d fuses frames ``2g`` and ``2g+1`` into one patch. AutoGaze
  gazes the first frame of each pair only (frames ``0, 2, 4, ...``), so each gaze is exactly one
  fused LLM token; the pair's second frame enters through the Conv3d at the gazed cells only.
- **ViT**: for each gazed cell, the 4 patches (each a 2-frame Conv3d patch) of its scale, cut by
  the stock processor from frames resized to that scale (its own antialiased bicubic resize; the
  finest scale is the stock ``pixel_values_videos``). The stock vision tower runs on them with
  precomputed inputs: 2D RoPE positions = each patch's (row, col) on its own scale's grid;
  full-attention segments (``cu_seqlens``) = one per temporal group, all scales together (per-group
  attention, what stock does; block-causal across groups is not expressible with ``cu_seqlens``);
  window attention = each scale's grid cut into its own windows. The stock PatchMerger folds each
  gaze's 4 patches into one token.
- **LLM**: the ``<|video_pad|>`` run holds exactly the gazes, in slot order (group, scale
  ascending, raster). M-RoPE positions: each token takes the stock (t, h, w) position of the
  finest-grid token under its cell's centre (a finest gaze: its own stock position), so every
  token sits where its pixels are; coarse tokens may share a position with a fine one. Text keeps
  its stock positions (those of the unpruned prompt), as in the other Qwen routes.
With every finest-scale cell gazed, every tensor equals the stock one (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.vision_utils import get_vision_position_ids

from harness.models.frames import resize_frames
from harness.pruning.native_gaze import NativeGaze, NativeTarget, native_target_for


def qwen_native_target(adapter, num_frames: int, height: int, width: int) -> NativeTarget:  # noqa: ANN001
    """28-px cells at four scales of the processor's (square) frame; gaze every other frame."""
    h, w = adapter._resized_hw(num_frames, height, width)
    if h != w:
        raise ValueError(
            f"{adapter.name}: the native route needs square frames after the processor's resize "
            f"(AutoGaze's tiling is square); {height}x{width} frames become {h}x{w}"
        )
    cell = adapter.patch_size * adapter.merge_size
    target = native_target_for(h // cell, cell, h)
    return NativeTarget(target.scales, target.patch_size, target.resize, adapter.temporal_patch_size)


def _scale_pixels(adapter, frames, side: int, fps: float) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """The stock processor's patches (and grid_thw) of ``frames`` resized to ``side`` x ``side``."""
    vp = adapter.processor.video_processor
    out = vp(
        videos=[resize_frames(frames, side, side)],
        do_resize=False,
        do_sample_frames=False,
        return_tensors="pt",
    )
    return out["pixel_values_videos"].to(adapter.device), out["video_grid_thw"].to(adapter.device)


@torch.inference_mode()
def encode_native(adapter, batch: dict, frames, gaze: NativeGaze, fps: float) -> torch.Tensor:  # noqa: ANN001
    """Merged LLM tokens of the gazes (K, D), slot order."""
    layout, m = gaze.layout, adapter.merge_size
    unit = m * m
    dev = adapter.device
    real = ~gaze.gazing.if_padded_gazing[0].cpu()
    pos = gaze.gazing.gazing_pos[0].cpu()[real]
    n = layout.tokens_per_frame
    group, local = pos // n, pos % n
    offsets = torch.tensor(layout.scale_offsets)
    scale_of = torch.bucketize(local, offsets[1:], right=True)
    k = pos.numel()
    pixels = None
    position_ids = torch.zeros(k * unit, 2, dtype=torch.long)
    vision = adapter.model.config.vision_config
    ws = vision.window_size // m // adapter.patch_size  # window side in merged units
    n_scales, big = len(layout.scales), max(layout.grid_sizes) // ws + 2
    keys = torch.zeros(k, dtype=torch.long)
    for s, (side, cells) in enumerate(zip(layout.scales, layout.grid_sizes, strict=True)):
        sel = (scale_of == s).nonzero().squeeze(-1)
        if sel.numel() == 0:
            continue
        if s == n_scales - 1:
            px, grid = batch["pixel_values_videos"], batch["video_grid_thw"]
        else:
            px, grid = _scale_pixels(adapter, frames, side, fps)
        cell = local[sel] - offsets[s]
        units = group[sel] * cells * cells + cell
        rows = (units[:, None] * unit + torch.arange(unit)).reshape(-1)
        slot_rows = (sel[:, None] * unit + torch.arange(unit)).reshape(-1)
        if pixels is None:
            pixels = px.new_zeros(k * unit, px.shape[-1])
        pixels[slot_rows.to(dev)] = px[rows.to(dev)]
        position_ids[slot_rows] = get_vision_position_ids(grid.cpu(), m)[rows]
        r, c = cell // cells, cell % cells
        keys[sel] = ((group[sel] * n_scales + s) * big + r // ws) * big + c // ws
    per_group = torch.bincount(group, minlength=gaze.gazing.num_frames)
    per_group = per_group[per_group > 0]
    cu_seqlens = F.pad((per_group * unit).cumsum(0), (1, 0)).to(torch.int32)
    window_index = torch.sort(keys, stable=True).indices
    _, counts = torch.unique_consecutive(keys[window_index], return_counts=True)
    cu_window_seqlens = F.pad((counts * unit).cumsum(0), (1, 0)).to(torch.int32)
    visual = adapter.model.model.visual
    out = visual(
        pixels.to(visual.dtype),
        grid_thw=batch["video_grid_thw"],
        position_ids=position_ids.to(dev),
        cu_seqlens=cu_seqlens.to(dev),
        window_index=window_index.to(dev),
        cu_window_seqlens=cu_window_seqlens.to(dev),
    )
    return out.pooler_output


def finest_token_of_slot(gaze: NativeGaze) -> torch.Tensor:
    """(K,) index of the finest-grid token under each gaze's cell centre (raster over group, row, col)."""
    layout = gaze.layout
    real = ~gaze.gazing.if_padded_gazing[0].cpu()
    pos = gaze.gazing.gazing_pos[0].cpu()[real]
    n = layout.tokens_per_frame
    group, local = pos // n, pos % n
    offsets = torch.tensor(layout.scale_offsets)
    grids = torch.tensor(layout.grid_sizes)
    s = torch.bucketize(local, offsets[1:], right=True)
    cells = grids[s]
    cell = local - offsets[s]
    fine = int(grids[-1])
    r = ((2 * (cell // cells) + 1) * fine) // (2 * cells)
    c = ((2 * (cell % cells) + 1) * fine) // (2 * cells)
    return group * fine * fine + r * fine + c


def native_llm_inputs(adapter, batch: dict, gaze: NativeGaze, features: torch.Tensor) -> dict:  # noqa: ANN001
    """``input_ids`` with exactly K video tokens; M-RoPE positions as the module docstring says."""
    input_ids = batch["input_ids"]
    ids = input_ids[0]
    video_cols = (ids == adapter.video_token_id).nonzero().squeeze(-1)
    start, end = int(video_cols[0]), int(video_cols[-1]) + 1
    if end - start != video_cols.numel():
        raise ValueError(f"{adapter.name}: the prompt must hold one contiguous run of video tokens")
    stock = adapter.rope_index(batch)  # (3, 1, L_full)
    fine = finest_token_of_slot(gaze).to(stock.device)
    video_pos = stock[:, :, start:end][:, :, fine]
    positions = torch.cat([stock[:, :, :start], video_pos, stock[:, :, end:]], dim=2)
    k = features.shape[0]
    new_ids = torch.cat([ids[:start], ids.new_full((k,), adapter.video_token_id), ids[end:]])[None]
    length = new_ids.shape[1]
    text_row = torch.arange(length, device=ids.device).view(1, 1, -1)
    from harness.models.qwen2_5_vl import VisualFeatures

    return {
        "input_ids": new_ids,
        "attention_mask": torch.ones(1, length, dtype=torch.long, device=ids.device),
        "position_ids": torch.cat([text_row, positions], dim=0),
        "mm_encoder_outputs": {"video": adapter.encoder_outputs(VisualFeatures(features))},
    }

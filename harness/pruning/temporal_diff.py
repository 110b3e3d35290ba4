"""``temporal_diff``: keep the tokens whose pixels changed most since the previous frame (RLT-style).

Run-Length Tokenization drops a patch when it barely differs from the same patch one frame
earlier; with a *budget* instead of a threshold that becomes a top-k:

- every token of the first temporal group is kept (there is no previous frame: it is the
  reference the later, sparser groups are read against);
- a later token's score is the mean absolute pixel difference (over RGB and the token's pixel
  square) between a frame of its group and the frame before it, taking the largest over the
  group's frames (Qwen's group t holds frames 2t, 2t+1: frame 2t is compared with 2t-1, the last
  frame of the previous group, and 2t+1 with 2t);
- the remaining budget goes to the highest scores; ties keep the earlier token (raster order),
  so a static video keeps its first groups. ``info["min_kept_change"]`` is the score of the
  weakest kept token: the threshold RLT would have needed to keep the same set.
- If the budget is below one group's tokens, the first group itself is thinned to an evenly
  spaced subset (raster order), so the kept count still equals the budget.

Token squares map onto pixels proportionally (adaptive average pooling), so frames at a size
slightly different from ``geometry`` still score the same image area.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.pruning.base import RatioPruner, group_frames
from harness.pruning.selection import Selection, TokenGeometry
from harness.pruning.uniform_frames import evenly_spaced

_CHUNK = 16  # frames differenced at once: bounds the float32 working set on long, large clips


def frame_change(frames: np.ndarray, grid_h: int, grid_w: int) -> torch.Tensor:
    """(T, grid_h, grid_w) mean |frame[f] - frame[f-1]| per token cell; row 0 is 0 (no previous)."""
    video = torch.from_numpy(frames)
    out = torch.zeros(video.shape[0], grid_h, grid_w)
    for start in range(1, video.shape[0], _CHUNK):
        stop = min(start + _CHUNK, video.shape[0])
        cur = video[start:stop].to(torch.int16)
        prev = video[start - 1 : stop - 1].to(torch.int16)
        diff = (cur - prev).abs().float().mean(-1)  # (n, H, W)
        out[start:stop] = F.adaptive_avg_pool2d(diff[:, None], (grid_h, grid_w))[:, 0]
    return out


def group_change(frames: np.ndarray, geometry: TokenGeometry) -> torch.Tensor:
    """(grid_t, grid_h, grid_w) score per token: the largest frame change among its group's frames."""
    per_frame = frame_change(frames, geometry.grid_h, geometry.grid_w)
    groups = group_frames(frames.shape[0], geometry)
    return torch.stack([per_frame[idx].amax(0) for idx in groups])


class TemporalDiffPruner(RatioPruner):
    name = "temporal_diff"

    def _select(
        self, frames: np.ndarray, geometry: TokenGeometry, budget: int | None, fps: float | None
    ) -> Selection:
        assert budget is not None  # resolved by Pruner.select
        per_group = geometry.tokens_per_group
        keep = torch.zeros(geometry.total_tokens, dtype=torch.bool)
        if budget <= per_group:
            keep[evenly_spaced(budget, per_group)] = True
            info: dict[str, Any] = {"min_kept_change": None}
        else:
            scores = group_change(frames, geometry).flatten()
            scores[:per_group] = float("inf")
            order = torch.sort(scores, descending=True, stable=True).indices[:budget]
            keep[order] = True
            info = {"min_kept_change": float(scores[order[-1]])}
        return Selection(geometry, keep.view(geometry.grid_t, geometry.grid_h, geometry.grid_w), info=info)

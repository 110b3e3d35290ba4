"""Map AutoGaze's multi-scale, per-frame gazes onto a model's token grid (see docs/pruning.md).

Two steps, each a documented policy:

1. **Spatial** (per frame), done by ``harness.gaze.tiling.VideoGaze.to_grid(rows, cols, policy)``
   on the model's ``grid_h x grid_w`` LLM-token grid over the same frame area: a token is kept
   if its centre lies in a gazed cell of a counted scale, or a counted gazed cell's centre lies
   in it. ``expand`` counts every scale (a coarse gaze keeps every token it covers); ``drop``
   counts the finest scale only.
2. **Temporal** (here): a token of temporal group ``g`` (covering ``temporal_patch_size``
   frames) is kept when it is kept in ANY of its frames (union): the model fuses those frames
   into one token, so dropping it would discard a region AutoGaze looked at.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from harness.pruning.base import PruningError, group_frames
from harness.pruning.selection import TokenGeometry

POLICIES: tuple[str, ...] = ("expand", "drop")


class GazeLike(Protocol):
    """What the autogaze pruner needs from ``harness.gaze.tiling.VideoGaze``."""

    seconds: float

    def to_grid(self, rows: int, cols: int, policy: str) -> np.ndarray | torch.Tensor:
        """Per-frame bool (T, rows, cols) of model tokens the gaze keeps under ``policy``."""
        ...


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise PruningError(f"unknown gaze mapping policy {policy!r}; valid choices: {', '.join(POLICIES)}")
    return policy


def temporal_union(per_frame: torch.Tensor | np.ndarray, geometry: TokenGeometry) -> torch.Tensor:
    """Per-frame (T, grid_h, grid_w) keep -> per-group (grid_t, grid_h, grid_w): OR over the group's frames.

    A group past the clip's end (the model pads by repeating the last frame) uses the last frame.
    """
    if not isinstance(per_frame, torch.Tensor):
        per_frame = torch.from_numpy(np.asarray(per_frame))
    expected = (geometry.grid_h, geometry.grid_w)
    if per_frame.ndim != 3 or tuple(per_frame.shape[1:]) != expected:
        raise PruningError(
            f"per-frame gaze grid must be (T, {expected[0]}, {expected[1]}), got {tuple(per_frame.shape)}"
        )
    per_frame = per_frame.bool()
    groups = group_frames(per_frame.shape[0], geometry)
    return torch.stack([per_frame[idx].any(0) for idx in groups])

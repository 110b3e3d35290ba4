"""Map AutoGaze's multi-scale, per-frame gazes onto a model's single-scale token grid.

Two steps, each a documented policy (see docs/pruning.md):

1. **Spatial** (per frame): AutoGaze gazes cells at several scales over the frame (e.g. 2x2,
   4x4, 7x7 and 14x14 cells per 224 px tile); the model has one grid of ``rows x cols`` LLM
   tokens over the *same frame area*. A token is kept when its area overlaps a gazed cell
   (any positive overlap, computed exactly in integers: conservative, a gaze is never lost; at
   cell boundaries that keeps a token that is only partly gazed). Which cells count is the
   policy: ``expand`` = every scale (a coarse gaze keeps every token it covers), ``drop`` = the
   finest scale only (coarse gazes are ignored).
2. **Temporal**: a token of temporal group ``g`` (covering ``temporal_patch_size`` frames) is
   kept when it is kept in ANY of its frames (union): the model fuses those frames into one
   token, so dropping it would discard a region AutoGaze looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np
import torch

from harness.pruning.base import PruningError, group_frames
from harness.pruning.selection import TokenGeometry

Policy = Literal["expand", "drop"]
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


def overlap_matrix(tokens: int, cells: int) -> torch.Tensor:
    """(tokens, cells) bool: token interval i/tokens..(i+1)/tokens overlaps cell j/cells..(j+1)/cells.

    Both partitions of [0, 1) are scaled by ``tokens * cells`` so the test is exact in integers.
    """
    t = torch.arange(tokens)[:, None]
    c = torch.arange(cells)[None, :]
    return (t * cells < (c + 1) * tokens) & (c * tokens < (t + 1) * cells)


def project_scale(mask: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """One scale's (T, h, w) gazed-cell mask -> (T, rows, cols) tokens overlapping a gazed cell."""
    _, h, w = mask.shape
    oh = overlap_matrix(rows, h).float()
    ow = overlap_matrix(cols, w).float()
    return (oh @ mask.float() @ ow.T) > 0


def project_scales(scale_masks: Sequence[torch.Tensor], rows: int, cols: int, policy: str) -> torch.Tensor:
    """Multi-scale gazes (each (T, h_s, w_s) bool over the whole frame) -> (T, rows, cols) bool.

    ``expand`` ORs every scale's projection; ``drop`` projects only the finest (most cells) scale.
    """
    check_policy(policy)
    if not scale_masks:
        raise PruningError("project_scales: no scale masks given")
    masks = [torch.as_tensor(np.asarray(m) if not isinstance(m, torch.Tensor) else m).bool() for m in scale_masks]
    if policy == "drop":
        masks = [max(masks, key=lambda m: m.shape[1] * m.shape[2])]
    out = torch.zeros(masks[0].shape[0], rows, cols, dtype=torch.bool)
    for m in masks:
        out |= project_scale(m, rows, cols)
    return out


def temporal_union(per_frame: torch.Tensor | np.ndarray, geometry: TokenGeometry) -> torch.Tensor:
    """Per-frame (T, grid_h, grid_w) keep -> per-group (grid_t, grid_h, grid_w): OR over the group's frames."""
    per_frame = torch.as_tensor(np.asarray(per_frame) if not isinstance(per_frame, torch.Tensor) else per_frame)
    expected = (geometry.grid_h, geometry.grid_w)
    if per_frame.ndim != 3 or tuple(per_frame.shape[1:]) != expected:
        raise PruningError(f"per-frame gaze grid must be (T, {expected[0]}, {expected[1]}), got {tuple(per_frame.shape)}")
    per_frame = per_frame.bool()
    groups = group_frames(per_frame.shape[0], geometry)
    return torch.stack([per_frame[idx].any(0) for idx in groups])

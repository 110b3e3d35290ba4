"""Pruner-only metrics: did the kept visual tokens cover where the answer is?

A benchmark sample with ``evidence`` (frames [start, end) and a pixel box in the source
video) lets a pruner be judged without any MLLM: map the evidence onto the model's token
grid (``TokenGeometry``: a token in temporal group t covers model frames
[t * tp, (t + 1) * tp) and a square of ``patch_size * spatial_merge_size`` pixels), then

- **evidence recall** = kept evidence tokens / evidence tokens;
- **evidence hit** = at least one evidence token kept.

Model frames are mapped back to source frames with ``frame_indices`` (which source frame each
model frame is; default: the identity) and the box is scaled from ``source_size`` (W, H) to the
geometry's pixels (default: same size). A token counts as evidence when one of its frames is
an evidence frame and its pixel square overlaps the box with positive area. When the sampled
frames miss the evidence entirely there is nothing to recall: recall is NaN, hit is False.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from benchmarks.base import Evidence, Sample
from harness.pruning.selection import Selection, TokenGeometry


def evidence_mask(
    sample: Sample | Sequence[Evidence],
    geometry: TokenGeometry,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    source_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Bool (grid_t, grid_h, grid_w): the tokens that show evidence."""
    evidence = sample.evidence if isinstance(sample, Sample) else list(sample)
    if not evidence:
        name = sample.id if isinstance(sample, Sample) else "evidence list"
        raise ValueError(f"{name}: no evidence to score against (only synthetic samples carry it)")
    g = geometry
    frames = np.arange(g.num_frames) if frame_indices is None else np.asarray(frame_indices, dtype=np.int64)
    if len(frames) != g.num_frames:
        raise ValueError(
            f"frame_indices has {len(frames)} entries but the geometry has {g.num_frames} frames"
        )
    src_w, src_h = source_size if source_size is not None else (g.width, g.height)
    sx, sy = g.width / src_w, g.height / src_h
    px = g.patch_size * g.spatial_merge_size
    tp = g.temporal_patch_size
    mask = torch.zeros(g.grid_t, g.grid_h, g.grid_w, dtype=torch.bool)
    for ev in evidence:
        x0, y0, x1, y1 = ev.box
        c0, c1 = _covered(x0 * sx, x1 * sx, px, g.grid_w)
        r0, r1 = _covered(y0 * sy, y1 * sy, px, g.grid_h)
        if c0 >= c1 or r0 >= r1:
            continue
        for t in range(g.grid_t):
            group = frames[t * tp : (t + 1) * tp]
            if np.any((group >= ev.frame_start) & (group < ev.frame_end)):
                mask[t, r0:r1, c0:c1] = True
    return mask


def _covered(lo: float, hi: float, size: int, count: int) -> tuple[int, int]:
    """Token index range [first, last + 1) whose [i * size, (i + 1) * size) overlaps [lo, hi)."""
    first = max(0, math.floor(lo / size))
    last = min(count, math.ceil(hi / size))
    return first, last


def _keep_and_geometry(
    selection_or_mask: Selection | torch.Tensor | np.ndarray, geometry: TokenGeometry | None
):
    if isinstance(selection_or_mask, Selection):
        return selection_or_mask.keep, geometry or selection_or_mask.geometry
    if geometry is None:
        raise ValueError("a bare keep mask needs its TokenGeometry")
    keep = torch.as_tensor(np.asarray(selection_or_mask)).bool()
    expected = (geometry.grid_t, geometry.grid_h, geometry.grid_w)
    if tuple(keep.shape) != expected:
        raise ValueError(f"keep mask shape {tuple(keep.shape)} does not match the geometry grid {expected}")
    return keep, geometry


def evidence_recall(
    selection_or_mask: Selection | torch.Tensor | np.ndarray,
    sample: Sample | Sequence[Evidence],
    geometry: TokenGeometry | None = None,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    source_size: tuple[int, int] | None = None,
) -> float:
    """Share of evidence tokens kept (NaN when the sampled frames contain no evidence)."""
    keep, geometry = _keep_and_geometry(selection_or_mask, geometry)
    ev = evidence_mask(sample, geometry, frame_indices, source_size)
    total = int(ev.sum())
    if total == 0:
        return float("nan")
    return int((keep & ev).sum()) / total


def evidence_hit(
    selection_or_mask: Selection | torch.Tensor | np.ndarray,
    sample: Sample | Sequence[Evidence],
    geometry: TokenGeometry | None = None,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    source_size: tuple[int, int] | None = None,
) -> bool:
    """Whether any evidence token was kept."""
    keep, geometry = _keep_and_geometry(selection_or_mask, geometry)
    ev = evidence_mask(sample, geometry, frame_indices, source_size)
    return bool((keep & ev).any())

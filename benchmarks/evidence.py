"""Pruner-only metrics: did the kept visual tokens cover where the answer is, and at what cost?

A benchmark sample with ``evidence`` (frames [start, end), a pixel box in the source video and
the size of its finest detail) lets a pruner be judged without any MLLM. The evidence is mapped
onto the model's token grid (``TokenGeometry``: a token in temporal group t covers model frames
[t * tp, (t + 1) * tp) and a square of ``patch_size * spatial_merge_size`` pixels); model frames
map back to source frames through ``frame_indices`` (default: the identity) and the box is
scaled from ``source_size`` (W, H) to the geometry's pixels.

Per sample (``score_evidence`` -> ``EvidenceScores``):

- **coverage**: the share of the evidence box's pixels that were kept in at least one sampled
  evidence frame (union over time: a plate kept once, whole, has been seen; keeping it again in
  later frames adds nothing, which is exactly what a redundancy-removing pruner exploits). Pixel
  weighted, so a box spread over several tokens scores partial credit, not all-or-nothing.
- **recall**: coverage, but 0 when the evidence is illegible at the resolution the selection
  is seen at (``detail_px`` times the scale below one pixel: e.g. the ``downsample`` baseline
  shrinking a small code) and 0 when the sampled frames miss the evidence ("missed"). Misses
  are never NaN and never dropped: they lower recall, and ``reason`` says why.
- **kept_share**: kept tokens / tokens of the *native* geometry (what the model would have seen
  unpruned; for ``downsample`` the pre-downsampling grid from ``selection.info["native_size"]``).
- **chance**: the expected recall of a uniformly random mask with the same number of kept tokens
  on the native grid (exact: a cell seen in n evidence groups is kept at least once with
  probability 1 - C(N - n, k) / C(N, k)).
- **skill** = (recall - chance) / (1 - chance): 0 for random at any budget, 1 for a mask that
  keeps the whole evidence, 0 for keep-everything (it is charged its full budget: chance = 1),
  negative for worse than random (a fixed corner mask on needles placed anywhere). NaN only
  when nothing could have been found at the native resolution (``findable`` False: missed by
  the sampled frames or illegible unpruned); those samples are counted in their own column.
- **hit**: recall >= ``HIT_COVERAGE`` (half the evidence legibly kept). A mask that keeps only a
  distractor plate scores no coverage and no hit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from benchmarks.base import Evidence, Sample
from harness.pruning.selection import Selection, TokenGeometry

HIT_COVERAGE = 0.5  # recall at or above which a sample counts as a hit
LEGIBLE_PX = 0.8  # finest detail, in model pixels, still legible: a 1 px stroke survives 256->252 rows, not halving


@dataclass(frozen=True)
class EvidenceScores:
    """One selection's evidence scores on one sample (see the module docstring)."""

    recall: float
    coverage: float  # NaN when no sampled frame shows the evidence
    kept_share: float
    chance: float
    skill: float  # NaN when not findable
    hit: bool
    findable: bool
    reason: str | None  # "missed" (sampled frames miss it), "illegible" (too small at this scale), None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _evidence_list(sample: Sample | Sequence[Evidence]) -> list[Evidence]:
    evidence = sample.evidence if isinstance(sample, Sample) else list(sample)
    if not evidence:
        name = sample.id if isinstance(sample, Sample) else "evidence list"
        raise ValueError(f"{name}: no evidence to score against (only synthetic samples carry it)")
    return list(evidence)


def _frames(geometry: TokenGeometry, frame_indices: Sequence[int] | np.ndarray | None) -> np.ndarray:
    frames = np.arange(geometry.num_frames) if frame_indices is None else np.asarray(frame_indices, dtype=np.int64)
    if len(frames) != geometry.num_frames:
        raise ValueError(
            f"frame_indices has {len(frames)} entries but the geometry has {geometry.num_frames} frames"
        )
    return frames


def _groups(ev: Evidence, geometry: TokenGeometry, frames: np.ndarray) -> list[int]:
    """Temporal groups holding at least one sampled evidence frame."""
    tp = geometry.temporal_patch_size
    return [
        t
        for t in range(geometry.grid_t)
        if np.any((frames[t * tp : (t + 1) * tp] >= ev.frame_start) & (frames[t * tp : (t + 1) * tp] < ev.frame_end))
    ]


def _overlap(lo: float, hi: float, size: int, count: int) -> np.ndarray:
    """(count,) length of [lo, hi) inside each cell [i * size, (i + 1) * size)."""
    edges = np.arange(count + 1, dtype=np.float64) * size
    return np.clip(np.minimum(hi, edges[1:]) - np.maximum(lo, edges[:-1]), 0, None)


def _scale(geometry: TokenGeometry, source_size: tuple[int, int] | None) -> tuple[float, float]:
    src_w, src_h = source_size if source_size is not None else (geometry.width, geometry.height)
    return geometry.width / src_w, geometry.height / src_h


def _area(ev: Evidence, geometry: TokenGeometry, source_size: tuple[int, int] | None) -> np.ndarray:
    """(grid_h, grid_w) pixels of the box inside each token cell, in the geometry's pixels."""
    sx, sy = _scale(geometry, source_size)
    px = geometry.patch_size * geometry.spatial_merge_size
    x0, y0, x1, y1 = ev.box
    return np.outer(_overlap(y0 * sy, y1 * sy, px, geometry.grid_h), _overlap(x0 * sx, x1 * sx, px, geometry.grid_w))


def _legible(ev: Evidence, geometry: TokenGeometry, source_size: tuple[int, int] | None) -> bool:
    if ev.detail_px is None:
        return True
    return ev.detail_px * min(_scale(geometry, source_size)) >= LEGIBLE_PX


def evidence_mask(
    sample: Sample | Sequence[Evidence],
    geometry: TokenGeometry,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    source_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Bool (grid_t, grid_h, grid_w): the tokens that show evidence (box overlap > 0, evidence frame)."""
    frames = _frames(geometry, frame_indices)
    mask = torch.zeros(geometry.grid_t, geometry.grid_h, geometry.grid_w, dtype=torch.bool)
    for ev in _evidence_list(sample):
        cells = torch.from_numpy(_area(ev, geometry, source_size) > 0)
        for t in _groups(ev, geometry, frames):
            mask[t] |= cells
    return mask


def native_geometry(selection: Selection) -> TokenGeometry:
    """The grid the model would have used unpruned (``downsample`` records its native size in info)."""
    size = (selection.info or {}).get("native_size")
    if size is None:
        return selection.geometry
    return replace(selection.geometry, height=int(size[0]), width=int(size[1]))


def _keep_and_geometry(
    selection_or_mask: Selection | torch.Tensor | np.ndarray, geometry: TokenGeometry | None
) -> tuple[torch.Tensor, TokenGeometry]:
    if isinstance(selection_or_mask, Selection):
        return selection_or_mask.keep, geometry or selection_or_mask.geometry
    if geometry is None:
        raise ValueError("a bare keep mask needs its TokenGeometry")
    keep = torch.as_tensor(np.asarray(selection_or_mask)).bool()
    expected = (geometry.grid_t, geometry.grid_h, geometry.grid_w)
    if tuple(keep.shape) != expected:
        raise ValueError(f"keep mask shape {tuple(keep.shape)} does not match the geometry grid {expected}")
    return keep, geometry


def chance_recall(
    evidence: Sequence[Evidence],
    geometry: TokenGeometry,
    kept: int,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    source_size: tuple[int, int] | None = None,
) -> float:
    """Expected recall of ``kept`` tokens drawn uniformly without replacement from ``geometry``.

    Coverage is linear in the cells, so the expectation is exact: a cell that shows evidence in
    n groups is kept at least once with probability 1 - prod_i (N - k - i) / (N - i). NaN when no
    sampled frame shows the evidence.
    """
    frames = _frames(geometry, frame_indices)
    total_tokens = geometry.total_tokens
    k = min(max(int(kept), 0), total_tokens)
    num = den = 0.0
    for ev in evidence:
        n = len(_groups(ev, geometry, frames))
        if n == 0:
            continue
        area = float(_area(ev, geometry, source_size).sum())
        den += area
        if not _legible(ev, geometry, source_size):
            continue
        none_kept = float(np.prod([(total_tokens - k - i) / (total_tokens - i) for i in range(n)]))
        num += area * (1.0 - max(none_kept, 0.0))
    return num / den if den else math.nan


def score_evidence(
    selection_or_mask: Selection | torch.Tensor | np.ndarray,
    sample: Sample | Sequence[Evidence],
    geometry: TokenGeometry | None = None,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    source_size: tuple[int, int] | None = None,
    native: TokenGeometry | None = None,
) -> EvidenceScores:
    """All evidence scores of one selection (or bare keep mask + geometry) on one sample.

    ``native``: the unpruned grid the budget is charged against (default: the selection's
    ``native_geometry``, i.e. its own grid unless it is a downsampled one). ``source_size``
    (W, H) of the evidence boxes' pixels; default: the native grid's.
    """
    keep, geometry = _keep_and_geometry(selection_or_mask, geometry)
    if native is None:
        native = native_geometry(selection_or_mask) if isinstance(selection_or_mask, Selection) else geometry
    if source_size is None:  # boxes are in the native grid's pixels (a downsampled grid is scaled to them)
        source_size = (native.width, native.height)
    evidence = _evidence_list(sample)
    frames = _frames(geometry, frame_indices)
    covered = legible_covered = total = 0.0
    findable = legible_seen = False
    native_frames = _frames(native, frame_indices)
    for ev in evidence:
        groups = _groups(ev, geometry, frames)
        if groups:
            area = _area(ev, geometry, source_size)
            seen = keep[groups].any(0).numpy()
            got = float((area * seen).sum())
            covered += got
            total += float(area.sum())
            if _legible(ev, geometry, source_size):
                legible_covered += got
                legible_seen = True
        if _groups(ev, native, native_frames) and _legible(ev, native, source_size):
            findable = True
    coverage = covered / total if total else math.nan
    recall = legible_covered / total if total else 0.0
    reason = "missed" if not total else (None if legible_seen else "illegible")
    kept = int(keep.sum())
    kept_share = kept / native.total_tokens
    chance = chance_recall(evidence, native, kept, frame_indices, source_size)
    if not findable:
        skill = math.nan
    elif chance >= 1.0 - 1e-12:
        skill = 0.0  # everything (or enough to cover everything) kept: no skill, charged the full budget
    else:
        skill = (recall - chance) / (1.0 - chance)
    return EvidenceScores(
        recall=recall,
        coverage=coverage,
        kept_share=kept_share,
        chance=chance if not math.isnan(chance) else 0.0,
        skill=skill,
        hit=recall >= HIT_COVERAGE,
        findable=findable,
        reason=reason,
    )


def evidence_recall(
    selection_or_mask: Selection | torch.Tensor | np.ndarray,
    sample: Sample | Sequence[Evidence],
    geometry: TokenGeometry | None = None,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    source_size: tuple[int, int] | None = None,
) -> float:
    """Legible pixel coverage of the evidence (0 when the sampled frames miss it)."""
    return score_evidence(selection_or_mask, sample, geometry, frame_indices, source_size).recall


def evidence_hit(
    selection_or_mask: Selection | torch.Tensor | np.ndarray,
    sample: Sample | Sequence[Evidence],
    geometry: TokenGeometry | None = None,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    source_size: tuple[int, int] | None = None,
) -> bool:
    """Whether at least ``HIT_COVERAGE`` of the evidence was legibly kept."""
    return score_evidence(selection_or_mask, sample, geometry, frame_indices, source_size).hit

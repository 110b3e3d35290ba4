"""The autogaze pruner: multi-scale gaze -> model grid (expand/drop), temporal union, end to end."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from harness.pruning import PruningError, TokenGeometry, build_pruner
from harness.pruning.autogaze import AutoGazePruner, resolve_model_dir, selection_from_gaze
from harness.pruning.gaze_mapping import overlap_matrix, project_scales, temporal_union

SCALES = (2, 4, 7, 14)  # AutoGaze's cells per 224 px tile side at scales 32+64+112+224, patch 16


@dataclass
class HandMadeGaze:
    """A VideoGaze look-alike: per-scale (T, side, side) masks over the whole frame."""

    scale_masks: list[torch.Tensor]
    seconds: float = 0.25
    gazed_per_frame: list[int] = field(default_factory=list)

    def to_grid(self, rows: int, cols: int, policy: str) -> torch.Tensor:
        return project_scales(self.scale_masks, rows, cols, policy)


def empty_gaze(frames: int) -> list[torch.Tensor]:
    return [torch.zeros(frames, s, s, dtype=torch.bool) for s in SCALES]


def raster_reference(scale_masks, rows: int, cols: int, policy: str, size: int = 224) -> torch.Tensor:
    """Independent check: paint gazed cells onto a pixel canvas, keep tokens holding a painted pixel."""
    masks = scale_masks if policy == "expand" else [max(scale_masks, key=lambda m: m.shape[1])]
    t = masks[0].shape[0]
    canvas = torch.zeros(t, size, size, dtype=torch.bool)
    for m in masks:
        side = m.shape[1]
        canvas |= m.repeat_interleave(size // side, 1).repeat_interleave(size // side, 2)
    th, tw = size // rows, size // cols
    return canvas.view(t, rows, th, cols, tw).any(4).any(2)


def test_overlap_matrix_matches_real_intervals():
    for tokens, cells in [(8, 14), (14, 8), (6, 7), (16, 4), (5, 5)]:
        got = overlap_matrix(tokens, cells)
        for i in range(tokens):
            for j in range(cells):
                lo = max(i / tokens, j / cells)
                hi = min((i + 1) / tokens, (j + 1) / cells)
                assert bool(got[i, j]) == (hi - lo > 1e-12), (tokens, cells, i, j)


def test_coarse_gaze_expands_to_every_token_it_covers_and_drop_ignores_it():
    masks = empty_gaze(1)
    masks[0][0, 0, 0] = True  # top-left 112x112 cell of the 2x2 scale
    expand = project_scales(masks, 8, 8, "expand")[0]
    want = torch.zeros(8, 8, dtype=torch.bool)
    want[:4, :4] = True
    assert torch.equal(expand, want)
    assert not project_scales(masks, 8, 8, "drop").any()


def test_finest_gaze_counts_under_both_policies():
    masks = empty_gaze(1)
    masks[3][0, 0, 0] = True  # px 0..16: inside token (0, 0) of 28 px
    masks[3][0, 1, 3] = True  # rows 16..32 -> tokens 0, 1; cols 48..64 -> tokens 1, 2
    for policy in ("expand", "drop"):
        kept = project_scales(masks, 8, 8, policy)[0].nonzero().tolist()
        assert kept == [[0, 0], [0, 1], [0, 2], [1, 1], [1, 2]], policy


@pytest.mark.parametrize(("rows", "cols"), [(8, 8), (4, 4), (16, 16), (2, 8)])
def test_projection_equals_the_pixel_raster_reference(rows, cols):
    gen = torch.Generator().manual_seed(rows * 31 + cols)
    masks = [torch.rand(3, s, s, generator=gen) < 0.08 for s in SCALES]
    for policy in ("expand", "drop"):
        got = project_scales(masks, rows, cols, policy)
        assert torch.equal(got, raster_reference(masks, rows, cols, policy)), policy
        assert got.shape == (3, rows, cols) and got.dtype == torch.bool


def test_expand_is_a_superset_of_drop():
    gen = torch.Generator().manual_seed(0)
    masks = [torch.rand(4, s, s, generator=gen) < 0.1 for s in SCALES]
    expand, drop = (project_scales(masks, 12, 9, p) for p in ("expand", "drop"))
    assert (drop & ~expand).sum() == 0 and expand.sum() > drop.sum()


def test_unknown_policy_is_rejected_with_choices():
    with pytest.raises(PruningError, match="valid choices: expand, drop"):
        project_scales(empty_gaze(1), 8, 8, "union")
    with pytest.raises(PruningError, match="valid choices: expand, drop"):
        build_pruner("autogaze", policy="both")


def test_temporal_union_keeps_a_token_gazed_in_any_frame_of_its_group():
    geometry = TokenGeometry(num_frames=4, height=56, width=56, patch_size=14, temporal_patch_size=2, spatial_merge_size=2)
    per_frame = torch.zeros(4, 2, 2, dtype=torch.bool)
    per_frame[0, 0, 0] = True
    per_frame[1, 1, 1] = True
    per_frame[3, 0, 1] = True
    keep = temporal_union(per_frame, geometry)
    assert keep.tolist() == [[[True, False], [False, True]], [[False, True], [False, False]]]
    per_frame_only = TokenGeometry(num_frames=4, height=56, width=56, patch_size=14, spatial_merge_size=2)
    assert torch.equal(temporal_union(per_frame, per_frame_only), per_frame)
    with pytest.raises(PruningError, match="per-frame gaze grid"):
        temporal_union(per_frame[:, :1], geometry)


def test_pruner_maps_a_hand_made_gaze(monkeypatch):
    """The pruner's whole mapping path (policy, union, info) on a gaze we control."""
    geometry = TokenGeometry(num_frames=4, height=224, width=224, patch_size=14, temporal_patch_size=2, spatial_merge_size=2)
    masks = empty_gaze(4)
    masks[0][1, 1, 1] = True  # frame 1, coarse bottom-right quadrant -> group 0, 16 tokens (expand)
    masks[3][2, 0, 0] = True  # frame 2, finest top-left cell -> group 1, token (0, 0)
    gaze = HandMadeGaze(masks, gazed_per_frame=[0, 1, 1, 0])
    frames = np.zeros((4, 224, 224, 3), np.uint8)
    for policy, kept in (("expand", 17), ("drop", 1)):
        pruner = build_pruner("autogaze", policy=policy, gazing_ratio=0.5)
        monkeypatch.setattr(pruner, "gaze", lambda f, g=gaze: g)
        sel = pruner.select(frames, geometry, budget=3)
        assert sel.num_kept == kept and sel.keep[1, 0, 0]
        assert sel.keep[0, 4:, 4:].all() == (policy == "expand")
        assert sel.info["policy"] == policy and sel.info["gaze_seconds"] == 0.25
        assert sel.info["gazed_per_frame"] == [0, 1, 1, 0] and sel.info["gazed_total"] == 2
        assert sel.info["budget"] is None and sel.info["budget_ignored"] == 3
        assert sel.info["params"]["gazing_ratio"] == 0.5 and sel.pruner == "autogaze"
    assert selection_from_gaze(gaze, geometry, "drop").num_kept == 1


def test_autogaze_param_validation_and_model_resolution(tmp_path):
    with pytest.raises(PruningError, match="gazing_ratio"):
        AutoGazePruner(gazing_ratio=0.0)
    with pytest.raises(PruningError, match="unknown parameter"):
        build_pruner("autogaze", ratio=0.3)
    assert resolve_model_dir(str(tmp_path)) == tmp_path
    with pytest.raises(PruningError, match="not a checkpoint directory"):
        resolve_model_dir(str(tmp_path / "missing"))
    with pytest.raises(PruningError, match="HF cache"):
        resolve_model_dir("nobody-here/not-a-cached-model")

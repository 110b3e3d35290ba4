"""The native AutoGaze route's pieces: targets, gazes at a ViT's scales, prompt rebuilding, runner dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.models.gazed_siglip import GazingInfo
from harness.models.rope1d import native_sequence
from harness.pruning.native_gaze import (
    NativeGaze,
    NativeSelection,
    NativeTarget,
    coverage_grid,
    native_gaze_of,
    native_target_for,
)
from harness.pruning.native_gaze import select_for_native_stage as _select_native
from harness.pruning.selection import Selection, TokenGeometry
from harness.runner.engine import _gaze_count
from harness.runner.schema import SampleRecord, SelectionSummary


def test_targets_keep_autogaze_ratios_in_whole_cells():
    assert native_target_for(28, 14, 392).scales == (56, 112, 196, 392)  # the authors' SigLIP2 example
    assert native_target_for(27, 14, 384).scales == (56, 112, 196, 378)  # LLaVA-OV 384: the conv's grid
    assert native_target_for(16, 28, 448).scales == (56, 140, 224, 448)  # InternVL3 448, 28-px tokens
    assert native_target_for(14, 16, 224).scales == (32, 64, 112, 224)  # AutoGaze's own
    assert native_target_for(4, 28, 112).scales == (28, 56, 84, 112)  # tiny: kept distinct
    with pytest.raises(ValueError, match="too small"):
        native_target_for(2, 14, 28)
    with pytest.raises(ValueError, match="cannot hold"):
        NativeTarget((14, 28), 14, 20)
    with pytest.raises(ValueError, match="multiple"):
        NativeTarget((14, 30), 14, 30)


def test_full_finest_gazes_every_finest_cell_only():
    target = native_target_for(4, 28, 112)
    gaze = NativeGaze.full_finest(target, 3)
    assert gaze.count == 3 * 16 and gaze.gazed_per_frame == [16, 16, 16]
    assert gaze.per_scale_counts() == [0, 0, 0, 48]


def test_coverage_grid_counts_every_scale():
    target = native_target_for(4, 28, 112)  # grids 1/2/3/4 cells over 112 px
    layout = target.layout
    masks = [torch.zeros(1, 2, n, dtype=torch.bool) for n in layout.tokens_per_scale]
    masks[1][0, 0, 0] = True  # frame 0: the top-left cell of the 2x2 scale = a quarter of the frame
    masks[3][0, 1, 15] = True  # frame 1: the bottom-right finest cell
    gaze = NativeGaze(target, GazingInfo.from_masks(masks, layout))
    geometry = TokenGeometry(num_frames=2, height=112, width=112, patch_size=14, spatial_merge_size=2)
    keep = coverage_grid(gaze, geometry)
    expected0 = torch.zeros(4, 4, dtype=torch.bool)
    expected0[:2, :2] = True
    assert torch.equal(keep[0], expected0)
    assert keep[1].sum() == 1 and bool(keep[1, 3, 3])
    sel = NativeSelection(geometry, keep, native=gaze)
    assert sel.num_kept == gaze.count == 2 and sel.kept_per_group() == [1, 1]  # gazes, not covered tokens


def test_native_gaze_of_checks_target_and_frames():
    target = native_target_for(4, 28, 112)
    geometry = TokenGeometry(num_frames=2, height=112, width=112, patch_size=14, spatial_merge_size=2)
    gaze = NativeGaze.full_finest(target, 2)
    sel = NativeSelection(geometry, torch.ones(2, 4, 4, dtype=torch.bool), native=gaze)
    assert native_gaze_of(sel, target, 2, "x") is gaze
    assert native_gaze_of(Selection.keep_all(geometry), target, 2, "x") is None
    assert native_gaze_of(None, target, 2, "x") is None
    with pytest.raises(ValueError, match="frames"):
        native_gaze_of(sel, target, 3, "x")
    with pytest.raises(ValueError, match="were made for"):
        native_gaze_of(sel, native_target_for(4, 14, 56), 2, "x")


def test_native_sequence_resizes_each_run_and_numbers_positions_consecutively():
    p = 9
    ids = torch.tensor([[1, 2, p, p, p, 3, p, p, p, 4, 5]])
    feats = torch.arange(4.0)[:, None].expand(4, 2)
    out = native_sequence(ids, p, feats, "image", [0, 4])  # first run empties, second grows
    assert out.model_kwargs["input_ids"].tolist() == [[1, 2, 3, p, p, p, p, 4, 5]]
    assert out.model_kwargs["position_ids"].tolist() == [list(range(9))]
    assert out.visual_before == 6 and out.visual_after == 4
    one = native_sequence(torch.tensor([[1, p, p, 2]]), p, feats, "video")
    assert one.model_kwargs["input_ids"].tolist() == [[1, p, p, p, p, 2]]
    with pytest.raises(ValueError, match="runs"):
        native_sequence(ids, p, feats, "image", [4])
    with pytest.raises(ValueError, match="add up"):
        native_sequence(ids, p, feats, "image", [1, 1])


class _Pruner:
    name = "random"

    def __init__(self):
        self.calls = []

    def select(self, frames, geometry, budget=None, fps=None):
        self.calls.append(budget)
        return Selection.keep_all(geometry)


class _NativePruner(_Pruner):
    name = "autogaze"

    def select_native(self, frames, target, geometry, fps=None):
        return ("native", target)


def test_runner_dispatch_in_a_native_run():
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    geometry = TokenGeometry(num_frames=2, height=112, width=112, patch_size=14, spatial_merge_size=2)
    adapter = type("A", (), {"name": "fam", "native_target": lambda self, t, h, w: "T"})()
    plain = _Pruner()
    assert isinstance(_select_native(plain, adapter, frames, geometry, 5, 1.0), Selection)
    assert plain.calls == [5]  # a baseline keeps its matched budget
    assert _select_native(_NativePruner(), adapter, frames, geometry, None, 1.0) == ("native", "T")
    with pytest.raises(ValueError, match="not available for model family 'qwen'"):
        _select_native(_NativePruner(), type("Q", (), {"name": "qwen"})(), frames, geometry, None, 1.0)


def test_gaze_count_reads_autogaze_info_only():
    def record(selection):
        return SampleRecord(sample_id="s0", selection=selection)

    assert _gaze_count(record(SelectionSummary(info={"gazed_total": 12}))) == 12
    assert _gaze_count(record(SelectionSummary(info={}))) is None
    assert _gaze_count(record(None)) is None

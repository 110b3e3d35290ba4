"""The autogaze pruner: multi-scale gaze -> model grid (expand/drop), temporal union, end to end."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from harness.gaze.tiling import VideoGaze
from harness.pruning import PruningError, TokenGeometry, build_pruner
from harness.pruning.autogaze import AutoGazePruner, selection_from_gaze
from harness.pruning.gaze_mapping import temporal_union
from harness.pruning.matched import matched_selections

SIDES = (2, 4, 7, 14)  # AutoGaze's cells per 224 px tile side at scales 32+64+112+224, patch 16
# Qwen-like: 2-frame temporal patches, 28 px LLM tokens: a 224x224 frame is 8x8 tokens.
QWEN224 = TokenGeometry(num_frames=2, height=224, width=224, patch_size=14, temporal_patch_size=2, spatial_merge_size=2)


def hand_made_gaze(masks: list[torch.Tensor], gazed: list[int] | None = None) -> VideoGaze:
    """A real VideoGaze built from per-scale (T, rows_s, cols_s) masks we choose."""
    t = masks[0].shape[0]
    return VideoGaze(
        frame_indices=np.arange(t), height=224, width=224, scales=[32, 64, 112, 224], scale_masks=masks,
        gazed_per_frame=np.array(gazed if gazed is not None else [0] * t), tokens_per_frame=265, seconds=0.25,
    )


def empty_masks(frames: int, tiles_w: int = 1) -> list[torch.Tensor]:
    return [torch.zeros(frames, s, s * tiles_w, dtype=torch.bool) for s in SIDES]


def centre_rule_reference(masks, rows: int, cols: int, policy: str) -> torch.Tensor:
    """Independent statement of the documented rule, with exact fractions of the frame side.

    A token is kept if its centre lies in a gazed cell, or a gazed cell's centre lies in it;
    a point on a boundary belongs to the cell starting there.
    """
    counted = masks if policy == "expand" else masks[-1:]
    t = masks[0].shape[0]
    out = torch.zeros(t, rows, cols, dtype=torch.bool)
    for m in counted:
        r_cells, c_cells = m.shape[1:]
        for f in range(t):
            for i in range(rows):
                for j in range(cols):
                    cy, cx = Fraction(2 * i + 1, 2 * rows), Fraction(2 * j + 1, 2 * cols)
                    if m[f, math.floor(cy * r_cells), math.floor(cx * c_cells)]:
                        out[f, i, j] = True
            for a, b in m[f].nonzero().tolist():
                cy, cx = Fraction(2 * a + 1, 2 * r_cells), Fraction(2 * b + 1, 2 * c_cells)
                out[f, math.floor(cy * rows), math.floor(cx * cols)] = True
    return out


# ---------------------------------------------------------------- mapping policies


def test_coarse_gaze_expands_to_every_token_it_covers_and_drop_ignores_it():
    masks = empty_masks(1)
    masks[0][0, 0, 0] = True  # top-left 112x112 cell of the 2x2 scale
    want = torch.zeros(8, 8, dtype=torch.bool)
    want[:4, :4] = True
    assert torch.equal(hand_made_gaze(masks).to_grid(8, 8, "expand")[0], want)
    assert not hand_made_gaze(masks).to_grid(8, 8, "drop").any()


def test_finest_gaze_counts_under_both_policies():
    masks = empty_masks(1)
    masks[3][0, 0, 0] = True  # px 0..16: holds token (0, 0)'s centre (14, 14)
    masks[3][0, 1, 3] = True  # px rows 16..32, cols 48..64: its centre (24, 56) is in token (0, 2)
    for policy in ("expand", "drop"):
        kept = hand_made_gaze(masks).to_grid(8, 8, policy)[0].nonzero().tolist()
        assert kept == [[0, 0], [0, 2]], policy


@pytest.mark.parametrize(("rows", "cols", "tiles_w"), [(8, 8, 1), (4, 4, 1), (16, 16, 1), (3, 11, 1), (8, 16, 2)])
def test_mapping_equals_the_exact_centre_rule(rows, cols, tiles_w):
    gen = torch.Generator().manual_seed(rows * 31 + cols)
    masks = [torch.rand(3, s, s * tiles_w, generator=gen) < 0.08 for s in SIDES]
    gaze = hand_made_gaze(masks)
    for policy in ("expand", "drop"):
        got = gaze.to_grid(rows, cols, policy)
        assert got.shape == (3, rows, cols) and got.dtype == torch.bool
        assert torch.equal(got, centre_rule_reference(masks, rows, cols, policy)), policy


def test_expand_is_a_superset_of_drop():
    gen = torch.Generator().manual_seed(0)
    gaze = hand_made_gaze([torch.rand(4, s, s, generator=gen) < 0.1 for s in SIDES])
    expand, drop = (gaze.to_grid(12, 9, p) for p in ("expand", "drop"))
    assert (drop & ~expand).sum() == 0 and expand.sum() > drop.sum()


def test_unknown_policy_or_ratio_rejected_with_choices():
    with pytest.raises(PruningError, match="valid choices: expand, drop"):
        build_pruner("autogaze", policy="both")
    with pytest.raises(PruningError, match="gazing_ratio"):
        AutoGazePruner(gazing_ratio=0.0)
    with pytest.raises(PruningError, match=r"unknown parameter\(s\) ratio"):
        build_pruner("autogaze", ratio=0.3)


def test_temporal_union_keeps_a_token_gazed_in_any_frame_of_its_group():
    geometry = TokenGeometry(num_frames=4, height=56, width=56, patch_size=14, temporal_patch_size=2, spatial_merge_size=2)
    per_frame = torch.zeros(4, 2, 2, dtype=torch.bool)
    per_frame[0, 0, 0] = True
    per_frame[1, 1, 1] = True
    per_frame[3, 0, 1] = True
    assert temporal_union(per_frame, geometry).tolist() == [
        [[True, False], [False, True]],
        [[False, True], [False, False]],
    ]
    one_frame_groups = TokenGeometry(num_frames=4, height=56, width=56, patch_size=14, spatial_merge_size=2)
    assert torch.equal(temporal_union(per_frame, one_frame_groups), per_frame)
    padded = TokenGeometry(num_frames=6, height=56, width=56, patch_size=14, temporal_patch_size=2, spatial_merge_size=2)
    five = torch.cat([per_frame, per_frame[:1]])  # 5 frames: the model pads a 6th (copy of frame 4)
    assert torch.equal(temporal_union(five.numpy(), padded)[2], five[4])
    with pytest.raises(PruningError, match="per-frame gaze grid"):
        temporal_union(per_frame[:, :1], geometry)


def test_pruner_maps_a_hand_made_gaze(monkeypatch):
    """The pruner's whole mapping path (policy, union, info) on a gaze we control."""
    geometry = TokenGeometry(num_frames=4, height=224, width=224, patch_size=14, temporal_patch_size=2, spatial_merge_size=2)
    masks = empty_masks(4)
    masks[0][1, 1, 1] = True  # frame 1, coarse bottom-right quadrant -> group 0, 16 tokens (expand)
    masks[3][2, 0, 0] = True  # frame 2, finest top-left cell -> group 1, token (0, 0)
    gaze = hand_made_gaze(masks, gazed=[0, 1, 1, 0])
    frames = np.zeros((4, 224, 224, 3), np.uint8)
    for policy, kept in (("expand", 17), ("drop", 1)):
        pruner = build_pruner("autogaze", policy=policy, gazing_ratio=0.5)
        monkeypatch.setattr(pruner, "gaze", lambda f, g=gaze: g)
        sel = pruner.select(frames, geometry, budget=3)
        assert sel.num_kept == kept and sel.keep[1, 0, 0]
        assert bool(sel.keep[0, 4:, 4:].all()) == (policy == "expand")
        assert sel.info["policy"] == policy and sel.info["gaze_seconds"] == 0.25
        assert sel.info["gazed_per_frame"] == [0, 1, 1, 0] and sel.info["gazed_total"] == 2
        assert sel.info["gaze_tokens_per_frame"] == 265
        assert sel.info["budget"] is None and sel.info["budget_ignored"] == 3
        assert sel.info["params"]["gazing_ratio"] == 0.5 and sel.pruner == "autogaze"


def test_missing_checkpoint_fails_at_select_naming_it(tmp_path):
    pruner = build_pruner("autogaze", model=str(tmp_path / "no-such-model"))
    with pytest.raises(ValueError, match="no-such-model"):
        pruner.select(np.zeros((2, 224, 224, 3), np.uint8), QWEN224)


# ---------------------------------------------------------------- end to end on the parity checkpoint

RATIOS = (0.004, 0.1, 0.3, 1.0)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """Two 224x224 frames (one tile, one 2-frame clip): small enough for a shared 2-core machine."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def gazes(parity_dir, clip) -> dict[float, VideoGaze]:
    model = str(parity_dir / "model")
    return {r: AutoGazePruner(gazing_ratio=r, model=model, clip_len=2).gaze(clip) for r in RATIOS}


def test_ratio_one_keeps_everything(gazes):
    g = gazes[1.0]
    assert g.gazed_per_frame.tolist() == [265, 265]
    for policy in ("expand", "drop"):
        assert selection_from_gaze(g, QWEN224, policy).keep.all()


def test_tiny_ratio_keeps_few(gazes):
    g = gazes[0.004]
    assert g.gazed_per_frame.tolist() == [1, 1]  # int(0.004 * 265) = 1 gaze per frame
    # One gaze per frame: at most a coarse quadrant (16 of 64 tokens) per frame under expand,
    # at most one token per frame under drop.
    assert selection_from_gaze(g, QWEN224, "expand").num_kept <= 32
    assert selection_from_gaze(g, QWEN224, "drop").num_kept <= 2


def test_more_ratio_never_keeps_fewer_tokens(gazes):
    for policy in ("expand", "drop"):
        kept = [selection_from_gaze(gazes[r], QWEN224, policy).num_kept for r in RATIOS]
        assert kept == sorted(kept) and kept[0] < kept[-1], (policy, kept)
    # Frame 0 sees no history, so a larger cap only appends gazes: the masks are nested.
    for low, high in zip(RATIOS, RATIOS[1:]):
        for m_low, m_high in zip(gazes[low].scale_masks, gazes[high].scale_masks):
            assert not (m_low[0] & ~m_high[0]).any(), (low, high)


def test_autogaze_select_and_matched_baselines(parity_dir, clip):
    pruner = build_pruner("autogaze", gazing_ratio=0.1, model=str(parity_dir / "model"), clip_len=2)
    baselines = {name: build_pruner(name) for name in ("random", "temporal_diff", "uniform_frames", "downsample")}
    out = matched_selections(clip, QWEN224, pruner, baselines, fps=2.0)
    ref = out["autogaze"]
    assert ref.info["gazed_per_frame"] == [26, 26] and ref.info["gaze_seconds"] > 0
    assert 0 < ref.num_kept < QWEN224.total_tokens
    assert out["random"].num_kept == out["temporal_diff"].num_kept == ref.num_kept
    assert out["uniform_frames"].num_kept == QWEN224.tokens_per_group  # one group: at least one kept
    assert out["downsample"].num_kept <= ref.num_kept
    assert all(out[k].info["matched_budget"] == ref.num_kept for k in baselines)

"""temporal_diff, downsample and matched-budget comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.pruning import TokenGeometry, build_pruner
from harness.pruning.downsample import downsampled_grid
from harness.pruning.matched import matched_budget, matched_selections
from harness.pruning.temporal_diff import frame_change

QWEN = TokenGeometry(num_frames=16, height=224, width=168, patch_size=14, temporal_patch_size=2, spatial_merge_size=2)
CELL = 28  # pixels per LLM token side for QWEN


def static_video(seed: int = 0, frames: int = 16) -> np.ndarray:
    """A random still image repeated: no pixel changes between frames."""
    rng = np.random.default_rng(seed)
    still = rng.integers(0, 256, (QWEN.height, QWEN.width, 3), dtype=np.uint8)
    return np.repeat(still[None], frames, axis=0)


# ---------------------------------------------------------------- temporal_diff


def test_frame_change_equals_a_per_token_loop():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (5, 56, 84, 3), dtype=np.uint8)
    got = frame_change(frames, 2, 3)
    want = np.zeros((5, 2, 3))
    for f in range(1, 5):
        d = np.abs(frames[f].astype(np.float64) - frames[f - 1].astype(np.float64)).mean(-1)
        for r in range(2):
            for c in range(3):
                want[f, r, c] = d[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28].mean()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_temporal_diff_keeps_the_corner_that_changes():
    """Only a 2x2-token top-left corner changes: after group 0, exactly those tokens are kept."""
    video = static_video()
    rng = np.random.default_rng(7)
    video[:, : 2 * CELL, : 2 * CELL] = rng.integers(0, 256, (16, 2 * CELL, 2 * CELL, 3), dtype=np.uint8)
    per_group = QWEN.tokens_per_group
    budget = per_group + 4 * (QWEN.grid_t - 1)
    sel = build_pruner("temporal_diff").select(video, QWEN, budget=budget)
    assert sel.num_kept == budget
    assert sel.keep[0].all()
    corner = torch.zeros(QWEN.grid_h, QWEN.grid_w, dtype=torch.bool)
    corner[:2, :2] = True
    for g in range(1, QWEN.grid_t):
        assert torch.equal(sel.keep[g], corner), f"group {g}"
    assert sel.info["min_kept_change"] > 50  # noise vs noise: mean |diff| is about 85


def test_temporal_diff_ranks_larger_changes_first():
    video = static_video().astype(np.int16)
    video[8:, :CELL, :CELL] += 40  # a change at frame 8 in token (0, 0) of group 4
    video[8:, -CELL:, -CELL:] += 10  # a smaller change in the bottom-right token of group 4
    video = np.clip(video, 0, 255).astype(np.uint8)
    sel = build_pruner("temporal_diff").select(video, QWEN, budget=QWEN.tokens_per_group + 1)
    assert sel.keep[4, 0, 0] and not sel.keep[4, -1, -1]
    assert sel.keep[1:].sum() == 1


@pytest.mark.parametrize(("frame", "group"), [(4, 2), (5, 2), (6, 3)])
def test_temporal_diff_scores_a_group_by_any_of_its_frames(frame, group):
    """Frame 2g is compared with 2g-1 (previous group), 2g+1 with 2g: both count for group g."""
    video = static_video()
    video[frame:, CELL : 2 * CELL, CELL : 2 * CELL] = 255 - video[frame:, CELL : 2 * CELL, CELL : 2 * CELL]
    sel = build_pruner("temporal_diff").select(video, QWEN, budget=QWEN.tokens_per_group + 1)
    later = sel.keep[1:].nonzero().tolist()
    assert later == [[group - 1, 1, 1]]


def test_temporal_diff_static_video_keeps_earliest_groups_in_raster_order():
    sel = build_pruner("temporal_diff").select(static_video(), QWEN, budget=2 * QWEN.tokens_per_group + 5)
    assert sel.keep[:2].all() and sel.keep[2].flatten()[:5].all() and sel.keep[2:].sum() == 5
    assert sel.info["min_kept_change"] == 0.0


def test_temporal_diff_budget_below_one_group_thins_the_first_group_evenly():
    sel = build_pruner("temporal_diff").select(static_video(), QWEN, budget=4)
    assert sel.num_kept == 4 and sel.keep[1:].sum() == 0
    assert sel.keep[0].flatten().nonzero().squeeze(-1).tolist() == [6, 18, 30, 42]


# ---------------------------------------------------------------- downsample


def brute_force_best(geometry: TokenGeometry, budget: int) -> int:
    """Most tokens any aspect-keeping (floor/ceil cols) grid can spend within the budget."""
    aspect = geometry.width / geometry.height
    best = 0
    for rows in range(1, geometry.grid_h + 1):
        for cols in range(1, geometry.grid_w + 1):
            if abs(cols - rows * aspect) < 1 and geometry.grid_t * rows * cols <= budget:
                best = max(best, geometry.grid_t * rows * cols)
    return best


def test_downsample_exact_budget_gives_the_half_size_geometry():
    sel = build_pruner("downsample").select(static_video(), QWEN, budget=96)
    g = sel.geometry
    assert (g.height, g.width) == (112, 84) and (g.grid_h, g.grid_w) == (4, 3)
    assert (g.num_frames, g.patch_size, g.temporal_patch_size, g.spatial_merge_size) == (16, 14, 2, 2)
    assert sel.keep.all() and sel.num_kept == 96 and sel.info["budget_gap"] == 0
    assert sel.info["native_size"] == [224, 168] and sel.info["size"] == [112, 84]
    assert sel.info["native_tokens"] == 384 and sel.info["kept_ratio"] == 0.25


@pytest.mark.parametrize("budget", range(8, 400, 7))
def test_downsample_is_the_closest_achievable_within_budget(budget):
    sel = build_pruner("downsample").select(static_video(), QWEN, budget=budget)
    g = sel.geometry
    assert g.height % CELL == 0 and g.width % CELL == 0
    assert g.grid_h <= QWEN.grid_h and g.grid_w <= QWEN.grid_w
    assert abs(g.grid_w - g.grid_h * QWEN.width / QWEN.height) < 1  # aspect within one token
    assert sel.keep.all() and sel.num_kept == g.total_tokens
    assert sel.num_kept == brute_force_best(QWEN, min(budget, QWEN.total_tokens))
    assert sel.info["budget_gap"] == sel.num_kept - min(budget, QWEN.total_tokens) <= 0


def test_downsample_below_one_token_per_group_keeps_one():
    sel = build_pruner("downsample").select(static_video(), QWEN, budget=3)
    assert (sel.geometry.grid_h, sel.geometry.grid_w) == (1, 1)
    assert sel.num_kept == QWEN.grid_t and sel.info["budget_gap"] == QWEN.grid_t - 3


def test_downsampled_grid_prefers_the_truer_aspect_on_ties():
    wide = TokenGeometry(num_frames=1, height=28 * 4, width=28 * 8, patch_size=14, spatial_merge_size=2)
    assert downsampled_grid(wide, 8) == (2, 4)  # not (4, 2): same tokens, true 2:1 aspect
    assert downsampled_grid(wide, 32) == (4, 8)
    rows, cols = downsampled_grid(wide, 18)
    assert rows * cols == 18 and math.isclose(cols / rows, 2.0)


# ---------------------------------------------------------------- matched budgets


def test_baselines_match_the_reference_kept_count():
    video = static_video()
    video[5:, :CELL, :CELL] = 0
    reference = build_pruner("random", ratio=0.37, seed=1)
    baselines = {
        "random": build_pruner("random"),
        "temporal_diff": build_pruner("temporal_diff"),
        "uniform_frames": build_pruner("uniform_frames"),
        "downsample": build_pruner("downsample"),
        "none": build_pruner("none"),
    }
    with pytest.raises(ValueError, match="clashes"):
        matched_selections(video, QWEN, reference, baselines)
    baselines["random_seed0"] = baselines.pop("random")
    out = matched_selections(video, QWEN, reference, baselines, fps=2.0)
    budget = matched_budget(out["random"])
    assert budget == round(0.37 * 384) == out["random"].num_kept
    assert out["random_seed0"].num_kept == budget == out["temporal_diff"].num_kept
    assert out["uniform_frames"].num_kept == (budget // 48) * 48
    assert out["downsample"].num_kept == brute_force_best(QWEN, budget)
    assert out["none"].num_kept == 384 and out["none"].info["budget_ignored"] == budget
    for key in baselines:
        assert out[key].info["matched_to"] == "random" and out[key].info["matched_budget"] == budget

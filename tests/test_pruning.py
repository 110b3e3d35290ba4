"""Pruner contract, registry and the frame-agnostic baselines (none, random, uniform_frames)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.pruning import PRUNERS, PruningError, Selection, TokenGeometry, build_pruner
from harness.pruning.base import group_frames
from harness.pruning.uniform_frames import evenly_spaced

# Qwen-like: 2-frame temporal patches, 14 px patches merged 2x2 -> 28 px tokens, 8x6 grid.
QWEN = TokenGeometry(num_frames=16, height=224, width=168, patch_size=14, temporal_patch_size=2, spatial_merge_size=2)
# LLaVA/InternVL-like: one frame per group.
PER_FRAME = TokenGeometry(num_frames=5, height=112, width=112, patch_size=14, spatial_merge_size=2)


def noise_video(geometry: TokenGeometry, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (geometry.num_frames, geometry.height, geometry.width, 3), dtype=np.uint8)


BUDGETED = ["random", "uniform_frames", "temporal_diff"]


def test_registry_lists_every_documented_pruner():
    assert set(PRUNERS) == {"none", "autogaze", "uniform_frames", "random", "temporal_diff", "downsample",
                            "fastv", "dycoke", "vidcom2", "visionzip"}


def test_unknown_name_lists_choices():
    with pytest.raises(PruningError, match="valid choices: autogaze, downsample, dycoke, fastv, none"):
        build_pruner("rnadom")


def test_unknown_param_lists_valid_params():
    with pytest.raises(PruningError, match=r"unknown parameter\(s\) sed; valid: ratio, seed"):
        build_pruner("random", sed=3)
    with pytest.raises(PruningError, match=r"valid: \(none\)"):
        build_pruner("none", ratio=0.5)


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5])
def test_bad_ratio_rejected(ratio):
    with pytest.raises(PruningError, match="ratio must be in"):
        build_pruner("random", ratio=ratio)


def test_none_keeps_everything_and_ignores_budget_visibly():
    sel = build_pruner("none").select(noise_video(QWEN), QWEN, budget=10)
    assert sel.keep.all() and sel.num_kept == QWEN.total_tokens == 8 * 8 * 6
    assert sel.pruner == "none"
    assert sel.info["budget"] is None and sel.info["budget_ignored"] == 10
    assert sel.info["kept_ratio"] == 1.0 and sel.info["seconds"] >= 0


@pytest.mark.parametrize("name", BUDGETED)
@pytest.mark.parametrize("geometry", [QWEN, PER_FRAME], ids=["qwen", "per_frame"])
def test_budgeted_pruner_shape_dtype_and_info(name, geometry):
    sel = build_pruner(name).select(noise_video(geometry), geometry, budget=7)
    assert isinstance(sel, Selection)
    assert sel.keep.dtype == torch.bool
    assert tuple(sel.keep.shape) == (geometry.grid_t, geometry.grid_h, geometry.grid_w)
    assert sel.geometry == geometry and sel.pruner == name
    assert sel.info["budget"] == 7 and sel.info["budget_source"] == "budget"
    assert sel.info["kept"] == sel.num_kept


@pytest.mark.parametrize("name", ["random", "temporal_diff"])
@pytest.mark.parametrize("budget", [1, 5, 48, 49, 200, 384])
def test_token_level_pruners_keep_exactly_the_budget(name, budget):
    assert build_pruner(name).select(noise_video(QWEN), QWEN, budget=budget).num_kept == budget


@pytest.mark.parametrize("name", BUDGETED)
def test_budget_above_total_is_clamped_to_keep_all(name):
    sel = build_pruner(name).select(noise_video(QWEN), QWEN, budget=10_000)
    assert sel.keep.all() and sel.info["budget"] == QWEN.total_tokens


@pytest.mark.parametrize("name", BUDGETED)
def test_ratio_sets_the_budget_and_explicit_budget_wins(name):
    pruner = build_pruner(name, ratio=0.25)
    frames = noise_video(QWEN)
    by_ratio = pruner.select(frames, QWEN)
    assert by_ratio.info["budget"] == 96 and by_ratio.info["budget_source"] == "ratio"
    by_budget = pruner.select(frames, QWEN, budget=30)
    assert by_budget.info["budget"] == 30 and by_budget.info["budget_source"] == "budget"


@pytest.mark.parametrize("name", BUDGETED)
@pytest.mark.parametrize("budget", [0, -3, 2.5, True])
def test_missing_or_bad_budget_rejected(name, budget):
    frames = noise_video(QWEN)
    with pytest.raises(PruningError, match="budget"):
        build_pruner(name).select(frames, QWEN, budget=budget)
    with pytest.raises(PruningError, match="needs a token budget"):
        build_pruner(name).select(frames, QWEN)


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((16, 224, 168, 3), np.float32),
        np.zeros((16, 224, 168), np.uint8),
        np.zeros((13, 224, 168, 3), np.uint8),  # 13 frames cannot fill 8 groups of 2
        np.zeros((18, 224, 168, 3), np.uint8),  # a whole group's worth left over
    ],
)
def test_frames_that_do_not_fit_the_geometry_are_rejected(frames):
    with pytest.raises(PruningError, match="frames"):
        build_pruner("none").select(frames, QWEN)


def test_odd_frame_count_is_accepted_the_way_models_pad():
    """15 frames -> Qwen pads to 16 (repeats the last); group 7 is frames 14 and a copy of 14."""
    frames = np.zeros((15, 224, 168, 3), np.uint8)
    assert build_pruner("random").select(frames, QWEN, budget=5).num_kept == 5
    assert group_frames(15, QWEN)[-1] == [14]
    assert group_frames(16, QWEN)[3] == [6, 7]


def test_random_is_deterministic_per_seed_and_video():
    frames, other = noise_video(QWEN, 0), noise_video(QWEN, 1)
    a = build_pruner("random", seed=3).select(frames, QWEN, budget=100).keep
    assert torch.equal(a, build_pruner("random", seed=3).select(frames.copy(), QWEN, budget=100).keep)
    assert not torch.equal(a, build_pruner("random", seed=4).select(frames, QWEN, budget=100).keep)
    assert not torch.equal(a, build_pruner("random", seed=3).select(other, QWEN, budget=100).keep)


def test_random_spreads_over_the_whole_grid():
    """Uniform draws: over many videos every position gets picked about budget/total of the time."""
    counts = torch.zeros(QWEN.grid_t, QWEN.grid_h, QWEN.grid_w)
    pruner = build_pruner("random")
    for seed in range(60):
        counts += pruner.select(noise_video(QWEN, seed), QWEN, budget=96).keep
    freq = counts / 60
    assert abs(float(freq.mean()) - 0.25) < 1e-6
    assert float(freq.min()) > 0.0 and float(freq.max()) < 0.7


def test_evenly_spaced_groups():
    assert evenly_spaced(1, 8) == [4]
    assert evenly_spaced(2, 8) == [2, 6]
    assert evenly_spaced(4, 8) == [1, 3, 5, 7]
    assert evenly_spaced(8, 8) == list(range(8))
    assert evenly_spaced(3, 10) == [1, 5, 8]
    with pytest.raises(ValueError):
        evenly_spaced(9, 8)


@pytest.mark.parametrize("budget", [1, 47, 48, 49, 100, 144, 383, 384])
def test_uniform_frames_keeps_whole_groups_as_many_as_fit(budget):
    sel = build_pruner("uniform_frames").select(noise_video(QWEN), QWEN, budget=budget)
    per_group = QWEN.tokens_per_group  # 48
    kept_groups = [g for g, n in enumerate(sel.kept_per_group()) if n]
    assert all(n in (0, per_group) for n in sel.kept_per_group())  # whole groups only
    expected_groups = max(1, budget // per_group)
    assert len(kept_groups) == expected_groups == len(sel.info["groups_kept"])
    assert sel.num_kept == expected_groups * per_group
    assert sel.info["budget_gap"] == sel.num_kept - budget
    # closest achievable: never above the budget unless even one group is more than it
    assert sel.num_kept <= budget or expected_groups == 1
    assert budget - sel.num_kept < per_group


def test_uniform_frames_spreads_groups_over_the_clip():
    sel = build_pruner("uniform_frames").select(noise_video(QWEN), QWEN, budget=2 * 48)
    assert sel.info["groups_kept"] == [2, 6]

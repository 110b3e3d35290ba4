"""Qwen2.5-VL ``prune_stage: native``: one gaze = one merged token, multi-scale, M-RoPE at the gaze's place.

Tiny random-weight Qwen2.5-VL: every finest-scale cell gazed gives exactly the stock vision
features, LLM ids and M-RoPE positions (and the stock answer); every cell of one coarse scale gives
the stock model run on frames resized to that scale (so per-scale positions and windows are the
stock ones there); multi-scale gazes reach the LLM one token each at the stock position of the
finest token under their centre; AutoGaze (parity checkpoint) gazes one frame per temporal pair.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.models.frames import resize_frames
from harness.models.gazed_siglip import GazingInfo
from harness.models.qwen2_5_vl import Qwen25VLAdapter
from harness.models.qwen_native import encode_native, native_llm_inputs
from harness.models.tiny import build_tiny_model
from harness.pruning.native_gaze import NativeGaze, NativeSelection, coverage_grid

PROMPT = "What moves?"
T, SIDE, FPS = 8, 224, 2.0


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Qwen25VLAdapter:
    return Qwen25VLAdapter.from_pretrained(
        str(build_tiny_model("qwen2_5_vl", tmp_path_factory.mktemp("qn"), seed=0))
    )


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(3)
    video = rng.integers(0, 80, size=(T, SIDE, SIDE, 3), dtype=np.uint8)
    for t in range(T):
        video[t, 40:90, 10 + 15 * t : 60 + 15 * t] = 240
    return video


def _selection(adapter, gaze):
    geometry = adapter.token_geometry(T, SIDE, SIDE)
    return NativeSelection(geometry, coverage_grid(gaze, geometry), pruner="autogaze", native=gaze)


def _one_scale(target, groups: int, scale: int) -> NativeGaze:
    masks = [torch.zeros(1, groups, n, dtype=torch.bool) for n in target.layout.tokens_per_scale]
    masks[scale][:] = True
    return NativeGaze(target, GazingInfo.from_masks(masks, target.layout))


def test_target_gazes_merged_tokens_every_other_frame(adapter):
    target = adapter.native_target(T, SIDE, SIDE)
    assert target.patch_size == 28 and target.temporal_stride == 2 and target.scales[-1] == SIDE
    with pytest.raises(ValueError, match="square"):
        adapter.native_target(T, 224, 448)


def test_full_finest_scale_is_the_stock_model(adapter, frames):
    target = adapter.native_target(T, SIDE, SIDE)
    groups = adapter.token_geometry(T, SIDE, SIDE).grid_t
    gaze = _one_scale(target, groups, len(target.scales) - 1)
    prepared = adapter.prepare(frames, PROMPT, fps=FPS)
    ours = encode_native(adapter, prepared.batch, frames, gaze, FPS)
    stock = adapter.encode_all(prepared.batch)
    torch.testing.assert_close(ours, stock.embeds, atol=1e-5, rtol=1e-5)
    llm = native_llm_inputs(adapter, prepared.batch, gaze, ours)
    ref = adapter.llm_inputs(prepared.batch, torch.arange(stock.embeds.shape[0]), stock)
    assert torch.equal(llm["input_ids"], ref["input_ids"]) and torch.equal(
        llm["position_ids"], ref["position_ids"]
    )
    native = adapter.generate(
        frames, _selection(adapter, gaze), PROMPT, fps=FPS, max_new_tokens=4, prune_stage="native"
    )
    post = adapter.generate(frames, None, PROMPT, fps=FPS, max_new_tokens=4, prune_stage="post_vit")
    assert native.extra["output_ids"] == post.extra["output_ids"] and native.extra["prune_stage"] == "native"


def test_a_whole_coarse_scale_is_the_stock_model_at_that_size(adapter, frames):
    target = adapter.native_target(T, SIDE, SIDE)
    groups = adapter.token_geometry(T, SIDE, SIDE).grid_t
    for s in range(len(target.scales) - 1):
        side = target.scales[s]
        prepared = adapter.prepare(frames, PROMPT, fps=FPS)
        ours = encode_native(adapter, prepared.batch, frames, _one_scale(target, groups, s), FPS)
        vp = adapter.processor.video_processor
        small = vp(
            videos=[resize_frames(frames, side, side)],
            do_resize=False,
            do_sample_frames=False,
            return_tensors="pt",
        )
        stock = adapter.encode_all(small)
        torch.testing.assert_close(ours, stock.embeds, atol=1e-5, rtol=1e-5)


def test_multiscale_gazes_one_token_each_at_the_finest_position_under_them(adapter, frames):
    target = adapter.native_target(T, SIDE, SIDE)
    layout = target.layout
    groups = adapter.token_geometry(T, SIDE, SIDE).grid_t
    g = torch.Generator().manual_seed(0)
    masks = [torch.rand(1, groups, n, generator=g) < 0.4 for n in layout.tokens_per_scale]
    for m in masks:
        m[..., 0] = True
    gaze = NativeGaze(target, GazingInfo.from_masks(masks, layout))
    prepared = adapter.prepare(frames, PROMPT, fps=FPS)
    feats = encode_native(adapter, prepared.batch, frames, gaze, FPS)
    llm = native_llm_inputs(adapter, prepared.batch, gaze, feats)
    assert feats.shape[0] == gaze.count
    ids = prepared.batch["input_ids"][0]
    cols = (ids == adapter.video_token_id).nonzero().squeeze(-1)
    start = int(cols[0])
    stock = adapter.rope_index(prepared.batch)[:, 0]  # (3, L_full)
    fine = layout.grid_sizes[-1]
    expected = []
    for grp in range(groups):  # slot order: group, scale ascending, raster
        for s, cells in enumerate(layout.grid_sizes):
            for cell in masks[s][0, grp].nonzero().squeeze(-1).tolist():
                r, c = divmod(cell, cells)
                fr, fc = (2 * r + 1) * fine // (2 * cells), (2 * c + 1) * fine // (2 * cells)
                expected.append(stock[:, start + grp * fine * fine + fr * fine + fc])
    got = llm["position_ids"][1:, 0, start : start + gaze.count]
    assert torch.equal(got, torch.stack(expected, 1))
    assert torch.equal(
        llm["position_ids"][1:, 0, start + gaze.count :], stock[:, int(cols[-1]) + 1 :]
    )  # text after
    result = adapter.generate(
        frames, _selection(adapter, gaze), PROMPT, fps=FPS, max_new_tokens=2, prune_stage="native"
    )
    assert result.tokens.visual_after == gaze.count == result.extra["gazes"]


def test_autogaze_gazes_one_frame_per_pair_and_the_llm_gets_its_count(adapter, frames, parity_dir):
    from harness.pruning.autogaze import AutoGazePruner

    geometry = adapter.token_geometry(T, SIDE, SIDE)
    pruner = AutoGazePruner(gazing_ratio=0.3, model=str(parity_dir / "model"))
    selection = pruner.select_native(frames, adapter.native_target(T, SIDE, SIDE), geometry, fps=FPS)
    assert len(selection.info["gazed_per_frame"]) == geometry.grid_t == T // 2
    result = adapter.generate(frames, selection, PROMPT, fps=FPS, max_new_tokens=2, prune_stage="native")
    assert result.tokens.visual_after == selection.info["gazed_total"] == selection.native.count > 0


def test_qwen3_vl_native_is_refused_with_the_reason():
    from harness.models.qwen3_vl import Qwen3VLAdapter

    with pytest.raises(ValueError, match="not implemented for qwen3_vl"):
        Qwen3VLAdapter.native_target(None, T, SIDE, SIDE)


def test_token_selections_in_a_native_run_use_the_stock_path_even_on_non_square_frames(adapter, frames):
    wide = np.concatenate([frames, frames], axis=2)[:, :, :300]  # 224 x 300: not square
    native = adapter.generate(wide, None, PROMPT, fps=FPS, max_new_tokens=3, prune_stage="native")
    post = adapter.generate(wide, None, PROMPT, fps=FPS, max_new_tokens=3, prune_stage="post_vit")
    assert (
        native.extra["output_ids"] == post.extra["output_ids"] and native.extra["prune_stage"] == "post_vit"
    )

"""LLaVA-OneVision ``prune_stage: native``: one LLM token per AutoGaze gaze, SigLIP on gazed patches only.

Checked on the tiny random-weight model: at full gazing of the finest scale only (every SigLIP
patch, nothing coarser) with frame-independent attention the LLM receives exactly the stock
tower + projector features of every patch (the stock video path before its pooling), and with
block-causal attention a single frame is the same; more frames make block-causal differ (so
the layout really is applied). Multi-scale gazes reach the LLM one token each, in slot order, at
consecutive positions; with the AutoGaze parity checkpoint the record's tokens equal AutoGaze's
own count + the newline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.models.gazed_siglip import GazingInfo
from harness.models.llava_onevision import LlavaOnevisionAdapter
from harness.models.tiny import build_tiny_model
from harness.pruning.native_gaze import NativeGaze, NativeSelection, coverage_grid
from harness.pruning.selection import Selection
from tests.adapter_helpers import LLMInputRecorder

PROMPT = "What moves? Answer with the option's letter."
T = 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model("llava_onevision", tmp_path_factory.mktemp("llava_ov_native"), seed=0)


@pytest.fixture(scope="module")
def adapter(model_dir: Path) -> LlavaOnevisionAdapter:
    return LlavaOnevisionAdapter.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(1)
    video = rng.integers(0, 60, size=(T, 60, 80, 3), dtype=np.uint8)
    for t in range(T):
        video[t, 10:30, 5 + 6 * t : 25 + 6 * t] = 240
    return video


def _stock_patch_features(adapter: LlavaOnevisionAdapter, pixel_values_videos: torch.Tensor) -> torch.Tensor:
    """Stock tower -> feature layer -> projector for every patch of every frame (no pooling)."""
    inner, config = adapter.model.model, adapter.model.config
    with torch.no_grad():
        out = inner.vision_tower(pixel_values_videos[0], output_hidden_states=True)
        return inner.multi_modal_projector(out.hidden_states[config.vision_feature_layer]).flatten(0, 1)


def _random_gaze(adapter: LlavaOnevisionAdapter, seed: int = 0) -> NativeGaze:
    target = adapter.native_target()
    layout = target.layout
    g = torch.Generator().manual_seed(seed)
    masks = [torch.rand(1, T, n, generator=g) < 0.4 for n in layout.tokens_per_scale]
    for m in masks:
        m[..., 0] = True  # a gaze at every scale of every frame
    return NativeGaze(target, GazingInfo.from_masks(masks, layout))


def _native_selection(adapter: LlavaOnevisionAdapter, gaze: NativeGaze) -> NativeSelection:
    geometry = adapter.token_geometry(gaze.gazing.num_frames, 60, 80)
    return NativeSelection(geometry, coverage_grid(gaze, geometry), pruner="autogaze", native=gaze)


def test_target_is_siglip_patch_at_four_scales(adapter):
    target = adapter.native_target()
    assert target.patch_size == adapter.patch_size == 14
    assert target.scales[-1] == adapter.patches_per_side * 14  # the area the stock patch conv reads
    assert len(target.scales) == 4 and list(target.scales) == sorted(set(target.scales))


def test_full_finest_frame_independent_equals_stock_patches(model_dir, frames):
    adapter = LlavaOnevisionAdapter.from_pretrained(str(model_dir), native_attn="frame_independent")
    inputs = adapter.preprocess(frames, PROMPT)
    gaze = NativeGaze.full_finest(adapter.native_target(), T)
    ours = adapter.encode_native(inputs["pixel_values_videos"], gaze)
    stock = _stock_patch_features(adapter, inputs["pixel_values_videos"])
    assert ours.shape[0] == T * adapter.patches_per_side**2 + 1
    torch.testing.assert_close(ours[:-1], stock, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[-1], adapter.model.model.image_newline.to(ours))


def test_full_finest_block_causal_single_frame_equals_stock_and_more_frames_differ(adapter, frames):
    assert adapter.native_attn == "block_causal"
    inputs = adapter.preprocess(frames[:1], PROMPT)
    ours = adapter.encode_native(
        inputs["pixel_values_videos"], NativeGaze.full_finest(adapter.native_target(), 1)
    )
    torch.testing.assert_close(
        ours[:-1], _stock_patch_features(adapter, inputs["pixel_values_videos"]), atol=1e-5, rtol=1e-5
    )
    inputs = adapter.preprocess(frames, PROMPT)
    ours = adapter.encode_native(
        inputs["pixel_values_videos"], NativeGaze.full_finest(adapter.native_target(), T)
    )
    stock = _stock_patch_features(adapter, inputs["pixel_values_videos"])
    per_frame = adapter.patches_per_side**2
    torch.testing.assert_close(
        ours[:per_frame], stock[:per_frame], atol=1e-5, rtol=1e-5
    )  # frame 0 sees itself only
    assert not torch.allclose(
        ours[per_frame:-1], stock[per_frame:], atol=1e-3
    )  # later frames see earlier ones


def test_full_finest_generation_feeds_stock_patches_at_consecutive_positions(model_dir, frames):
    adapter = LlavaOnevisionAdapter.from_pretrained(str(model_dir), native_attn="frame_independent")
    inputs = adapter.preprocess(frames, PROMPT)
    stock = _stock_patch_features(adapter, inputs["pixel_values_videos"])
    ids = inputs["input_ids"][0]
    is_video = ids == adapter.video_token_id
    first = int(is_video.nonzero()[0])
    n_video = T * adapter.patches_per_side**2 + 1
    selection = _native_selection(adapter, NativeGaze.full_finest(adapter.native_target(), T))
    with LLMInputRecorder(adapter) as rec:
        result = adapter.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=3, prune_stage="native")
    embeds, positions = rec.calls[0]["inputs_embeds"][0], rec.calls[0]["position_ids"][0]
    n_text = int((~is_video).sum())
    assert embeds.shape[0] == n_text + n_video
    assert torch.equal(positions, torch.arange(n_text + n_video))
    torch.testing.assert_close(embeds[first : first + n_video - 1], stock)
    text = adapter.model.get_input_embeddings()(ids[~is_video])
    torch.testing.assert_close(torch.cat([embeds[:first], embeds[first + n_video :]]), text)
    assert result.tokens.visual_after == n_video
    assert result.tokens.visual_before == T * adapter.pooled_per_side**2 + 1  # the stock (pooled) count
    assert rec.calls[1]["position_ids"].item() == n_text + n_video


def test_multiscale_gazes_reach_the_llm_one_token_each(adapter, frames):
    gaze = _random_gaze(adapter)
    geometry = adapter.token_geometry(T, 60, 80)
    selection = NativeSelection(geometry, coverage_grid(gaze, geometry), pruner="autogaze", native=gaze)
    inputs = adapter.preprocess(frames, PROMPT)
    features = adapter.encode_native(inputs["pixel_values_videos"], gaze)
    with LLMInputRecorder(adapter) as rec:
        result = adapter.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=2, prune_stage="native")
    ids = inputs["input_ids"][0]
    first = int((ids == adapter.video_token_id).nonzero()[0])
    embeds = rec.calls[0]["inputs_embeds"][0]
    assert features.shape[0] == gaze.count + 1
    torch.testing.assert_close(embeds[first : first + gaze.count + 1], features)
    assert result.tokens.visual_after == gaze.count + 1 == selection.num_kept + 1
    assert result.extra["gazes"] == result.extra["vit_tokens"] == gaze.count
    assert all(c > 0 for c in gaze.per_scale_counts())
    # a coarse gaze is a real token: the scales change what the LLM gets
    finest_only = NativeGaze.full_finest(adapter.native_target(), T)
    assert finest_only.count != gaze.count


def test_token_selections_run_the_stock_path_and_foreign_gazes_are_refused(adapter, frames):
    """In a native run, ``none`` and matched baselines bring token selections: they run as post_vit."""
    geometry = adapter.token_geometry(T, 60, 80)
    keep = torch.zeros(geometry.grid_t, geometry.grid_h, geometry.grid_w, dtype=torch.bool)
    keep[0, 0, 0] = keep[2, 1, 3] = True
    selection = Selection(geometry, keep, pruner="random")
    native = adapter.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=3, prune_stage="native")
    post = adapter.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=3, prune_stage="post_vit")
    assert (
        native.extra["output_ids"] == post.extra["output_ids"] and native.extra["prune_stage"] == "post_vit"
    )
    assert native.tokens.visual_after == 3
    target = type(adapter.native_target())((28, 56, 84, 112), 28, 112)
    other = NativeGaze(target, GazingInfo.full(1, T, target.layout))
    with pytest.raises(ValueError, match="were made for"):
        adapter.generate(
            frames, NativeSelection(geometry, keep, native=other), PROMPT, fps=2.0, prune_stage="native"
        )


def test_autogaze_native_counts_equal_llm_tokens(adapter, frames, parity_dir):
    """The real (parity) AutoGaze at the ViT's scales: the LLM gets AutoGaze's own count (+ newline)."""
    from harness.pruning.autogaze import AutoGazePruner

    pruner = AutoGazePruner(gazing_ratio=0.3, model=str(parity_dir / "model"))
    geometry = adapter.token_geometry(T, 60, 80)
    selection = pruner.select_native(frames, adapter.native_target(), geometry, fps=2.0)
    gaze = selection.native
    result = adapter.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=2, prune_stage="native")
    assert selection.info["gazed_total"] == gaze.count == sum(selection.info["gazed_per_frame"]) > 0
    assert sum(selection.info["gazed_per_scale"]) == gaze.count
    assert result.tokens.visual_after == gaze.count + 1
    assert selection.num_kept == selection.info["kept"] == gaze.count
    assert selection.info["gaze_scales"] == list(adapter.native_target().scales)


def test_frames_larger_than_the_patch_grid_are_cropped_like_the_stock_conv(model_dir):
    """384-px frames hold 27 patches of 14 (378 px): the route reads the top-left area, as the conv."""
    adapter = LlavaOnevisionAdapter.from_pretrained(str(model_dir), native_attn="frame_independent")
    side = adapter.patches_per_side * adapter.patch_size + 6  # 6 px the valid conv ignores
    pixels = torch.randn(1, 2, 3, side, side, generator=torch.Generator().manual_seed(0))
    ours = adapter.encode_native(pixels, NativeGaze.full_finest(adapter.native_target(), 2))
    torch.testing.assert_close(ours[:-1], _stock_patch_features(adapter, pixels), atol=1e-5, rtol=1e-5)
    # resizing the frame to the grid's size instead (a plausible mistake) changes the features
    resized = torch.nn.functional.interpolate(pixels[0], size=side - 6, mode="bicubic")[None]
    other = adapter.encode_native(resized, NativeGaze.full_finest(adapter.native_target(), 2))
    assert not torch.allclose(other, ours, atol=1e-3)

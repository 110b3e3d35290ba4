"""LLaVA-OneVision adapter on a tiny random-weight model: equivalence with stock transformers.

The reference everywhere is the stock path (processor -> model forward / model.generate); the
adapter must match it exactly when it keeps everything, and must show the LLM exactly the
selected pooled tokens, at their unpruned positions, otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.models.llava_onevision import LlavaOnevisionAdapter
from harness.models.tiny import build_tiny_model
from harness.pruning.downsample import DownsamplePruner
from harness.pruning.selection import Selection, TokenGeometry
from tests.adapter_helpers import LLMInputRecorder, hf_cache_copy

PROMPT = "What is the person doing? Answer with the option's letter."
NUM_FRAMES = 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model("llava_onevision", tmp_path_factory.mktemp("llava_ov"), seed=0)


@pytest.fixture(scope="module")
def adapter(model_dir: Path) -> LlavaOnevisionAdapter:
    return LlavaOnevisionAdapter.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """A moving bright square over noise: frames differ, so pooled tokens differ."""
    rng = np.random.default_rng(1)
    video = rng.integers(0, 60, size=(NUM_FRAMES, 60, 80, 3), dtype=np.uint8)
    for t in range(NUM_FRAMES):
        video[t, 10:30, 5 + 6 * t : 25 + 6 * t] = 240
    return video


@pytest.fixture(scope="module")
def stock_inputs(adapter: LlavaOnevisionAdapter, frames: np.ndarray) -> dict[str, torch.Tensor]:
    return adapter.preprocess(frames, PROMPT)


@pytest.fixture(scope="module")
def random_selection(adapter: LlavaOnevisionAdapter) -> Selection:
    geometry = adapter.token_geometry(NUM_FRAMES, 60, 80)
    gen = torch.Generator().manual_seed(3)
    keep = torch.rand(geometry.grid_t, geometry.grid_h, geometry.grid_w, generator=gen) < 0.3
    keep[0, 0, 0] = True  # at least one kept token
    return Selection(geometry, keep, pruner="random")


def test_geometry_matches_stock_placeholder_count(adapter, stock_inputs):
    geometry = adapter.token_geometry(NUM_FRAMES, 60, 80)
    # 98 px / patch 14 = 7 patches per side, pooled with ceil to 4: the odd-grid case of 384 px.
    assert (geometry.grid_t, geometry.grid_h, geometry.grid_w) == (NUM_FRAMES, 4, 4)
    assert geometry.height == geometry.width == 4 * 2 * 14
    n_placeholders = int((stock_inputs["input_ids"] == adapter.video_token_id).sum())
    assert n_placeholders == geometry.total_tokens + 1  # + the trailing image_newline


def test_pooled_token_order_is_raster(adapter):
    """Pooled token (r, c) of a frame summarises patch rows ~2r, cols ~2c (stock bilinear pooling)."""
    n = adapter.patches_per_side
    rows, cols = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    patches = torch.stack([rows, cols], dim=-1).float().view(1, n * n, 2)
    pooled = adapter.model.model.apply_pooling(patches).view(
        adapter.pooled_per_side, adapter.pooled_per_side, 2
    )
    scale = (n - 1) / (adapter.pooled_per_side - 1) if adapter.pooled_per_side > 1 else 0.0
    for r in range(adapter.pooled_per_side):
        for c in range(adapter.pooled_per_side):
            assert abs(pooled[r, c, 0].item() - r * scale) <= 1.0
            assert abs(pooled[r, c, 1].item() - c * scale) <= 1.0


def test_encode_video_is_stock_features(adapter, stock_inputs):
    features = adapter.encode_video(stock_inputs["pixel_values_videos"])
    with torch.no_grad():
        stock = adapter.model(**stock_inputs).video_outputs.pooler_output.flatten(0, 1)
    torch.testing.assert_close(features, stock, rtol=0, atol=0)
    # The last token is the learned newline embedding, not a view of the video.
    torch.testing.assert_close(features[-1], adapter.model.model.image_newline.detach(), rtol=0, atol=0)


def test_any_size_path_equals_stock_at_native_size(adapter, stock_inputs):
    """The path used for downsampled frames reproduces stock get_video_features at the native size."""
    ours = adapter.encode_video_any_size(stock_inputs["pixel_values_videos"])
    stock = adapter.encode_video(stock_inputs["pixel_values_videos"])
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-5)


def test_downsample_selection_runs_at_the_smaller_size(adapter, frames):
    native = adapter.token_geometry(NUM_FRAMES, 60, 80)
    selection = DownsamplePruner(ratio=0.3).select(frames, native)
    small = selection.geometry
    assert small.grid_h < native.grid_h and small.total_tokens == selection.num_kept
    inputs = adapter.preprocess(frames, PROMPT, small)
    assert tuple(inputs["pixel_values_videos"].shape[-2:]) == (small.height, small.width)
    n_placeholders = int((inputs["input_ids"] == adapter.video_token_id).sum())
    assert n_placeholders == small.total_tokens + 1
    with LLMInputRecorder(adapter) as rec:
        result = adapter.generate(frames, selection, PROMPT, fps=4.0, max_new_tokens=2)
    embeds, positions = rec.calls[0]["inputs_embeds"][0], rec.calls[0]["position_ids"][0]
    # Nothing is pruned at the smaller size: the sequence is contiguous and every pooled token
    # plus the newline reaches the LLM.
    assert torch.equal(positions, torch.arange(inputs["input_ids"].shape[1]))
    video_rows = embeds[inputs["input_ids"][0] == adapter.video_token_id]
    torch.testing.assert_close(video_rows, adapter.encode_video(inputs["pixel_values_videos"]))
    assert result.tokens.visual_before == native.total_tokens + 1
    assert result.tokens.visual_after == small.total_tokens + 1
    assert result.extra["token_grid"] == [small.grid_t, small.grid_h, small.grid_w]


def test_keep_all_logits_equal_stock(adapter, stock_inputs):
    geometry = adapter.token_geometry(NUM_FRAMES, 60, 80)
    features = adapter.encode_video(stock_inputs["pixel_values_videos"])
    pruned = adapter.prune(stock_inputs, features, Selection.keep_all(geometry))
    assert torch.equal(pruned.model_kwargs["input_ids"], stock_inputs["input_ids"])
    with torch.no_grad():
        ours = adapter.model(**pruned.model_kwargs).logits
        stock = adapter.model(**stock_inputs).logits
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-5)


def test_keep_all_generation_equals_stock_generate(adapter, frames, stock_inputs):
    result = adapter.generate(frames, None, PROMPT, fps=4.0, max_new_tokens=8)
    with torch.no_grad():
        stock = adapter.model.generate(**stock_inputs, max_new_tokens=8, do_sample=False)
    stock_ids = stock[0, stock_inputs["input_ids"].shape[1] :].tolist()
    assert result.extra["output_ids"] == stock_ids
    assert result.text == adapter.processor.tokenizer.decode(stock_ids, skip_special_tokens=True)
    full_len = stock_inputs["input_ids"].shape[1]
    assert result.tokens.visual_before == result.tokens.visual_after == NUM_FRAMES * 16 + 1
    assert result.tokens.prompt == full_len
    assert result.tokens.generated == len(stock_ids)
    assert set(result.timings) == {"vision", "prefill", "generate"}
    assert all(v >= 0 for v in result.timings.values())
    assert result.peak_memory_mb is not None and result.peak_memory_mb > 0


def test_selected_tokens_reach_llm_at_unpruned_positions(adapter, frames, stock_inputs, random_selection):
    full_ids = stock_inputs["input_ids"][0]
    video_pos = (full_ids == adapter.video_token_id).nonzero().squeeze(-1)
    kept = random_selection.kept_indices
    with torch.no_grad():
        stock_features = adapter.model.model.get_video_features(
            pixel_values_videos=stock_inputs["pixel_values_videos"]
        ).pooler_output.flatten(0, 1)
    with LLMInputRecorder(adapter) as rec:
        result = adapter.generate(frames, random_selection, PROMPT, fps=4.0, max_new_tokens=3)
    prefill = rec.calls[0]
    embeds, positions = prefill["inputs_embeds"][0], prefill["position_ids"][0]

    n_text = int((full_ids != adapter.video_token_id).sum())
    n_kept = len(kept)
    assert embeds.shape[0] == n_text + n_kept + 1
    # Positions: exactly the unpruned positions of the text, the kept tokens and the newline.
    expected_video_pos = torch.cat([video_pos[kept], video_pos[-1:]])
    text_pos = (full_ids != adapter.video_token_id).nonzero().squeeze(-1)
    assert torch.equal(positions, torch.sort(torch.cat([text_pos, expected_video_pos])).values)
    # The embeddings at the kept video positions are the stock pooled features of those tokens.
    is_video_row = torch.isin(positions, expected_video_pos)
    newline = torch.tensor([len(stock_features) - 1])
    torch.testing.assert_close(embeds[is_video_row], stock_features[torch.cat([kept, newline])])
    # Text rows are the plain token embeddings, in order.
    text_embeds = adapter.model.get_input_embeddings()(full_ids[text_pos])
    torch.testing.assert_close(embeds[~is_video_row], text_embeds)
    # Decoding continues right after the UNPRUNED prompt: first new token at position L_full.
    assert rec.calls[1]["position_ids"].item() == full_ids.shape[0]

    assert result.tokens.visual_before == NUM_FRAMES * 16 + 1
    assert result.tokens.visual_after == n_kept + 1
    assert result.tokens.prompt == n_text + n_kept + 1


def test_random_selection_decode_loop_equals_generate_api(adapter, stock_inputs, frames, random_selection):
    """Our prefill/decode loop with gapped positions gives the ids transformers' generate gives."""
    features = adapter.encode_video(stock_inputs["pixel_values_videos"])
    pruned = adapter.prune(stock_inputs, features, random_selection)
    with torch.no_grad():
        ref = adapter.model.generate(**pruned.model_kwargs, max_new_tokens=8, do_sample=False)
        pruned_logits = adapter.model(**pruned.model_kwargs).logits[0, -1]
        full_logits = adapter.model(**stock_inputs).logits[0, -1]
    result = adapter.generate(frames, random_selection, PROMPT, fps=4.0, max_new_tokens=8)
    assert result.extra["output_ids"] == ref[0, pruned.model_kwargs["input_ids"].shape[1] :].tolist()
    # Sensitivity check: pruning does change what the LLM computes.
    assert not torch.allclose(pruned_logits, full_logits, atol=1e-6)


def test_pre_vit_keep_all_equals_post_vit(adapter, frames):
    """SigLIP on every patch (pre-ViT, keep-all) must be the stock path: same features, same answer."""
    post = adapter.generate(frames, None, PROMPT, fps=4.0, max_new_tokens=6)
    with LLMInputRecorder(adapter) as rec_pre:
        pre = adapter.generate(frames, None, PROMPT, fps=4.0, max_new_tokens=6, prune_stage="pre_vit")
    with LLMInputRecorder(adapter) as rec_post:
        adapter.generate(frames, None, PROMPT, fps=4.0, max_new_tokens=6)
    torch.testing.assert_close(rec_pre.calls[0]["inputs_embeds"], rec_post.calls[0]["inputs_embeds"])
    assert pre.extra["output_ids"] == post.extra["output_ids"]
    assert pre.tokens == post.tokens


def test_pre_vit_runs_the_vit_on_fewer_patches_and_feeds_kept_tokens(adapter, frames, random_selection):
    inputs = adapter.preprocess(frames, PROMPT)
    features, vit_tokens = adapter.encode_kept(inputs["pixel_values_videos"], random_selection)
    total_patches = NUM_FRAMES * (adapter.image_size // adapter.patch_size) ** 2
    assert 0 < vit_tokens < total_patches
    assert features.shape[0] == random_selection.num_kept + 1  # + trailing newline
    with LLMInputRecorder(adapter) as rec:
        result = adapter.generate(
            frames, random_selection, PROMPT, fps=4.0, max_new_tokens=2, prune_stage="pre_vit"
        )
    assert result.extra["vit_tokens"] == vit_tokens
    assert result.tokens.visual_after == random_selection.num_kept + 1
    ids = adapter.prune(inputs, adapter.encode_video(inputs["pixel_values_videos"]), random_selection)
    is_visual = ids.model_kwargs["input_ids"][0] == adapter.video_token_id
    torch.testing.assert_close(rec.calls[0]["inputs_embeds"][0, is_visual], features)


def test_bad_inputs_are_refused_with_a_reason(adapter, frames, random_selection):
    with pytest.raises(ValueError, match="uint8"):
        adapter.generate(frames.astype(np.float32), None, PROMPT, fps=4.0)
    with pytest.raises(ValueError, match="frames"):
        adapter.generate(frames[:4], random_selection, PROMPT, fps=4.0)
    odd = TokenGeometry(NUM_FRAMES, 100, 100, patch_size=14, spatial_merge_size=2)
    with pytest.raises(ValueError, match="multiple of 28"):
        adapter.generate(frames, Selection.keep_all(odd), PROMPT, fps=4.0)
    foreign = TokenGeometry(NUM_FRAMES, 112, 112, patch_size=16, spatial_merge_size=2)
    with pytest.raises(ValueError, match="not made for llava_onevision"):
        adapter.generate(frames, Selection.keep_all(foreign), PROMPT, fps=4.0)


def test_loads_from_hf_cache_offline(model_dir, adapter, frames, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf_cache_copy(model_dir, tmp_path / "hub", "tiny-org/llava-ov-tiny")
    cached = LlavaOnevisionAdapter.from_pretrained("tiny-org/llava-ov-tiny", cache_dir=tmp_path / "hub")
    assert "snapshots" in str(cached.model.name_or_path)
    a = cached.generate(frames, None, PROMPT, fps=4.0, max_new_tokens=4)
    b = adapter.generate(frames, None, PROMPT, fps=4.0, max_new_tokens=4)
    assert a.extra["output_ids"] == b.extra["output_ids"]


def test_missing_model_gives_a_clear_message(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        LlavaOnevisionAdapter.from_pretrained(str(missing))
    with pytest.raises(FileNotFoundError, match="hf download nobody/nothing"):
        LlavaOnevisionAdapter.from_pretrained("nobody/nothing", cache_dir=tmp_path / "empty-hub")
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        LlavaOnevisionAdapter.from_pretrained(str(tmp_path / "not-a-model"))

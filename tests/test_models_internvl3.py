"""InternVL3 adapter on a tiny random-weight model: equivalence with stock transformers.

The reference is the stock path (processor -> model forward / model.generate). Keeping every
token must reproduce it exactly; any selection must show the LLM exactly the selected
``<IMG_CONTEXT>`` features, at the positions they had in the unpruned prompt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.models.internvl3 import InternVL3Adapter
from harness.models.tiny import build_tiny_model
from harness.pruning.downsample import DownsamplePruner
from harness.pruning.selection import Selection, TokenGeometry
from tests.adapter_helpers import LLMInputRecorder, hf_cache_copy

PROMPT = "What is the person doing? Answer with the option's letter."
NUM_FRAMES = 6


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model("internvl3", tmp_path_factory.mktemp("internvl3"), seed=0)


@pytest.fixture(scope="module")
def adapter(model_dir: Path) -> InternVL3Adapter:
    return InternVL3Adapter.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """A moving bright square over noise: frames differ, so their tokens differ."""
    rng = np.random.default_rng(2)
    video = rng.integers(0, 60, size=(NUM_FRAMES, 72, 96, 3), dtype=np.uint8)
    for t in range(NUM_FRAMES):
        video[t, 20:44, 4 + 10 * t : 28 + 10 * t] = 230
    return video


@pytest.fixture(scope="module")
def stock_inputs(adapter: InternVL3Adapter, frames: np.ndarray) -> dict[str, torch.Tensor]:
    return adapter.preprocess(frames, PROMPT)


@pytest.fixture(scope="module")
def random_selection(adapter: InternVL3Adapter) -> Selection:
    geometry = adapter.token_geometry(NUM_FRAMES, 72, 96)
    gen = torch.Generator().manual_seed(5)
    keep = torch.rand(geometry.grid_t, geometry.grid_h, geometry.grid_w, generator=gen) < 0.4
    keep[2] = False  # one frame loses every token: its <img></img> wrapper must stay
    keep[0, 0, 0] = True
    return Selection(geometry, keep, pruner="random")


def test_geometry_matches_stock_placeholders(adapter, stock_inputs):
    geometry = adapter.token_geometry(NUM_FRAMES, 72, 96)
    # 112 px / patch 14 = 8x8 patches, pixel-shuffled 2x2 -> 4x4 = 16 tokens per frame.
    assert (geometry.grid_t, geometry.grid_h, geometry.grid_w) == (NUM_FRAMES, 4, 4)
    ids = stock_inputs["input_ids"][0]
    assert int((ids == adapter.image_token_id).sum()) == geometry.total_tokens
    tok = adapter.processor.tokenizer
    assert int((ids == tok.convert_tokens_to_ids("<img>")).sum()) == NUM_FRAMES
    assert stock_inputs["pixel_values"].shape[0] == NUM_FRAMES  # one temporal group per frame


def test_pixel_shuffle_token_order_is_raster(adapter):
    """Token (r, c) of a frame is built from patch block rows 2r..2r+1, cols 2c..2c+1 (stock shuffle)."""
    n = 8
    rows, cols = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    patches = torch.stack([rows, cols], dim=-1).float()[None]  # (1, row, col, [row, col])
    shuffled = adapter.model.model.pixel_shuffle(patches, scale_factor=0.5)  # (1, 4, 4, 8)
    for r in range(n // 2):
        for c in range(n // 2):
            channels = shuffled[0, r, c].view(4, 2)
            assert set(channels[:, 0].long().tolist()) == {2 * r, 2 * r + 1}
            assert set(channels[:, 1].long().tolist()) == {2 * c, 2 * c + 1}


def test_encode_video_is_stock_features(adapter, stock_inputs):
    features = adapter.encode_video(stock_inputs["pixel_values"])
    with torch.no_grad():
        stock = adapter.model(**stock_inputs).image_outputs.pooler_output.flatten(0, 1)
    torch.testing.assert_close(features, stock, rtol=0, atol=0)


def test_downsample_selection_runs_at_the_smaller_size(adapter, frames):
    native = adapter.token_geometry(NUM_FRAMES, 72, 96)
    selection = DownsamplePruner(ratio=0.3).select(frames, native)
    small = selection.geometry
    assert small.grid_h < native.grid_h and small.total_tokens == selection.num_kept
    inputs = adapter.preprocess(frames, PROMPT, small)
    assert tuple(inputs["pixel_values"].shape[-2:]) == (small.height, small.width)
    assert int((inputs["input_ids"] == adapter.image_token_id).sum()) == small.total_tokens
    with torch.no_grad():
        stock = adapter.model.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    assert stock.shape[1] == small.tokens_per_group  # the stock tower/shuffle agrees with the grid
    with LLMInputRecorder(adapter) as rec:
        result = adapter.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=2)
    embeds, positions = rec.calls[0]["inputs_embeds"][0], rec.calls[0]["position_ids"][0]
    assert torch.equal(positions, torch.arange(inputs["input_ids"].shape[1]))
    rows = embeds[inputs["input_ids"][0] == adapter.image_token_id]
    torch.testing.assert_close(rows, stock.flatten(0, 1))
    assert result.tokens.visual_before == native.total_tokens
    assert result.tokens.visual_after == small.total_tokens
    assert result.extra["token_grid"] == [small.grid_t, small.grid_h, small.grid_w]


def test_keep_all_logits_equal_stock(adapter, stock_inputs):
    geometry = adapter.token_geometry(NUM_FRAMES, 72, 96)
    features = adapter.encode_video(stock_inputs["pixel_values"])
    pruned = adapter.prune(stock_inputs, features, Selection.keep_all(geometry))
    assert torch.equal(pruned.model_kwargs["input_ids"], stock_inputs["input_ids"])
    with torch.no_grad():
        ours = adapter.model(**pruned.model_kwargs).logits
        stock = adapter.model(**stock_inputs).logits
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-5)


def test_keep_all_generation_equals_stock_generate(adapter, frames, stock_inputs):
    result = adapter.generate(frames, None, PROMPT, fps=2.0, max_new_tokens=8)
    with torch.no_grad():
        stock = adapter.model.generate(**stock_inputs, max_new_tokens=8, do_sample=False)
    stock_ids = stock[0, stock_inputs["input_ids"].shape[1] :].tolist()
    assert result.extra["output_ids"] == stock_ids
    assert len(set(stock_ids)) > 1, "degenerate tiny model: the ids comparison would prove little"
    assert result.text == adapter.processor.tokenizer.decode(stock_ids, skip_special_tokens=True)
    assert result.tokens.visual_before == result.tokens.visual_after == NUM_FRAMES * 16
    assert result.tokens.prompt == stock_inputs["input_ids"].shape[1]
    assert result.tokens.generated == len(stock_ids)
    assert set(result.timings) == {"vision", "prefill", "generate"}
    assert result.peak_memory_mb is not None and result.peak_memory_mb > 0


def test_selected_tokens_reach_llm_at_unpruned_positions(adapter, frames, stock_inputs, random_selection):
    full_ids = stock_inputs["input_ids"][0]
    is_ctx = full_ids == adapter.image_token_id
    ctx_pos = is_ctx.nonzero().squeeze(-1)
    text_pos = (~is_ctx).nonzero().squeeze(-1)
    kept = random_selection.kept_indices
    with torch.no_grad():
        stock_features = adapter.model.model.get_image_features(
            pixel_values=stock_inputs["pixel_values"]
        ).pooler_output.flatten(0, 1)
    with LLMInputRecorder(adapter) as rec:
        result = adapter.generate(frames, random_selection, PROMPT, fps=2.0, max_new_tokens=3)
    embeds, positions = rec.calls[0]["inputs_embeds"][0], rec.calls[0]["position_ids"][0]

    assert embeds.shape[0] == len(text_pos) + len(kept)
    assert torch.equal(positions, torch.sort(torch.cat([text_pos, ctx_pos[kept]])).values)
    is_visual_row = torch.isin(positions, ctx_pos)
    torch.testing.assert_close(embeds[is_visual_row], stock_features[kept])
    # Every text token (frame wrappers of the fully pruned frame included) is there, in order.
    torch.testing.assert_close(
        embeds[~is_visual_row], adapter.model.get_input_embeddings()(full_ids[text_pos])
    )
    assert rec.calls[1]["position_ids"].item() == full_ids.shape[0]

    assert result.tokens.visual_before == NUM_FRAMES * 16
    assert result.tokens.visual_after == len(kept) == random_selection.num_kept
    assert result.tokens.prompt == len(text_pos) + len(kept)


def test_random_selection_decode_loop_equals_generate_api(adapter, frames, stock_inputs, random_selection):
    features = adapter.encode_video(stock_inputs["pixel_values"])
    pruned = adapter.prune(stock_inputs, features, random_selection)
    with torch.no_grad():
        ref = adapter.model.generate(**pruned.model_kwargs, max_new_tokens=8, do_sample=False)
        pruned_logits = adapter.model(**pruned.model_kwargs).logits[0, -1]
        full_logits = adapter.model(**stock_inputs).logits[0, -1]
    result = adapter.generate(frames, random_selection, PROMPT, fps=2.0, max_new_tokens=8)
    assert result.extra["output_ids"] == ref[0, pruned.model_kwargs["input_ids"].shape[1] :].tolist()
    assert not torch.allclose(pruned_logits, full_logits, atol=1e-4)


def test_keep_nothing_still_answers(adapter, frames):
    geometry = adapter.token_geometry(NUM_FRAMES, 72, 96)
    empty = Selection(
        geometry, torch.zeros(geometry.grid_t, geometry.grid_h, geometry.grid_w, dtype=torch.bool)
    )
    result = adapter.generate(frames, empty, PROMPT, fps=2.0, max_new_tokens=2)
    assert result.tokens.visual_after == 0
    assert result.tokens.visual_before == NUM_FRAMES * 16
    assert 1 <= result.tokens.generated <= 2


def test_pre_vit_is_not_implemented(adapter, frames):
    with pytest.raises(NotImplementedError, match="pre-ViT"):
        adapter.generate(frames, None, PROMPT, fps=2.0, prune_stage="pre_vit")


def test_wrong_selection_is_refused(adapter, frames, random_selection):
    with pytest.raises(ValueError, match="frames"):
        adapter.generate(frames[:3], random_selection, PROMPT, fps=2.0)
    with pytest.raises(ValueError, match="uint8"):
        adapter.generate(frames.astype(np.int16), None, PROMPT, fps=2.0)
    oblong = TokenGeometry(NUM_FRAMES, 56, 84, patch_size=14, spatial_merge_size=2)
    with pytest.raises(ValueError, match="square"):
        adapter.generate(frames, Selection.keep_all(oblong), PROMPT, fps=2.0)


def test_loads_from_hf_cache_offline(model_dir, adapter, frames, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    hf_cache_copy(model_dir, tmp_path / "hub", "tiny-org/internvl3-tiny", commit)
    cached = InternVL3Adapter.from_pretrained("tiny-org/internvl3-tiny", cache_dir=tmp_path / "hub")
    assert commit in str(cached.model.name_or_path)
    a = cached.generate(frames, None, PROMPT, fps=2.0, max_new_tokens=4)
    b = adapter.generate(frames, None, PROMPT, fps=2.0, max_new_tokens=4)
    assert a.extra["output_ids"] == b.extra["output_ids"]


def test_missing_model_gives_a_clear_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        InternVL3Adapter.from_pretrained(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="OpenGVLab/InternVL3-1B-hf"):
        InternVL3Adapter.from_pretrained("OpenGVLab/InternVL3-1B-hf", cache_dir=tmp_path / "empty-hub")

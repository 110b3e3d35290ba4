"""InternVL3 adapter on a tiny random-weight model: equivalence with stock transformers.

The reference is the stock path (processor -> model forward / model.generate). Keeping every
token must reproduce it exactly; any selection must show the LLM exactly the selected
``<IMG_CONTEXT>`` features, at the positions they had in the unpruned prompt. pre_vit (InternViT
on the kept tokens' patches only) is checked against post_vit when all is kept, against a
frame-by-frame reference built on the stock encoder otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.models.internvit_kept import (
    encode_kept_patches,
    shuffled_features_pre_vit,
    vit_keep_for_token_keep,
)
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


# -- pre_vit: InternViT on the kept tokens' patches only --------------------------------------

PATCHES_PER_FRAME = 64  # 112 px / patch 14 = 8 x 8


@pytest.fixture(scope="module")
def pre_vit_selection(adapter: InternVL3Adapter) -> Selection:
    """Frame 1 keeps every token (must equal stock: frames are independent), frame 3 none."""
    geometry = adapter.token_geometry(NUM_FRAMES, 72, 96)
    gen = torch.Generator().manual_seed(11)
    keep = torch.rand(geometry.grid_t, geometry.grid_h, geometry.grid_w, generator=gen) < 0.3
    keep[1] = True
    keep[3] = False
    keep[:, 0, 0] |= torch.arange(NUM_FRAMES) != 3
    return Selection(geometry, keep, pruner="random")


def per_frame_reference(
    adapter: InternVL3Adapter, pixel_values: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """Kept tokens' features built frame by frame with the stock tower's own ``encoder.forward``.

    Independent of the adapter's batching by kept count and of its shuffle footprint: the 2x2
    patch blocks are written out here by hand.
    """
    inner = adapter.model.model
    tower = inner.vision_tower
    out = []
    with torch.no_grad():
        for t in range(pixel_values.shape[0]):
            if not keep[t].any():
                continue
            patch_keep = keep[t].repeat_interleave(2, 0).repeat_interleave(2, 1).flatten()  # (64,)
            embedded = tower.embeddings(pixel_values[t : t + 1])[0]
            seq = torch.cat([embedded[:1], embedded[1:][patch_keep]])[None]
            hidden = tower.layernorm(tower.encoder(seq).last_hidden_state)[0, 1:]
            grid = hidden.new_zeros(PATCHES_PER_FRAME, hidden.shape[-1])
            grid[patch_keep] = hidden
            shuffled = inner.pixel_shuffle(grid.view(1, 8, 8, -1), scale_factor=0.5).reshape(16, -1)
            out.append(inner.multi_modal_projector(shuffled[keep[t].flatten()]))
    return torch.cat(out)


def test_pre_vit_keep_all_equals_post_vit(adapter, frames):
    with LLMInputRecorder(adapter) as post_rec:
        post = adapter.generate(frames, None, PROMPT, fps=2.0, max_new_tokens=8)
    with LLMInputRecorder(adapter) as pre_rec:
        pre = adapter.generate(frames, None, PROMPT, fps=2.0, max_new_tokens=8, prune_stage="pre_vit")
    torch.testing.assert_close(pre_rec.calls[0]["inputs_embeds"], post_rec.calls[0]["inputs_embeds"])
    assert torch.equal(pre_rec.calls[0]["position_ids"], post_rec.calls[0]["position_ids"])
    assert pre.extra["output_ids"] == post.extra["output_ids"]
    assert len(set(post.extra["output_ids"])) > 1, (
        "degenerate tiny model: the ids comparison would prove little"
    )
    assert pre.extra["vit_tokens"] == NUM_FRAMES * PATCHES_PER_FRAME
    assert pre.extra["vit_cls_tokens"] == NUM_FRAMES
    assert post.extra["vit_tokens"] is None and post.extra["prune_stage"] == "post_vit"
    assert pre.tokens == post.tokens


def test_vit_keep_is_each_tokens_2x2_patch_block(adapter):
    inner = adapter.model.model
    for r, c in [(0, 0), (1, 3), (3, 2)]:
        token_keep = torch.zeros(1, 4, 4, dtype=torch.bool)
        token_keep[0, r, c] = True
        vit_keep = vit_keep_for_token_keep(token_keep, inner.pixel_shuffle, (8, 8), 0.5)
        expected = torch.zeros(1, 8, 8, dtype=torch.bool)
        expected[0, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = True
        assert torch.equal(vit_keep, expected)


def test_pre_vit_kept_patch_path_matches_per_frame_reference(adapter, stock_inputs, pre_vit_selection):
    pixel_values = stock_inputs["pixel_values"]
    keep = pre_vit_selection.keep
    features, vit_tokens, cls_tokens = adapter.encode_kept(pixel_values, pre_vit_selection)
    torch.testing.assert_close(features, per_frame_reference(adapter, pixel_values, keep))
    assert vit_tokens == 4 * pre_vit_selection.num_kept < NUM_FRAMES * PATCHES_PER_FRAME
    assert cls_tokens == NUM_FRAMES - 1  # frame 3 ran nothing, not even its CLS token

    stock = adapter.encode_video(pixel_values).view(NUM_FRAMES, 16, -1)
    counts = keep.flatten(1).sum(1).tolist()
    frame1 = features[counts[0] : counts[0] + 16]
    torch.testing.assert_close(frame1, stock[1])  # a fully kept frame is the stock frame
    frame0 = features[: counts[0]]
    assert not torch.allclose(frame0, stock[0][keep[0].flatten()], atol=1e-4), (
        "attention saw only kept patches"
    )


def test_pre_vit_llm_sees_kept_features_at_unpruned_positions(
    adapter, frames, stock_inputs, pre_vit_selection
):
    full_ids = stock_inputs["input_ids"][0]
    is_ctx = full_ids == adapter.image_token_id
    ctx_pos = is_ctx.nonzero().squeeze(-1)
    text_pos = (~is_ctx).nonzero().squeeze(-1)
    kept = pre_vit_selection.kept_indices
    expected, _, _ = adapter.encode_kept(stock_inputs["pixel_values"], pre_vit_selection)
    with LLMInputRecorder(adapter) as rec:
        result = adapter.generate(
            frames, pre_vit_selection, PROMPT, fps=2.0, max_new_tokens=3, prune_stage="pre_vit"
        )
    embeds, positions = rec.calls[0]["inputs_embeds"][0], rec.calls[0]["position_ids"][0]
    assert torch.equal(positions, torch.sort(torch.cat([text_pos, ctx_pos[kept]])).values)
    is_visual_row = torch.isin(positions, ctx_pos)
    torch.testing.assert_close(embeds[is_visual_row], expected, rtol=0, atol=0)
    # Frame wrappers of the fully pruned frame 3 (and every other text token) are there, in order.
    torch.testing.assert_close(
        embeds[~is_visual_row], adapter.model.get_input_embeddings()(full_ids[text_pos])
    )
    assert result.extra["vit_tokens"] == 4 * pre_vit_selection.num_kept
    assert result.extra["vit_cls_tokens"] == NUM_FRAMES - 1
    assert result.extra["prune_stage"] == "pre_vit"
    assert result.tokens.visual_after == len(kept)
    assert result.tokens.visual_before == NUM_FRAMES * 16


def test_pre_vit_fully_pruned_frames(adapter, frames, stock_inputs, pre_vit_selection):
    _, vit_keep = shuffled_features_pre_vit(
        adapter.model.model, stock_inputs["pixel_values"], pre_vit_selection.keep
    )
    assert not vit_keep[3].any() and vit_keep[1].all()
    geometry = adapter.token_geometry(NUM_FRAMES, 72, 96)
    empty = Selection(
        geometry, torch.zeros(geometry.grid_t, geometry.grid_h, geometry.grid_w, dtype=torch.bool)
    )
    result = adapter.generate(frames, empty, PROMPT, fps=2.0, max_new_tokens=2, prune_stage="pre_vit")
    assert result.extra["vit_tokens"] == 0 and result.extra["vit_cls_tokens"] == 0
    assert result.tokens.visual_after == 0
    assert 1 <= result.tokens.generated <= 2


def test_pre_vit_downsample_equals_post_vit(adapter, frames):
    """A smaller run size interpolates the position embeddings; pre_vit must use the same ones."""
    native = adapter.token_geometry(NUM_FRAMES, 72, 96)
    selection = DownsamplePruner(ratio=0.3).select(frames, native)
    inputs = adapter.preprocess(frames, PROMPT, selection.geometry)
    features, vit_tokens, _ = adapter.encode_kept(inputs["pixel_values"], selection)
    torch.testing.assert_close(features, adapter.encode_video(inputs["pixel_values"]))
    assert vit_tokens == selection.num_kept * 4


@pytest.mark.parametrize("layer", [0, 1, -2])
def test_kept_patches_follow_vision_feature_layer(adapter, stock_inputs, layer):
    tower = adapter.model.model.vision_tower
    pixel_values = stock_inputs["pixel_values"][:2]
    keep = torch.ones(2, 8, 8, dtype=torch.bool)
    ours = encode_kept_patches(tower, pixel_values, keep, feature_layer=layer)
    with torch.no_grad():
        stock = tower(pixel_values=pixel_values, output_hidden_states=True).hidden_states[layer][:, 1:]
    torch.testing.assert_close(ours.features, stock.flatten(0, 1))


def test_kept_patches_refuse_what_stock_cannot_do(adapter, stock_inputs):
    tower = adapter.model.model.vision_tower
    pixel_values = stock_inputs["pixel_values"][:1]
    keep = torch.ones(1, 8, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="select_strategy"):
        encode_kept_patches(tower, pixel_values, keep, select_strategy="full")
    with pytest.raises(ValueError, match="one int"):
        encode_kept_patches(tower, pixel_values, keep, feature_layer=[-1, -2])
    with pytest.raises(ValueError, match="keep must be"):
        encode_kept_patches(tower, pixel_values, keep[:, :4])


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

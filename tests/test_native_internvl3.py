"""InternVL3 ``prune_stage: native``: one gaze = one pixel-shuffled LLM token (2x2 InternViT patches).

Checked on the tiny random-weight model: with every finest-scale cell gazed, frame-independent
attention gives exactly the stock ``get_image_features`` (CLS, positions, shuffle order and
projector all as stock), and so does block-causal on one frame; more frames make block-causal
differ. The masked layer equals the stock layer when nothing is masked. Multi-scale gazes reach
the LLM one token each, inside their own frame's ``<img>...</img>``, at consecutive positions;
with the AutoGaze parity checkpoint the LLM's token count is AutoGaze's own count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.models.gazed_siglip import GazingInfo
from harness.models.internvit_gazed import layer_with_mask
from harness.models.internvl3 import InternVL3Adapter
from harness.models.tiny import build_tiny_model
from harness.pruning.native_gaze import NativeGaze, NativeSelection, coverage_grid
from tests.adapter_helpers import LLMInputRecorder

PROMPT = "What moves? Answer with the option's letter."
T = 3


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model("internvl3", tmp_path_factory.mktemp("internvl3_native"), seed=0)


@pytest.fixture(scope="module")
def adapter(model_dir: Path) -> InternVL3Adapter:
    return InternVL3Adapter.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(2)
    video = rng.integers(0, 60, size=(T, 72, 96, 3), dtype=np.uint8)
    for t in range(T):
        video[t, 10:40, 5 + 8 * t : 35 + 8 * t] = 230
    return video


def _stock_tokens(adapter: InternVL3Adapter, pixel_values: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return adapter.model.model.get_image_features(
            pixel_values=pixel_values, return_dict=True
        ).pooler_output.flatten(0, 1)


def _random_gaze(adapter: InternVL3Adapter, seed: int = 0) -> NativeGaze:
    target = adapter.native_target()
    g = torch.Generator().manual_seed(seed)
    masks = [torch.rand(1, T, n, generator=g) < 0.5 for n in target.layout.tokens_per_scale]
    for m in masks:
        m[..., -1] = True
    masks[-1][0, 1] = False  # frame 1 keeps no finest cell
    return NativeGaze(target, GazingInfo.from_masks(masks, target.layout))


def test_target_cells_are_one_shuffled_token(adapter):
    target = adapter.native_target()
    assert target.patch_size == adapter.patch_size * adapter.merge == 28
    assert target.scales[-1] == adapter.frame_height and len(target.scales) == 4
    assert target.layout.grid_sizes[-1] ** 2 == adapter.processor.image_seq_length


def test_masked_layer_equals_stock_layer_when_nothing_is_masked(adapter):
    layer = adapter.model.model.vision_tower.encoder.layer[0]
    x = torch.randn(1, 9, adapter.model.config.vision_config.hidden_size)
    with torch.no_grad():
        stock = layer(x)
        stock = stock[0] if isinstance(stock, tuple) else stock
        ours = layer_with_mask(layer, x, torch.zeros(1, 1, 9, 9))
        blocked = layer_with_mask(
            layer, x, torch.zeros(1, 1, 9, 9).masked_fill(torch.eye(9, dtype=torch.bool) == 0, -1e30)
        )
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(blocked, stock, atol=1e-3)  # the mask is really applied


def test_full_finest_frame_independent_equals_stock_image_features(model_dir, frames):
    adapter = InternVL3Adapter.from_pretrained(str(model_dir), native_attn="frame_independent")
    inputs = adapter.preprocess(frames, PROMPT)
    ours = adapter.encode_native(inputs["pixel_values"], NativeGaze.full_finest(adapter.native_target(), T))
    stock = _stock_tokens(adapter, inputs["pixel_values"])
    assert ours.shape == stock.shape
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-5)


def test_full_finest_block_causal_one_frame_equals_stock_more_frames_differ(adapter, frames):
    inputs = adapter.preprocess(frames[:1], PROMPT)
    ours = adapter.encode_native(inputs["pixel_values"], NativeGaze.full_finest(adapter.native_target(), 1))
    torch.testing.assert_close(ours, _stock_tokens(adapter, inputs["pixel_values"]), atol=1e-5, rtol=1e-5)
    inputs = adapter.preprocess(frames, PROMPT)
    ours = adapter.encode_native(inputs["pixel_values"], NativeGaze.full_finest(adapter.native_target(), T))
    stock = _stock_tokens(adapter, inputs["pixel_values"])
    n = adapter.processor.image_seq_length
    torch.testing.assert_close(ours[:n], stock[:n], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ours[n:], stock[n:], atol=1e-3)


def test_full_finest_generation_feeds_stock_tokens_in_the_stock_prompt(model_dir, frames):
    """All finest cells: the native prompt IS the stock prompt, so positions are the stock ones too."""
    adapter = InternVL3Adapter.from_pretrained(str(model_dir), native_attn="frame_independent")
    inputs = adapter.preprocess(frames, PROMPT)
    gaze = NativeGaze.full_finest(adapter.native_target(), T)
    geometry = adapter.token_geometry(T, 72, 96)
    selection = NativeSelection(geometry, coverage_grid(gaze, geometry), pruner="autogaze", native=gaze)
    with LLMInputRecorder(adapter) as rec:
        result = adapter.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=4, prune_stage="native")
    stock = adapter.generate(frames, None, PROMPT, fps=2.0, max_new_tokens=4, prune_stage="post_vit")
    assert result.extra["output_ids"] == stock.extra["output_ids"]
    assert rec.calls[0]["inputs_embeds"].shape[1] == inputs["input_ids"].shape[1]
    assert result.tokens.visual_after == result.tokens.visual_before == T * adapter.processor.image_seq_length
    assert result.extra["prune_stage"] == "native" and stock.extra["prune_stage"] == "post_vit"


def test_multiscale_gazes_reach_the_llm_inside_their_frames(adapter, frames):
    gaze = _random_gaze(adapter)
    geometry = adapter.token_geometry(T, 72, 96)
    selection = NativeSelection(geometry, coverage_grid(gaze, geometry), pruner="autogaze", native=gaze)
    inputs = adapter.preprocess(frames, PROMPT)
    features = adapter.encode_native(inputs["pixel_values"], gaze)
    with LLMInputRecorder(adapter) as rec:
        result = adapter.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=2, prune_stage="native")
    assert features.shape[0] == gaze.count == result.tokens.visual_after
    assert result.extra["gazes"] == gaze.count and result.extra["vit_tokens"] == 4 * gaze.count
    # rebuild the expected prompt: each frame's run holds that frame's gazes
    ids = inputs["input_ids"][0]
    img = adapter.image_token_id
    embeds = rec.calls[0]["inputs_embeds"][0]
    text_rows = ids != img
    n_text = int(text_rows.sum())
    assert embeds.shape[0] == n_text + gaze.count
    assert torch.equal(rec.calls[0]["position_ids"][0], torch.arange(n_text + gaze.count))
    # walk the stock prompt: text rows keep their embeddings; each run becomes its frame's gazes
    table = adapter.model.get_input_embeddings()
    row, feat, frame, prev_visual = 0, 0, -1, False
    per_frame = gaze.gazed_per_frame
    assert per_frame[1] > 0 and per_frame != [adapter.processor.image_seq_length] * T
    for tok in ids.tolist():
        if tok == img:
            if not prev_visual:
                frame += 1
                k = per_frame[frame]
                torch.testing.assert_close(embeds[row : row + k], features[feat : feat + k])
                row, feat = row + k, feat + k
            prev_visual = True
            continue
        prev_visual = False
        torch.testing.assert_close(embeds[row], table(torch.tensor(tok)))
        row += 1
    assert frame == T - 1 and feat == gaze.count


def test_autogaze_native_counts_equal_llm_tokens(adapter, frames, parity_dir):
    from harness.pruning.autogaze import AutoGazePruner

    pruner = AutoGazePruner(gazing_ratio=0.3, model=str(parity_dir / "model"))
    geometry = adapter.token_geometry(T, 72, 96)
    selection = pruner.select_native(frames, adapter.native_target(), geometry, fps=2.0)
    result = adapter.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=2, prune_stage="native")
    assert result.tokens.visual_after == selection.info["gazed_total"] == selection.native.count > 0
    assert result.tokens.visual_after < result.tokens.visual_before

"""Qwen2.5-VL and Qwen3-VL adapters vs the stock transformers models, on tiny random-weight builds.

Equivalence, not smoke: keep-all must give the stock logits and the stock ``generate`` ids; a
random selection must put exactly the selected ViT features (and DeepStack rows) into the LLM at
the M-RoPE positions they had in the unpruned sequence; pre-ViT keep-all must equal no pruning,
and pre-ViT on whole temporal groups must equal the stock ViT run on those frames alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.models.qwen2_5_vl import Qwen25VLAdapter
from harness.models.qwen3_vl import Qwen3VLAdapter
from harness.models.tiny import build_tiny_model
from harness.pruning.selection import Selection, TokenGeometry
from tests.adapter_helpers import hf_cache_copy

ADAPTERS = {"qwen2_5_vl": Qwen25VLAdapter, "qwen3_vl": Qwen3VLAdapter}
PROMPT = "What is the person holding? Answer briefly."
FPS = 2.0


@pytest.fixture(scope="module", params=sorted(ADAPTERS))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def model_dir(family: str, tmp_path_factory) -> Path:
    return build_tiny_model(family, tmp_path_factory.mktemp(family) / "model", seed=0)


@pytest.fixture(scope="module")
def adapter(family: str, model_dir: Path):
    # stock equality: the installed transformers' M-RoPE text rule (our default is Qwen's reference
    # rule, which stock get_rope_index >= 5.3 no longer follows; tests/test_text_positions.py)
    return ADAPTERS[family].from_pretrained(str(model_dir), pipeline={"text_positions": "transformers"})


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    # 8 frames, a size both families resize (so the resize path is exercised) into several windows.
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(8, 200, 150, 3), dtype=np.uint8)


def random_selection(geometry: TokenGeometry, ratio: float, seed: int) -> Selection:
    gen = torch.Generator().manual_seed(seed)
    keep = torch.rand(geometry.grid_t, geometry.grid_h, geometry.grid_w, generator=gen) < ratio
    keep.view(-1)[0] = True  # never empty
    return Selection(geometry, keep, pruner="random")


def capture_llm_inputs(adapter) -> tuple[dict, torch.utils.hooks.RemovableHandle]:
    """Record the kwargs the LLM (text model) receives on its first (prefill) call."""
    seen: dict = {}

    def hook(_module, _args, kwargs):
        if not seen:
            seen.update({k: v for k, v in kwargs.items() if v is not None})

    return seen, adapter.model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)


def test_token_geometry_matches_the_stock_processor(adapter):
    for t, h, w in [(8, 200, 150), (7, 112, 112), (4, 60, 300), (16, 480, 640)]:
        frames = np.zeros((t, h, w, 3), dtype=np.uint8)
        prepared = adapter.prepare(frames, PROMPT, fps=FPS)  # raises if the grid differs
        g = adapter.token_geometry(t, h, w)
        grid = prepared.batch["video_grid_thw"][0].tolist()
        assert grid == [g.grid_t, g.grid_h * g.spatial_merge_size, g.grid_w * g.spatial_merge_size]
        n_pads = int((prepared.batch["input_ids"] == adapter.video_token_id).sum())
        assert n_pads == g.total_tokens
        assert g.num_frames % g.temporal_patch_size == 0 and g.num_frames >= t


def test_keep_all_logits_equal_stock(adapter, frames):
    prepared = adapter.prepare(frames, PROMPT, fps=FPS)
    with torch.inference_mode():
        stock = adapter.model(**prepared.batch).logits
        kept = torch.arange(prepared.geometry.total_tokens)
        for stage in ("post_vit", "pre_vit"):
            ours = adapter.model(
                **adapter.llm_inputs(prepared.batch, kept, adapter.visual_features(prepared, kept, stage))
            )
            assert ours.logits.shape == stock.shape
            torch.testing.assert_close(ours.logits, stock, rtol=1e-5, atol=1e-5, msg=f"{stage} keep-all")


def test_generate_equals_stock_generate_and_counts_tokens(adapter, frames):
    prepared = adapter.prepare(frames, PROMPT, fps=FPS)
    with torch.inference_mode():
        stock = adapter.model.generate(**prepared.batch, max_new_tokens=6, do_sample=False)
    stock_ids = stock[0, prepared.batch["input_ids"].shape[1] :].tolist()
    for stage in ("post_vit", "pre_vit"):
        gen = adapter.generate(frames, None, PROMPT, fps=FPS, max_new_tokens=6, prune_stage=stage)
        assert gen.extra["output_ids"] == stock_ids, stage
        assert gen.text == adapter.processor.tokenizer.decode(stock_ids, skip_special_tokens=True)
        g = prepared.geometry
        assert gen.tokens.visual_before == gen.tokens.visual_after == g.total_tokens
        assert gen.tokens.prompt == prepared.batch["input_ids"].shape[1]
        assert gen.tokens.generated == len(stock_ids)
        assert set(gen.timings) == {"vision", "prefill", "generate"}
        assert all(v >= 0 for v in gen.timings.values()) and gen.peak_memory_mb > 0


@pytest.mark.parametrize("stage", ["post_vit", "pre_vit"])
def test_exactly_the_selected_tokens_reach_the_llm_at_their_positions(adapter, frames, stage):
    prepared = adapter.prepare(frames, PROMPT, fps=FPS)
    batch, g = prepared.batch, prepared.geometry
    selection = random_selection(g, 0.3, seed=1)
    kept = selection.kept_indices
    with torch.inference_mode():
        full = adapter.encode_all(batch)
        full_positions = adapter.rope_index(batch)[:, 0]  # (3, L) of the unpruned prompt
    video_cols = (batch["input_ids"][0] == adapter.video_token_id).nonzero().squeeze(-1)

    seen, handle = capture_llm_inputs(adapter)
    try:
        gen = adapter.generate(frames, selection, PROMPT, fps=FPS, max_new_tokens=2, prune_stage=stage)
    finally:
        handle.remove()

    removed = g.total_tokens - selection.num_kept
    assert gen.tokens.visual_before == g.total_tokens and gen.tokens.visual_after == selection.num_kept
    assert gen.tokens.prompt == batch["input_ids"].shape[1] - removed
    embeds, positions = seen["inputs_embeds"][0], seen["position_ids"][:, 0]
    assert embeds.shape[0] == gen.tokens.prompt

    # Which prompt columns survived, in order: all text, plus the kept video columns.
    keep_cols = torch.ones(batch["input_ids"].shape[1], dtype=torch.bool)
    keep_cols[video_cols] = False
    keep_cols[video_cols[kept]] = True
    pruned_ids = batch["input_ids"][0, keep_cols]
    is_video = pruned_ids == adapter.video_token_id
    assert int(is_video.sum()) == selection.num_kept
    # Text rows: the token embeddings; M-RoPE rows 1-3: the unpruned positions; row 0: arange.
    with torch.inference_mode():
        text_embeds = adapter.model.get_input_embeddings()(pruned_ids[~is_video])
    torch.testing.assert_close(embeds[~is_video], text_embeds)
    assert torch.equal(positions[1:], full_positions[:, keep_cols])
    assert torch.equal(positions[0], torch.arange(gen.tokens.prompt))
    if stage == "post_vit":
        torch.testing.assert_close(embeds[is_video], full.embeds[kept], rtol=0, atol=0)
        if adapter.name == "qwen3_vl":
            deepstack = seen["deepstack_visual_embeds"]
            assert len(deepstack) == len(full.deepstack) == 2
            for got, ref in zip(deepstack, full.deepstack):
                torch.testing.assert_close(got, ref[kept], rtol=0, atol=0)
    else:
        # Pre-ViT: features come from a ViT that saw only the kept patches, so they differ from
        # the full run but must be the pre-ViT features themselves, in kept order.
        with torch.inference_mode():
            pre = adapter.encode_kept(batch, kept)
        assert pre.embeds.shape == (selection.num_kept, full.embeds.shape[1])
        torch.testing.assert_close(embeds[is_video], pre.embeds, rtol=0, atol=0)
        assert not torch.allclose(pre.embeds, full.embeds[kept])


def test_pre_vit_on_whole_groups_equals_stock_vit_on_those_frames(adapter, frames):
    """Per-group attention segments, windows and positions: dropping whole temporal groups
    before the ViT must equal running the stock ViT on a clip made of only those groups."""
    prepared = adapter.prepare(frames, PROMPT, fps=FPS)
    batch, g = prepared.batch, prepared.geometry
    keep = torch.zeros(g.grid_t, g.grid_h, g.grid_w, dtype=torch.bool)
    keep[[0, 2]] = True
    kept = Selection(g, keep).kept_indices
    unit = g.spatial_merge_size**2
    per_group = g.tokens_per_group * unit
    rows = torch.cat([torch.arange(k * per_group, (k + 1) * per_group) for k in (0, 2)])
    grid = batch["video_grid_thw"].clone()
    grid[0, 0] = 2
    with torch.inference_mode():
        pre = adapter.encode_kept(batch, kept)
        ref = adapter.encode_all(
            {"pixel_values_videos": batch["pixel_values_videos"][rows], "video_grid_thw": grid}
        )
    torch.testing.assert_close(pre.embeds, ref.embeds, rtol=1e-5, atol=1e-5)
    for a, b in zip(pre.deepstack, ref.deepstack):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_selection_at_a_smaller_size_resizes_the_frames(adapter, frames):
    native = adapter.token_geometry(*frames.shape[:3])
    cell = native.patch_size * native.spatial_merge_size
    small = TokenGeometry(
        num_frames=native.num_frames,
        height=2 * cell,
        width=3 * cell,
        patch_size=native.patch_size,
        temporal_patch_size=native.temporal_patch_size,
        spatial_merge_size=native.spatial_merge_size,
    )
    gen = adapter.generate(frames, Selection.keep_all(small, "downsample"), PROMPT, fps=FPS, max_new_tokens=1)
    assert gen.tokens.visual_before == native.total_tokens
    assert gen.tokens.visual_after == small.total_tokens == native.grid_t * 6
    assert gen.extra["model_size"] == [2 * cell, 3 * cell]


def test_fps_reaches_the_prompt(adapter, frames):
    """The frames' fps must reach the model: Qwen2.5-VL via temporal positions, Qwen3-VL via timestamps."""
    slow, fast = (adapter.prepare(frames, PROMPT, fps=f).batch for f in (1.0, 4.0))
    if adapter.name == "qwen2_5_vl":
        t_slow = adapter.rope_index(slow)[0, 0]
        t_fast = adapter.rope_index(fast)[0, 0]
        cols = (slow["input_ids"][0] == adapter.video_token_id).nonzero().squeeze(-1)
        # 2 frames per group: 2 s per group at 1 fps vs 0.5 s at 4 fps -> 4x the temporal stride.
        span_slow = t_slow[cols].max() - t_slow[cols].min()
        span_fast = t_fast[cols].max() - t_fast[cols].min()
        assert span_slow == 4 * span_fast > 0
    else:
        text = adapter.processor.tokenizer.decode(slow["input_ids"][0])
        assert "<0.5 seconds>" in text and "<6.5 seconds>" in text  # groups at (0+1)/2 ... (6+7)/2 s
        assert "<0.1 seconds>" in adapter.processor.tokenizer.decode(fast["input_ids"][0])


def test_bad_selection_is_refused(adapter, frames):
    g = adapter.token_geometry(*frames.shape[:3])
    wrong_t = TokenGeometry(g.num_frames + 2, g.height, g.width, g.patch_size, g.temporal_patch_size, 2)
    with pytest.raises(ValueError, match="temporal groups"):
        adapter.generate(frames, Selection.keep_all(wrong_t), PROMPT, fps=FPS, max_new_tokens=1)
    with pytest.raises(ValueError, match="prune_stage"):
        adapter.generate(frames, None, PROMPT, fps=FPS, max_new_tokens=1, prune_stage="mid_vit")
    with pytest.raises(ValueError, match="keeps no visual token"):
        empty = Selection(g, torch.zeros(g.grid_t, g.grid_h, g.grid_w, dtype=torch.bool))
        adapter.generate(frames, empty, PROMPT, fps=FPS, max_new_tokens=1, prune_stage="pre_vit")
    with pytest.raises(ValueError, match="uint8"):
        adapter.generate(frames.astype(np.float32), None, PROMPT, fps=FPS)


def test_loads_from_an_hf_cache_layout_offline(family, model_dir, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snapshot = hf_cache_copy(model_dir, cache, "tiny-org/tiny-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    loaded = ADAPTERS[family].from_pretrained("tiny-org/tiny-model")
    assert loaded.name == family
    assert Path(loaded.model.name_or_path).resolve() == snapshot.resolve()
    with pytest.raises(FileNotFoundError, match="hf download tiny-org/absent"):
        ADAPTERS[family].from_pretrained("tiny-org/absent")
    monkeypatch.delenv("HF_HUB_CACHE")
    explicit = ADAPTERS[family].from_pretrained("tiny-org/tiny-model", cache_dir=cache)
    assert Path(explicit.model.name_or_path).resolve() == snapshot.resolve()


def test_missing_directory_gives_a_clear_message(family, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        ADAPTERS[family].from_pretrained(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ADAPTERS[family].from_pretrained(str(tmp_path / "empty"))


def test_perf_benchmark_prints_ratios_and_a_json_last_line(capsys):
    import json

    from harness.perf.adapters import main

    argv = ["--families", "qwen2_5_vl", "--frames", "8", "--size", "112", "--ratios", "0.5"]
    assert main([*argv, "--pruner", "random", "--repeats", "1", "--stages", "post_vit", "pre_vit"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("selections: random")
    result = json.loads(lines[-1])
    rows = {(r["stage"], r["ratio"]): r for r in result["results"]}
    assert set(rows) == {("post_vit", None), ("post_vit", 0.5), ("pre_vit", None), ("pre_vit", 0.5)}
    assert rows[("post_vit", None)]["visual_tokens"] == 4 * 16  # 8 frames of 112 px: 4 groups of 4x4
    assert rows[("post_vit", 0.5)]["visual_tokens"] == 32 and rows[("post_vit", 0.5)]["tokens_ratio"] == 0.5
    assert all(r["prefill_s"] > 0 and r["vision_s"] > 0 for r in rows.values())

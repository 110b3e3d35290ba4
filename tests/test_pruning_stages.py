"""The later pruning stages on the adapters (tiny random-weight models): what reaches the LLM.

- features stage (DyCoke, VidCom2): the LLM's prefill gets exactly the reduction's kept rows of
  the model's own features, at their unpruned positions;
- llm stage (FastV): the hooked decode equals a hand-run of the same model (stock layers < K on
  every token, then layers >= K on the kept rows only, ranked by the model's own eager attention
  of layer K-1), and a different kept set would give different logits (the check can fail).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.models.layer_pruning import layer_pruning, text_layers
from harness.models.llava_onevision import LlavaOnevisionAdapter
from harness.models.qwen2_5_vl import Qwen25VLAdapter
from harness.models.tiny import build_tiny_model
from harness.pruning import build_pruner
from harness.pruning.dycoke import dycoke_ttm
from harness.pruning.fastv import fastv_kept_positions
from harness.pruning.selection import TokenGeometry
from harness.pruning.stages import LayerPruning, Reduction
from harness.pruning.vidcom2 import vidcom2_kept
from tests.adapter_helpers import LLMInputRecorder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPT = "What is shown?"


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(1)
    video = rng.integers(0, 60, size=(8, 60, 80, 3), dtype=np.uint8)
    for t in range(8):
        video[t, 10:30, 5 + 6 * t : 25 + 6 * t] = 240
    return video


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> LlavaOnevisionAdapter:
    return LlavaOnevisionAdapter.from_pretrained(str(build_tiny_model("llava_onevision", tmp_path_factory.mktemp("ov"))))


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> Qwen25VLAdapter:
    return Qwen25VLAdapter.from_pretrained(str(build_tiny_model("qwen2_5_vl", tmp_path_factory.mktemp("qwen"))))


@pytest.mark.parametrize("name", ["dycoke", "vidcom2"])
def test_feature_stage_sends_the_reductions_rows_at_their_positions(llava, frames, name):
    geometry = llava.token_geometry(*frames.shape[:3])
    params = {"p": None} if name == "dycoke" else {}  # the feature stage alone (the KV stage: below)
    selection = build_pruner(name, **params).select(frames, geometry, fps=2.0)
    with LLMInputRecorder(llava) as rec:
        gen = llava.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=2)
    inputs = llava.preprocess(frames, PROMPT, geometry)
    features = llava.encode_video(inputs["pixel_values_videos"])[:-1]  # without the newline row
    n = geometry.tokens_per_group
    if name == "dycoke":
        expected = dycoke_ttm(features, n, int((1 - 0.7) * n)).keep
    else:
        expected = torch.zeros(features.shape[0], dtype=torch.bool)
        expected[vidcom2_kept(features, n, 0.25)] = True
    assert gen.tokens.visual_after == int(expected.sum()) + 1  # + newline
    assert gen.extra["reduction"]["kept"] == int(expected.sum())
    prefill = rec.calls[0]
    full_ids = inputs["input_ids"][0]
    visual_positions = (full_ids == llava.video_token_id).nonzero().squeeze(-1)
    kept_positions = visual_positions[torch.cat([expected, torch.ones(1, dtype=torch.bool)])]
    got_positions = prefill["position_ids"][0]
    assert set(kept_positions.tolist()) <= set(got_positions.tolist())
    assert len(got_positions) == len(full_ids) - int((~expected).sum())
    rows = torch.isin(got_positions, kept_positions[:-1])
    torch.testing.assert_close(prefill["inputs_embeds"][0, rows], features[expected].to(prefill["inputs_embeds"].dtype))


def test_feature_stage_on_qwen_keeps_the_reductions_count(qwen, frames):
    geometry = qwen.token_geometry(*frames.shape[:3])
    for name, params in (("dycoke", {"l": 1}), ("vidcom2", {})):
        gen = qwen.generate(frames, build_pruner(name, **params).select(frames, geometry, fps=2.0), PROMPT, fps=2.0,
                            max_new_tokens=2)
        assert gen.tokens.visual_after == gen.extra["reduction"]["kept"] < geometry.total_tokens


def _prefill(adapter: LlavaOnevisionAdapter, frames: np.ndarray) -> dict:
    geometry = adapter.token_geometry(*frames.shape[:3])
    inputs = adapter.preprocess(frames, PROMPT, geometry)
    features = adapter.encode_video(inputs["pixel_values_videos"])
    from harness.pruning.selection import Selection

    return adapter.prune(inputs, features, Selection.keep_all(geometry)).model_kwargs


def _hand_run(adapter, kwargs: dict, keep: torch.Tensor, layer: int) -> torch.Tensor:
    """Last-token logits: stock layers < K on every token, layers >= K on ``keep`` rows only."""
    model = adapter.model
    lm = model.model.language_model
    with torch.no_grad():
        full = model(**kwargs, output_hidden_states=True)
        hidden = full.hidden_states[layer][:, keep]
        positions = kwargs["position_ids"][:, keep]
        pe = lm.rotary_emb(hidden, positions)
        for block in text_layers(model)[layer:]:
            hidden = block(hidden, attention_mask=None, position_embeddings=pe, position_ids=positions)
        return model.lm_head(lm.norm(hidden))[0, -1]


def _eager_last_row(adapter, kwargs: dict, layer: int) -> torch.Tensor:
    cfg = adapter.model.config.get_text_config()
    impl = cfg._attn_implementation
    cfg._attn_implementation_internal = "eager"
    try:
        with torch.no_grad():
            out = adapter.model(**kwargs, output_attentions=True)
    finally:
        cfg._attn_implementation_internal = impl
    return out.attentions[layer - 1][0, :, -1]


def test_fastv_equals_a_hand_run_of_the_model(llava, frames):
    kwargs = _prefill(llava, frames)
    ids = kwargs["input_ids"]
    visual = ids[0] == llava.video_token_id
    plan = LayerPruning(layer=1, drop_ratio=0.75)
    keep = fastv_kept_positions(_eager_last_row(llava, kwargs, plan.layer), visual, plan.num_keep(int(visual.sum())))
    with torch.no_grad(), layer_pruning(llava.model, plan, ids, llava.video_token_id) as stats:
        hooked = llava.model(**kwargs, use_cache=True).logits[0, -1]
    assert stats.kept_positions == keep.tolist()
    assert stats.visual_after == plan.num_keep(int(visual.sum())) < stats.visual_before
    torch.testing.assert_close(hooked, _hand_run(llava, kwargs, keep, plan.layer), rtol=1e-4, atol=1e-5)
    # the check can fail: the least-attended visual tokens instead give other logits
    others = torch.tensor([p for p in range(ids.shape[1]) if p not in set(keep.tolist())])
    wrong = torch.cat([others[visual[others]][: len(keep) - int((~visual).sum())], (~visual).nonzero().squeeze(-1)])
    assert not torch.allclose(hooked, _hand_run(llava, kwargs, wrong.sort().values, plan.layer), atol=1e-4)


def test_fastv_decode_keeps_going_and_is_stock_when_nothing_is_dropped(llava, qwen, frames):
    for adapter in (llava, qwen):
        geometry = adapter.token_geometry(*frames.shape[:3])
        stock = adapter.generate(frames, None, PROMPT, fps=2.0, max_new_tokens=5)
        none_dropped = build_pruner("fastv", k=1, r=0.0).select(frames, geometry, fps=2.0)
        same = adapter.generate(frames, none_dropped, PROMPT, fps=2.0, max_new_tokens=5)
        assert same.extra["output_ids"] == stock.extra["output_ids"]
        budget = max(1, geometry.total_tokens // 4)
        pruned = adapter.generate(frames, build_pruner("fastv", k=1).select(frames, geometry, budget=budget, fps=2.0),
                                  PROMPT, fps=2.0, max_new_tokens=5)
        newline = stock.tokens.visual_after - geometry.total_tokens
        assert pruned.tokens.visual_after == budget + newline
        facts = pruned.extra["llm_pruning"]
        assert facts["avg_visual_tokens"] == pytest.approx((1 * facts["visual_before"] + 1 * facts["visual_after"]) / 2)
        assert len(pruned.extra["output_ids"]) >= 1


def test_reduction_rules_and_validation():
    feats = torch.arange(12, dtype=torch.float32).view(4, 3)
    keep = torch.tensor([True, False, True, False])
    into = torch.tensor([0, 0, 2, 0])
    assert torch.equal(Reduction(keep, into, "keep_target").apply(feats), feats[[0, 2]])
    torch.testing.assert_close(Reduction(keep, into, "mean").apply(feats)[0], feats[[0, 1, 3]].mean(0))
    torch.testing.assert_close(Reduction(keep, into, "target_plus_mean").apply(feats)[0], feats[0] + feats[[1, 3]].mean(0))
    with pytest.raises(ValueError, match="only merge into a kept"):
        Reduction(keep, torch.tensor([0, 3, 2, 0]), "mean")
    with pytest.raises(ValueError, match="merge into itself"):
        Reduction(keep, torch.tensor([2, 0, 2, 0]), "mean")


def test_visionzip_reads_the_towers_attention_and_merges_on_the_pooled_grid(llava, frames):
    geometry = llava.token_geometry(*frames.shape[:3])
    inputs = llava.preprocess(frames, PROMPT, geometry)
    pixels = inputs["pixel_values_videos"]
    features, signals = llava.encode_video_signals(pixels)
    torch.testing.assert_close(features, llava.encode_video(pixels))  # capturing changes nothing
    # the same signals from a stock eager run of the tower (attention weights, keys of the last layer)
    tower = llava.model.model.vision_tower
    cfg = tower.config
    impl = cfg._attn_implementation
    cfg._attn_implementation_internal = "eager"
    try:
        with torch.no_grad():
            out = tower(pixels.flatten(0, 1), output_hidden_states=True, output_attentions=True)
    finally:
        cfg._attn_implementation_internal = impl
    last = tower.encoder.layers[-1]
    heads = last.self_attn.num_heads
    keys = last.self_attn.k_proj(last.layer_norm1(out.hidden_states[-2]))
    keys = keys.view(*keys.shape[:2], heads, -1).mean(2)
    received = out.attentions[-1].mean(dim=(1, 2))
    side = int(received.shape[1] ** 0.5)
    grid = torch.cat([received[..., None], keys], -1).view(-1, side, side, keys.shape[-1] + 1).permute(0, 3, 1, 2)
    pooled = torch.nn.functional.interpolate(grid, size=[geometry.grid_h, geometry.grid_w], mode="bilinear")
    pooled = pooled.permute(0, 2, 3, 1).reshape(-1, keys.shape[-1] + 1)
    torch.testing.assert_close(signals["received"], pooled[:, 0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(signals["keys"], pooled[:, 1:], rtol=1e-4, atol=1e-5)

    selection = build_pruner("visionzip").select(frames, geometry, fps=2.0)
    expected = selection.reducer.reduce(features[:-1], geometry, signals)
    with LLMInputRecorder(llava) as rec:
        gen = llava.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=2)
    assert gen.tokens.visual_after == expected.num_kept + 1 == gen.extra["reduction"]["kept"] + 1
    assert expected.num_merged > 0 and gen.extra["reduction"]["rule"] == "target_plus_mean"
    embeds = rec.calls[0]["inputs_embeds"][0]
    full_ids = inputs["input_ids"][0]
    visual_positions = (full_ids == llava.video_token_id).nonzero().squeeze(-1)[:-1]
    got = torch.isin(rec.calls[0]["position_ids"][0], visual_positions[expected.keep])
    torch.testing.assert_close(embeds[got], expected.apply(features[:-1]).to(embeds.dtype))


def test_visionzip_is_refused_where_the_tower_signals_are_missing(qwen, frames):
    geometry = qwen.token_geometry(*frames.shape[:3])
    selection = build_pruner("visionzip").select(frames, geometry, fps=2.0)
    with pytest.raises(ValueError, match="visionzip needs tower_attention .* qwen2_5_vl"):
        qwen.generate(frames, selection, PROMPT, fps=2.0, max_new_tokens=2)


@pytest.mark.parametrize(("family", "name", "refused"), [
    ("qwen2_5_vl", "fastv", True), ("qwen2_5_vl", "dycoke", True),
    ("llava_onevision", "fastv", True), ("llava_onevision", "vidcom2", False),
])
def test_vllm_backend_refuses_what_it_cannot_run(family, name, refused, frames):
    """FastV needs the transformers decoding loop; the keep-mask route never sees the features."""
    from harness.backends.vllm.engine import BatchItem, VLLMBackend

    backend = VLLMBackend(family, llm=None, adapter=None)
    geometry = TokenGeometry(num_frames=8, height=112, width=112, patch_size=14, spatial_merge_size=2)
    selection = build_pruner(name).select(frames[:, :112, :112], geometry, fps=2.0)
    item = BatchItem(frames, selection, PROMPT, 2.0)
    if refused:
        with pytest.raises(ValueError, match=f"cannot run the '{name}' pruner"):
            backend.prepare(item)
    else:  # passes the check and fails later only for want of a real adapter here
        with pytest.raises(AttributeError):
            backend.prepare(item)


def test_vllm_embeds_route_runs_visionzip_with_the_tower_signals(llava, frames):
    """The vLLM embeds route (LLaVA-OV) prunes through the adapter's ``prune``: a reducer that needs
    the tower's attention (VisionZip) must get it there too, and the keep it made must come back
    (``Generation.kept_grid``) so the runner scores evidence on it, as on the transformers backend."""
    from types import SimpleNamespace

    from harness.backends.vllm.engine import BatchItem, VLLMBackend

    backend = VLLMBackend("llava_onevision", llm=None, adapter=llava)
    geometry = llava.token_geometry(*frames.shape[:3])
    selection = build_pruner("visionzip").select(frames, geometry, fps=2.0)
    prepared = backend.prepare(BatchItem(frames, selection, PROMPT, 2.0))
    inputs = llava.preprocess(frames, PROMPT, geometry)
    features, signals = llava.encode_video_signals(inputs["pixel_values_videos"])
    expected = selection.reducer.reduce(features[:-1], geometry, signals)
    assert prepared.visual_after == expected.num_kept + 1  # + newline
    out = SimpleNamespace(outputs=[SimpleNamespace(token_ids=[1], logprobs=None, text="A")],
                          prompt_token_ids=None, metrics=None)
    gen = backend._generation(prepared, out, 0.0, 0.0)
    assert torch.equal(gen.kept_grid, expected.keep)
    assert gen.extra["reduction"]["kept"] == expected.num_kept


def test_fastv_on_mrope_equals_a_hand_run_of_qwen(qwen, frames):
    """M-RoPE: the kept rows keep their (t, h, w) positions; the text row goes along."""
    prepared = qwen.prepare(frames, PROMPT, fps=2.0)
    kept_all = qwen.kept_indices(prepared, None)
    kwargs = qwen.llm_inputs(prepared.batch, kept_all, qwen.visual_features(prepared, kept_all, "post_vit"))
    ids = kwargs["input_ids"]
    visual = ids[0] == qwen.video_token_id
    plan = LayerPruning(layer=1, drop_ratio=0.5)
    keep = fastv_kept_positions(_eager_last_row(qwen, kwargs, plan.layer), visual, plan.num_keep(int(visual.sum())))
    with torch.no_grad(), layer_pruning(qwen.model, plan, ids, qwen.video_token_id) as stats:
        hooked = qwen.model(**kwargs, use_cache=True).logits[0, -1]
    assert stats.kept_positions == keep.tolist()
    lm = qwen.model.model.language_model
    with torch.no_grad():
        full = qwen.model(**kwargs, output_hidden_states=True)
        hidden = full.hidden_states[plan.layer][:, keep]
        positions = kwargs["position_ids"][..., keep]  # (4, 1, L'): text row + (t, h, w)
        pe = lm.rotary_emb(hidden, positions[1:])
        for block in text_layers(qwen.model)[plan.layer:]:
            hidden = block(hidden, attention_mask=None, position_embeddings=pe, position_ids=positions[0])
        by_hand = qwen.model.lm_head(lm.norm(hidden))[0, -1]
    torch.testing.assert_close(hooked, by_hand, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(hooked, full.logits[0, -1], atol=1e-4)  # something was dropped


def test_dycoke_kv_stage_masks_visual_entries_while_decoding(llava, frames):
    from harness.models.layer_pruning import decode_pruning
    from harness.pruning.stages import DecodePruning

    kwargs = _prefill(llava, frames)
    ids = kwargs["input_ids"]
    model = llava.model
    with torch.no_grad():
        pre = model(**kwargs, use_cache=True)
        step = {"input_ids": pre.logits[:, -1:].argmax(-1), "position_ids": kwargs["position_ids"][:, -1:] + 1,
                "attention_mask": torch.ones(1, ids.shape[1] + 1, dtype=torch.long)}

        def decode(plan):
            import copy

            cache = copy.deepcopy(pre.cache if hasattr(pre, "cache") else pre.past_key_values)
            from harness.models.decoding import cache_kwargs

            if plan is None:
                return model(**step, **cache_kwargs(model, cache), use_cache=True).logits[0, -1], None
            with decode_pruning(model, plan, ids, llava.video_token_id) as stats:
                out = model(**step, **cache_kwargs(model, cache), use_cache=True).logits[0, -1]
            return out, stats.to_dict()

        stock, _ = decode(None)
        same, facts = decode(DecodePruning(layer=1, drop_ratio=0.0))
        pruned, pruned_facts = decode(DecodePruning(layer=1, drop_ratio=0.9))
    torch.testing.assert_close(same, stock)  # keeping every visual entry is the stock step
    assert facts["steps"] == 1 and facts["pruned_steps"] == 0
    assert pruned_facts["pruned_steps"] == 1 and pruned_facts["avg_visual_read"] == int(facts["visual_before"] * 0.1)
    assert not torch.allclose(pruned, stock, atol=1e-5)


def test_dycoke_runs_both_stages_on_the_adapters(llava, qwen, frames):
    for adapter in (llava, qwen):
        geometry = adapter.token_geometry(*frames.shape[:3])
        gen = adapter.generate(frames, build_pruner("dycoke", l=1).select(frames, geometry, fps=2.0), PROMPT,
                               fps=2.0, max_new_tokens=4)
        assert gen.extra["reduction"]["kept"] < geometry.total_tokens
        facts = gen.extra["kv_pruning"]
        assert facts["steps"] == len(gen.extra["output_ids"]) - 1  # every step after the prefill's token
        assert facts["pruned_steps"] >= 1
        off = adapter.generate(frames, build_pruner("dycoke", p=None).select(frames, geometry, fps=2.0), PROMPT,
                               fps=2.0, max_new_tokens=4)
        assert "kv_pruning" not in off.extra


def test_nvila_refuses_methods_acting_after_the_frames():
    """NVILA runs its own gazing and takes keep-all selections only; a feature/LLM-stage plan
    (keep-all too) must be refused, not silently ignored."""
    from harness.models.nvila_hd_video import NvilaHDVideoAdapter

    adapter = object.__new__(NvilaHDVideoAdapter)  # the check runs before anything is loaded
    adapter.name = "nvila_hd_video"
    geometry = TokenGeometry(num_frames=8, height=112, width=112, patch_size=14, spatial_merge_size=2)
    frames = np.zeros((8, 112, 112, 3), np.uint8)
    for name in ("fastv", "vidcom2"):
        selection = build_pruner(name).select(frames, geometry, fps=2.0)
        with pytest.raises(ValueError, match=f"run it with pruner 'none', got a '{name}' selection"):
            adapter.generate(frames, selection, PROMPT, fps=2.0)

"""The vLLM request-building logic, tested WITHOUT vLLM against the transformers adapters.

What must hold for the vLLM backend to give the transformers backend's answer:
- the M-RoPE positions our vLLM subclasses give the pruned prompt equal the stock
  ``get_rope_index`` positions of the FULL prompt with the unkept columns deleted (what the
  adapters feed the LLM), for Qwen2.5-VL (non-integer temporal step) and Qwen3-VL (per frame,
  including a frame with every token pruned);
- the ``prompt_embeds`` of the 1D route, at the positions its placeholder ids carry, give the
  logits of the adapter's own model inputs (unpruned positions, gaps included);
- the keep mask travels intact (kwargs -> mask), and bad masks are refused with a clear message.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.backends.vllm.engine import ROUTES, BatchItem, VLLMBackend, _meta_adapter
from harness.backends.vllm.requests import (
    KEEP_KWARG,
    MediaSpan,
    embeds_request,
    grid_positions,
    keep_kwargs,
    keep_mask_from_kwarg,
    mrope_overrides,
    mrope_request,
    pruned_mrope_positions,
    qwen2_5_vl_span,
    qwen3_vl_frame_spans,
    stitch_prompt_embeds,
    video_metadata,
)
from harness.backends.vllm.tiny import build_vllm_tiny_model
from harness.models.registry import get_adapter_class
from harness.pruning.selection import Selection, TokenGeometry

FPS = 3.0  # second_per_grid 2/3 s -> temporal step 4/3: exercises the float-then-truncate rule


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (8, 112, 112, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vllm_tiny")
    return {f: build_vllm_tiny_model(f, root / f) for f in ROUTES}


@pytest.fixture(scope="module")
def adapters(model_dirs) -> dict:
    return {f: get_adapter_class(f).from_pretrained(str(d), dtype="float32") for f, d in model_dirs.items()}


def random_keep(geometry: TokenGeometry, seed: int, ratio: float = 0.4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(geometry.grid_t, geometry.grid_h, geometry.grid_w, generator=g) < ratio
    keep.view(-1)[0] = True
    return keep


# -- keep mask transport -----------------------------------------------------------------------


def test_keep_kwargs_carry_kept_indices_as_plain_ints():
    g = TokenGeometry(4, 56, 56, 14, 2, 2)
    keep = torch.zeros(2, 2, 2, dtype=torch.bool)
    keep[0, 1, 0] = keep[1, 1, 1] = True
    assert keep_kwargs([None]) == {}
    kwargs = keep_kwargs([Selection(g, keep)])
    assert kwargs == {KEEP_KWARG: [[2, 7]]}
    assert json.loads(json.dumps(kwargs)) == kwargs  # hashable by vLLM's kwargs hasher: plain data
    mask = keep_mask_from_kwarg(kwargs[KEEP_KWARG], [8])
    assert torch.equal(mask, keep.flatten())
    two = keep_mask_from_kwarg([None, [0]], [3, 2])
    assert two.tolist() == [True, True, True, True, False]


@pytest.mark.parametrize(
    ("value", "sizes", "message"),
    [
        ([[0]], [4, 4], "1 keep lists for 2 videos"),
        ([[4]], [4], "out of range"),
        ([[-1]], [4], "out of range"),
        ([[1, 1]], [4], "twice"),
        ([[]], [4], "keeps no token"),
    ],
)
def test_bad_keep_kwargs_are_refused(value, sizes, message):
    with pytest.raises(ValueError, match=message):
        keep_mask_from_kwarg(value, sizes)


def test_mrope_request_layout(frames):
    g = TokenGeometry(8, 112, 112, 14, 2, 2)
    keep = random_keep(g, 0)
    req = mrope_request("PROMPT", frames, FPS, Selection(g, keep))
    video, meta = req["multi_modal_data"]["video"]
    assert req["prompt"] == "PROMPT" and video is frames
    assert (
        meta["fps"] == FPS and meta["frames_indices"] == list(range(8)) and meta["do_sample_frames"] is False
    )
    assert req["mm_processor_kwargs"] == {KEEP_KWARG: [Selection(g, keep).kept_indices.tolist()]}
    assert "mm_processor_kwargs" not in mrope_request("P", frames, FPS, None)
    assert mrope_request("P", frames, FPS, None, resized=True)["mm_processor_kwargs"] == {"do_resize": False}
    with pytest.raises(ValueError, match="fps"):
        video_metadata(8, 0.0, 112, 112)


# -- positions ----------------------------------------------------------------------------------


def test_pruned_positions_equal_full_positions_minus_dropped_columns_by_hand():
    # text(3) + video grid (2, 2, 2) with t step 1.5 + text(2); keep 3 of 8
    keep = torch.tensor([1, 0, 0, 1, 0, 0, 0, 1], dtype=torch.bool)
    full_video = grid_positions((2, 2, 2), 1.5) + 3
    assert full_video[0].tolist() == [3, 3, 3, 3, 4, 4, 4, 4]  # int(1 * 1.5) = 1
    for rule in ("reference", "transformers"):  # here the largest position is also start + max(h, w) - 1
        positions, delta = pruned_mrope_positions(3 + 3 + 2, [MediaSpan(3, (2, 2, 2), 1.5, keep)], rule)
        expected = np.concatenate(
            [np.tile(np.arange(3), (3, 1)), full_video[:, keep.numpy()], np.tile(np.arange(2), (3, 1)) + 5],
            axis=1,
        )
        assert positions.tolist() == expected.tolist()
        assert delta == int(expected.max()) + 1 - 8


def test_text_positions_rules_differ_when_time_outruns_space():
    # text(3) + video grid (4, 2, 2), t step 1.5 (t offsets 0, 1, 3, 4) + text(2); keep only t = 0
    keep = torch.zeros(16, dtype=torch.bool)
    keep[:4] = True
    spans = [MediaSpan(3, (4, 2, 2), 1.5, keep)]
    ref, ref_delta = pruned_mrope_positions(3 + 4 + 2, spans)  # default: reference
    stock, _ = pruned_mrope_positions(3 + 4 + 2, spans, "transformers")
    # reference: after the UNPRUNED grid's largest position (3 + 4), though the kept tokens end at 3 + 1
    assert ref[:, -2:].tolist() == [[8, 9]] * 3 and ref_delta == 10 - 9
    # transformers >= 5.3: start + max(h, w) = 3 + 2
    assert stock[:, -2:].tolist() == [[5, 6]] * 3
    assert torch.equal(ref[:, :-2], stock[:, :-2])
    with pytest.raises(ValueError, match="text_positions 'stock'; valid choices: reference, transformers"):
        pruned_mrope_positions(9, spans, "stock")


@pytest.mark.parametrize("rule", ["reference", "transformers"])
def test_qwen2_5_vl_positions_equal_the_adapters(adapters, frames, rule):
    # 8 frames at 3 fps: temporal offsets up to int(3 * 4/3) = 4 > the 4x4 grid's 3, so the rules differ
    adapter = copy.copy(adapters["qwen2_5_vl"])
    adapter.pipeline = dataclasses.replace(adapter.pipeline, text_positions=rule)
    g = adapter.token_geometry(*frames.shape[:3])
    selection = Selection(g, random_keep(g, 1))
    prepared = adapter.prepare(frames, "Describe.", fps=FPS, selection=selection)
    kept = adapter.kept_indices(prepared, selection)
    features = adapter.visual_features(prepared, kept, "post_vit")
    reference = adapter.llm_inputs(prepared.batch, kept, features)
    ids = reference["input_ids"][0].tolist()
    batch = prepared.batch
    span = qwen2_5_vl_span(
        ids.index(adapter.video_token_id),
        batch["video_grid_thw"][0].tolist(),
        adapter.merge_size,
        second_per_grid=float(batch["second_per_grid_ts"][0]),
        tokens_per_second=adapter.model.config.vision_config.tokens_per_second,
        keep=selection.keep.flatten(),
    )
    assert span.t_factor != int(span.t_factor)
    positions, delta = pruned_mrope_positions(len(ids), [span], rule)
    other, _ = pruned_mrope_positions(len(ids), [span], "transformers" if rule == "reference" else "reference")
    assert not torch.equal(positions, other)  # the rule matters on this clip
    assert torch.equal(positions, reference["position_ids"][1:, 0].cpu())
    assert delta == int(reference["position_ids"][1:, 0, -1].max()) + 1 - len(ids)


def test_qwen3_vl_positions_equal_the_adapters_with_an_emptied_frame(adapters, frames):
    adapter = adapters["qwen3_vl"]
    g = adapter.token_geometry(*frames.shape[:3])
    keep = random_keep(g, 2)
    keep[1] = False  # a whole temporal group pruned: its timestamp and start/end tokens stay
    selection = Selection(g, keep)
    prepared = adapter.prepare(frames, "Describe.", fps=FPS, selection=selection)
    kept = adapter.kept_indices(prepared, selection)
    features = adapter.visual_features(prepared, kept, "post_vit")
    reference = adapter.llm_inputs(prepared.batch, kept, features)
    ids = reference["input_ids"][0].tolist()
    config = adapter.model.config
    # The template's own <|vision_start|> wraps the expansion; vLLM's placeholder (mm_position)
    # starts right after it, at the first frame's timestamp text.
    placeholder_start = ids.index(config.vision_start_token_id) + 1
    spans = qwen3_vl_frame_spans(
        ids,
        placeholder_start,
        prepared.batch["video_grid_thw"][0].tolist(),
        adapter.merge_size,
        config.vision_start_token_id,
        config.vision_end_token_id,
        keep.flatten(),
    )
    assert len(spans) == g.grid_t and spans[1].num_kept == 0
    positions, _ = pruned_mrope_positions(len(ids), spans)
    assert torch.equal(positions, reference["position_ids"][1:, 0].cpu())


# -- prompt_embeds route (1D RoPE) -------------------------------------------------------------


@pytest.mark.parametrize("family", ["llava_onevision", "internvl3"])
def test_embeds_request_reproduces_the_adapters_model_input(adapters, frames, family):
    """prompt_embeds at the positions carried in prompt_token_ids == the adapter's own prefill."""
    adapter = adapters[family]
    backend = VLLMBackend(family, llm=None, adapter=adapter)
    g = adapter.model_geometry(frames, None)
    selection = Selection(g, random_keep(g, 3))
    request = backend.prepare(BatchItem(frames, selection, "Describe.", FPS)).request
    embeds, positions = request["prompt_embeds"], request["prompt_token_ids"]
    assert request["prompt_is_token_ids"] == [False] * len(positions)  # every row is an embedding

    geometry = adapter.model_geometry(frames, selection)
    inputs = adapter.preprocess(frames, "Describe.", geometry)
    pixels = inputs.get("pixel_values_videos", inputs.get("pixel_values"))
    model_kwargs = adapter.prune(inputs, adapter.encode_video(pixels), selection).model_kwargs
    assert positions == model_kwargs["position_ids"][0].tolist()
    assert positions[-1] + 1 > len(positions)  # gaps: the pruned tokens' positions are skipped
    length = len(positions)
    with torch.inference_mode():
        expected = adapter.model(**model_kwargs).logits
        got = adapter.model(
            inputs_embeds=embeds[None],
            attention_mask=torch.ones(1, length, dtype=torch.long),
            position_ids=torch.tensor([positions]),
        ).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_embeds_request_and_rope_overrides_validate():
    embeds = torch.zeros(3, 4)
    assert embeds_request(embeds, [0, 2, 5], vocab_size=10)["prompt_token_ids"] == [0, 2, 5]
    with pytest.raises(ValueError, match="strictly increasing"):
        embeds_request(embeds, [0, 2, 2], vocab_size=10)
    with pytest.raises(ValueError, match="vocabulary size"):
        embeds_request(embeds, [0, 2, 10], vocab_size=10)
    with pytest.raises(ValueError, match="3 positions"):
        embeds_request(torch.zeros(2, 4), [0, 1, 2], vocab_size=10)
    rope = mrope_overrides({"rope_type": "default", "rope_theta": 1e6}, head_dim=128)
    assert sum(rope["mrope_section"]) == 64 and rope["rope_theta"] == 1e6 and not rope["mrope_interleaved"]
    with pytest.raises(ValueError, match="already"):
        mrope_overrides(rope, head_dim=128)


def test_stitch_refuses_mismatched_counts():
    ids = torch.tensor([1, 9, 9, 2])
    with pytest.raises(ValueError, match="2 placeholders"):
        stitch_prompt_embeds(ids, 9, torch.zeros(4, 8), torch.zeros(3, 8))
    out = stitch_prompt_embeds(ids, 9, torch.zeros(4, 8), torch.ones(2, 8))
    assert out[1:3].eq(1).all() and out[[0, 3]].eq(0).all()


# -- M-RoPE route requests from the backend (no vLLM engine needed) ----------------------------


def test_mrope_backend_requests_match_the_adapter(model_dirs, adapters, frames):
    family = "qwen2_5_vl"
    meta = _meta_adapter(family, str(model_dirs[family]))
    assert next(meta.model.parameters()).device.type == "meta"  # no weights next to vLLM
    backend = VLLMBackend(family, llm=None, adapter=meta)
    adapter = adapters[family]
    g = adapter.token_geometry(*frames.shape[:3])
    assert backend.token_geometry(*frames.shape[:3]) == g
    selection = Selection(g, random_keep(g, 4))
    prepared = backend.prepare(BatchItem(frames, selection, "Describe.", FPS))
    assert prepared.request["prompt"] == adapter.chat_text("Describe.")
    assert prepared.request["mm_processor_kwargs"][KEEP_KWARG] == [selection.kept_indices.tolist()]
    assert (prepared.visual_before, prepared.visual_after) == (g.total_tokens, selection.num_kept)
    # downsample: a keep-all selection at a smaller size -> resized frames, processor resize off
    small = TokenGeometry(8, 56, 84, 14, 2, 2)
    prepared = backend.prepare(BatchItem(frames, Selection.keep_all(small), "Describe.", FPS))
    video, _ = prepared.request["multi_modal_data"]["video"]
    assert video.shape == (8, 56, 84, 3) and prepared.request["mm_processor_kwargs"] == {"do_resize": False}
    with pytest.raises(ValueError, match="temporal groups"):
        backend.prepare(BatchItem(frames[:4], selection, "Describe.", FPS))
    with pytest.raises(NotImplementedError, match="post_vit"):
        backend.generate(frames, selection, "Describe.", fps=FPS, prune_stage="pre_vit")


def test_tiny_models_for_vllm_keep_the_builders_weights(model_dirs):
    for family, path in model_dirs.items():
        text = json.loads((path / "config.json").read_text())["text_config"]
        head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
        assert head_dim == 32, family
        rope = text.get("rope_parameters") or {}
        if "mrope_section" in rope:
            assert sum(rope["mrope_section"]) == head_dim // 2


def test_torchvision_hook_installs_into_a_site_dir(tmp_path):
    from harness.backends.vllm.cpu_torchvision import HOOK_MODULE, PTH_NAME, install

    pth = install(tmp_path)
    assert pth == tmp_path / PTH_NAME and pth.read_text() == f"import {HOOK_MODULE}\n"
    # The hook module must import with the standard library only and register one finder.
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); n = len(sys.meta_path); "
        f"import {HOOK_MODULE}; print(len(sys.meta_path) - n)"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "1"
    )

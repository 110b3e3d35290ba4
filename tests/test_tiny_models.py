"""Tiny-model builders: complete HF-layout dirs that the stock Auto* classes load offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from harness.models.tiny import BUILDERS, available_families, build_tiny_model
from harness.models.tiny.tokenizer import train_tokenizer

QWEN = ["qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Every family whose builder exists in this checkout, built once."""
    root = tmp_path_factory.mktemp("tiny")
    return {family: build_tiny_model(family, root / family, seed=0) for family in available_families()}


def test_dispatch_lists_every_family_and_refuses_unknown_ones(tmp_path):
    assert {"qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl3"} <= set(BUILDERS)
    assert set(QWEN) <= set(available_families())
    with pytest.raises(KeyError, match="valid choices"):
        build_tiny_model("no_such_family", tmp_path)


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_built_dir_loads_offline_with_stock_auto_classes(family, built, monkeypatch):
    if family not in built:
        pytest.skip(f"tiny builder for {family} not in this checkout yet")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = built[family]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (path / name).is_file(), f"{family}: {name} missing"
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    assert processor.chat_template, f"{family}: the processor needs a chat template"
    # Every weight the model has was written (none left to random init on load).
    saved = load_file(path / "model.safetensors")
    assert sum(t.numel() for t in saved.values()) == sum(p.numel() for p in model.parameters())
    assert model.config.get_text_config().vocab_size >= len(processor.tokenizer)


@pytest.mark.parametrize("family", QWEN)
def test_qwen_processor_expands_the_video_into_single_id_pads(family, built):
    processor = AutoProcessor.from_pretrained(built[family], local_files_only=True)
    config = json.loads((built[family] / "config.json").read_text())
    tok = processor.tokenizer
    for special in ("<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1, special
    assert tok.convert_tokens_to_ids("<|video_pad|>") == config["video_token_id"]
    assert processor.video_token_id == config["video_token_id"]

    from transformers.video_utils import VideoMetadata

    frames = np.zeros((8, 112, 112, 3), dtype=np.uint8)
    meta = VideoMetadata(total_num_frames=8, fps=2.0, frames_indices=list(range(8)))
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = processor(text=[text], videos=[frames], video_metadata=[meta], return_tensors="pt")
    t, h, w = batch["video_grid_thw"][0].tolist()
    n_pads = int((batch["input_ids"] == config["video_token_id"]).sum())
    assert n_pads == t * h * w // 4 > 0
    assert t == 4  # 8 frames / temporal patch 2: no frame resampling


def test_seed_fixes_the_weights(tmp_path):
    a = load_file(build_tiny_model("qwen2_5_vl", tmp_path / "a", seed=3) / "model.safetensors")
    b = load_file(build_tiny_model("qwen2_5_vl", tmp_path / "b", seed=3) / "model.safetensors")
    c = load_file(build_tiny_model("qwen2_5_vl", tmp_path / "c", seed=4) / "model.safetensors")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_tokenizer_trainer_roundtrips_and_keeps_special_tokens(tmp_path):
    specials = ["<|endoftext|>", "<|im_end|>", "<IMG_CONTEXT>", "<img>"]
    train_tokenizer(
        tmp_path,
        special_tokens=specials,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"context_image_token": "<IMG_CONTEXT>", "start_image_token": "<img>"},
    )
    tok = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert tok.context_image_token == "<IMG_CONTEXT>" and tok.context_image_token_id == specials.index(
        "<IMG_CONTEXT>"
    )
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == 0
    text = "Unseen wörds & ünïcode ✓ 12345 <img><IMG_CONTEXT><IMG_CONTEXT> end."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids.count(specials.index("<IMG_CONTEXT>")) == 2
    assert tok.decode(ids) == text  # byte-level BPE: lossless, no unknown token
    assert "<IMG_CONTEXT>" not in tok.decode(ids, skip_special_tokens=True)
    with pytest.raises(ValueError, match="not listed in special_tokens"):
        train_tokenizer(tmp_path / "bad", special_tokens=["<a>"], eos_token="<eos>")


def test_command_line_builds_a_loadable_dir(tmp_path, capsys):
    from harness.models.tiny.__main__ import main

    assert main(["qwen3_vl", str(tmp_path / "m"), "--seed", "1"]) == 0
    assert "random weights" in capsys.readouterr().out
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "qwen3_vl"


def test_favour_letters_makes_the_random_model_answer_with_an_option_letter(tmp_path):
    """The demo/CI tiny model must emit scoreable letters, and which letter must depend on the input."""
    import numpy as np

    from harness.models.qwen2_5_vl import Qwen25VLAdapter

    out = build_tiny_model("qwen2_5_vl", tmp_path / "letters", seed=0, answer_letters=True)
    adapter = Qwen25VLAdapter.from_pretrained(str(out))
    rng = np.random.default_rng(0)
    answers = set()
    for i in range(6):
        frames = rng.integers(0, 255, size=(4, 112, 112, 3), dtype=np.uint8)
        text = adapter.generate(frames, None, f"Question {i}: which option?", fps=2.0, max_new_tokens=1).text
        assert text.strip() in {"A", "B", "C", "D"}
        answers.add(text.strip())
    assert len(answers) > 1

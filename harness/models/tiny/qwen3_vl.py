"""Tiny random-weight Qwen3-VL (``Qwen3VLForConditionalGeneration``) in HF layout.

Keeps Qwen3-VL's structural features at toy size: 2 LLM layers (hidden 64, head_dim 16,
interleaved M-RoPE sections [4, 2, 2] summing to head_dim / 2), a 2-block ViT (hidden 32,
patch 16, temporal patch 2, 2x2 merge) with learned position embeddings interpolated from an
8x8 grid (``num_position_embeddings=64``) and DeepStack features taken after both ViT blocks
(``deepstack_visual_indexes=[0, 1]``) and injected into both LLM layers. The processor writes
``<t seconds>`` before each temporal group, so ``video_metadata`` (fps) matters.

The video processor's ``do_sample_frames`` is False: the harness samples frames itself (the
stock default would resample to 2 fps and silently change the token count).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    Qwen2VLImageProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

from harness.models.tiny.qwen2_5_vl import CHAT_TEMPLATE, SPECIAL_TOKENS, _round_up
from harness.models.tiny.tokenizer import train_tokenizer

# Qwen3-VL's smart_resize bounds the pixels of the WHOLE clip (t * h * w), not one frame.
MIN_PIXELS = 64 * 64 * 2
MAX_PIXELS = 128 * 128 * 64


def build(out_dir: Path, seed: int = 0) -> Path:
    """Write config, weights, tokenizer and processor of a tiny Qwen3-VL into ``out_dir``."""
    tokenizer = train_tokenizer(
        out_dir,
        special_tokens=SPECIAL_TOKENS,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        seed=seed,
    )
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": _round_up(len(tokenizer)),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0, 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    model.save_pretrained(out_dir)

    image_size = {"shortest_edge": 64 * 64, "longest_edge": 256 * 256}
    video_size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size=image_size,
            patch_size=16,
            temporal_patch_size=2,
            merge_size=2,
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        ),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(
            size=video_size,
            patch_size=16,
            temporal_patch_size=2,
            merge_size=2,
            do_sample_frames=False,
            cap_pixels_per_frame=False,
        ),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    (Path(out_dir) / "README.md").write_text(
        "Tiny Qwen3-VL with RANDOM weights, built by harness.models.tiny for tests and the demo.\n"
        "Its answers are meaningless.\n"
    )
    return Path(out_dir)

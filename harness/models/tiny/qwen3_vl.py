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

from harness.models.tiny.common import (
    chat_tokenizer,
    qwen_placeholder_ids,
    round_up,
    save_greedy_qwen,
    text_config,
    write_random_readme,
)
from harness.models.tiny.qwen2_5_vl import CHAT_TEMPLATE, SPECIAL_TOKENS

# Qwen3-VL's smart_resize bounds the pixels of the WHOLE clip (t * h * w), not one frame.
MIN_PIXELS = 64 * 64 * 2
MAX_PIXELS = 128 * 128 * 64


def build(out_dir: Path, seed: int = 0) -> Path:
    """Write config, weights, tokenizer and processor of a tiny Qwen3-VL into ``out_dir``."""
    tokenizer, ids = chat_tokenizer(
        out_dir, special_tokens=SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, seed=seed
    )
    config = Qwen3VLConfig(
        text_config=text_config(
            round_up(len(tokenizer)),
            ids,
            head_dim=16,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
            },
            bos_token_id=ids["<|endoftext|>"],
        ),
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
        **qwen_placeholder_ids(ids),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    save_greedy_qwen(Qwen3VLForConditionalGeneration(config).eval(), ids, out_dir)

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
    write_random_readme(out_dir, "Qwen3-VL")
    return Path(out_dir)

"""Tiny random-weight Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``) in HF layout.

Sizes are chosen to keep every structural feature of the real model while building in well
under a second: 2 LLM layers (hidden 64, 4 heads / 2 KV heads, head_dim 16, M-RoPE sections
[2, 3, 3] summing to head_dim / 2), a 2-block ViT (hidden 32) with one windowed block and one
full-attention block (``fullatt_block_indexes=[1]``) so window attention is exercised, patch 14,
temporal patch 2, 2x2 merge. The video processor keeps the real resize rule (smart_resize) with
small pixel bounds: 112x112 frames give 4x4 LLM tokens per temporal group; at most 224x224.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

from harness.models.tiny.common import (
    chat_tokenizer,
    qwen_placeholder_ids,
    round_up,
    save_greedy_qwen,
    text_config,
    write_random_readme,
)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The Qwen chat format (system turn, <|im_start|>role ... <|im_end|>), with the real
# placeholders: the processor expands <|video_pad|> to one token per LLM visual token.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

MIN_PIXELS = 56 * 56
MAX_PIXELS = 224 * 224


def build(out_dir: Path, seed: int = 0) -> Path:
    """Write config, weights, tokenizer and processor of a tiny Qwen2.5-VL into ``out_dir``."""
    tokenizer, ids = chat_tokenizer(
        out_dir, special_tokens=SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, seed=seed
    )
    config = Qwen2_5_VLConfig(
        text_config=text_config(
            round_up(len(tokenizer)),
            ids,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": [2, 3, 3],
            },
            bos_token_id=ids["<|endoftext|>"],
        ),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "out_hidden_size": 64,
            "tokens_per_second": 2,
        },
        **qwen_placeholder_ids(ids),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    save_greedy_qwen(Qwen2_5_VLForConditionalGeneration(config).eval(), ids, out_dir)

    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=14, temporal_patch_size=2, merge_size=2),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(
            size=size, patch_size=14, temporal_patch_size=2, merge_size=2, cap_pixels_per_frame=False
        ),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    write_random_readme(out_dir, "Qwen2.5-VL")
    return Path(out_dir)

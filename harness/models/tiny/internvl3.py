"""Tiny random-weight InternVL3 (InternViT + pixel-shuffle MLP + Qwen2 LM) in a local HF-layout dir.

Why these sizes: 112 px frames over patch 14 give an 8x8 patch grid; the pixel shuffle
(downsample_ratio 0.5) folds each 2x2 block into one token, so a frame is 4x4 = 16
``<IMG_CONTEXT>`` tokens, the same arithmetic as the real 448 px / 256-token checkpoints.

The tokenizer carries InternVL's named special tokens through ``extra_special_tokens``
(``start_image_token`` ``<img>``, ``end_image_token`` ``</img>``, ``context_image_token``
``<IMG_CONTEXT>``, ``video_token`` ``<video>``): the stock ``InternVLProcessor`` reads them as
tokenizer attributes and fails without them. ``image_seq_length`` (16) goes in the processor
config so each frame expands to the right number of placeholders. Weights are RANDOM.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
)

from harness.models.tiny.common import chat_tokenizer, greedy_stop_on_either, text_config, vit_config

IMAGE_SIZE = 112
PATCH_SIZE = 14
# Wider than the usual 0.02: at 0.02 the tiny tied-embedding LM emits one token over and over
# whatever the video, which would make "same generated ids" equivalence tests vacuous.
INIT_STD = 0.1
DOWNSAMPLE_RATIO = 0.5
IMAGE_SEQ_LENGTH = int((IMAGE_SIZE // PATCH_SIZE) ** 2 * DOWNSAMPLE_RATIO**2)  # 16
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<video>",
)
NAMED_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

# Qwen2 chat markup as InternVL3 uses it: each visual item on its own line, then the text.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif c['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny model, tokenizer and processor into ``out_dir``; return ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, ids = chat_tokenizer(
        out,
        special_tokens=SPECIAL_TOKENS,
        chat_template=CHAT_TEMPLATE,
        seed=seed,
        extra_special_tokens=NAMED_TOKENS,
    )
    config = InternVLConfig(
        vision_config=vit_config(IMAGE_SIZE, PATCH_SIZE, INIT_STD),
        text_config=text_config(
            len(tokenizer), ids, model_type="qwen2", initializer_range=INIT_STD, tie_word_embeddings=False
        ),
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=IMAGE_SEQ_LENGTH,
        downsample_ratio=DOWNSAMPLE_RATIO,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        # Untied: a tiny random LM whose head IS its embedding table keeps re-emitting its last
        # token, which would make "same generated ids" checks vacuous.
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    model.generation_config = greedy_stop_on_either(ids)
    model.save_pretrained(out)

    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size),
        video_processor=InternVLVideoProcessor(size=size),
        tokenizer=tokenizer,
        image_seq_length=IMAGE_SEQ_LENGTH,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out

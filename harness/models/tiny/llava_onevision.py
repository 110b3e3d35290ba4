"""Tiny random-weight LLaVA-OneVision (SigLIP tower + Qwen2 LM) in a local HF-layout directory.

Why these sizes: the frame size (98 px) over patch 14 gives an ODD 7x7 patch grid, so the stock
2x2 bilinear pooling rounds up (ceil(7/2) = 4) exactly like the real 384 px / patch 14 = 27x27
-> 14x14 checkpoints do; an even toy grid would hide that off-by-one. Everything else is as
small as the real classes allow so one forward pass takes milliseconds on CPU.

The directory holds what ``LlavaOnevisionForConditionalGeneration.from_pretrained`` and
``AutoProcessor.from_pretrained`` need offline: config + safetensors, a BPE tokenizer with the
family's special tokens (``<image>``, ``<video>``, Qwen2 chat markers), the image and video
processor configs, ``processor_config.json`` carrying ``num_image_tokens`` and
``vision_feature_select_strategy`` (without them the processor cannot count video
placeholders) and a chat template that puts the video before the question, as LLaVA-OV does.
Weights are RANDOM: answers are meaningless.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
)

from harness.models.tiny.common import chat_tokenizer, greedy_stop_on_either, text_config, vit_config

IMAGE_SIZE = 98  # pixels the processor resizes every frame to (square)
PATCH_SIZE = 14
# Wider than the usual 0.02: with it two different videos move the last logits by ~2 std
# (0.02: ~1 std of a much flatter distribution), so equivalence tests see visual-token errors.
INIT_STD = 0.1
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")

# Qwen2 chat markup with LLaVA-OV's ordering: images, then videos, then the text of a turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% if message['content'] is string %}{{ '\\n' + message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'video' %}{{ '<video>' }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ '\\n' + c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny model, tokenizer and processor into ``out_dir``; return ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, ids = chat_tokenizer(
        out, special_tokens=SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, seed=seed
    )
    config = LlavaOnevisionConfig(
        vision_config=vit_config(
            IMAGE_SIZE, PATCH_SIZE, INIT_STD, model_type="siglip_vision_model", vision_use_head=False
        ),
        text_config=text_config(len(tokenizer), ids, model_type="qwen2", initializer_range=INIT_STD),
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[
            [IMAGE_SIZE, IMAGE_SIZE],
            [IMAGE_SIZE, 2 * IMAGE_SIZE],
            [2 * IMAGE_SIZE, IMAGE_SIZE],
        ],
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config = greedy_stop_on_either(ids)
    model.save_pretrained(out)

    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=size, image_grid_pinpoints=config.image_grid_pinpoints
        ),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tokenizer,
        num_image_tokens=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out

"""What the tiny builders share: the chat tokenizer, the toy LM sizes, the toy ViT, greedy saving.

Why one place: every tiny family puts the same toy LM (a Qwen2 one, or Qwen's own) behind its
vision tower, with ``<|im_end|>`` as eos and ``<|endoftext|>`` as pad, and LLaVA-OV and InternVL3
share the same toy ViT sizes and generation config. A size change or a fix must reach every
family at once; the family modules keep only what really differs (configs' own keys, processors,
chat templates).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerFast

from harness.models.tiny.tokenizer import train_tokenizer

EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

#: The toy LM of every family: 2 layers, hidden 64, 4 heads over 2 KV heads (so GQA is exercised).
LM_SIZES: dict[str, int] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}


def chat_tokenizer(
    out_dir: str | Path,
    *,
    special_tokens: Sequence[str],
    chat_template: str,
    seed: int,
    extra_special_tokens: dict[str, str] | None = None,
) -> tuple[PreTrainedTokenizerFast, dict[str, int]]:
    """Train and save the family's tokenizer (eos ``<|im_end|>``, pad ``<|endoftext|>``).

    Returns it with the id of every special token, which the model config needs.
    """
    tokenizer = train_tokenizer(
        out_dir,
        special_tokens=special_tokens,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=extra_special_tokens,
        chat_template=chat_template,
        seed=seed,
    )
    return tokenizer, {tok: tokenizer.convert_tokens_to_ids(tok) for tok in special_tokens}


def text_config(vocab_size: int, ids: dict[str, int], **family: Any) -> dict[str, Any]:
    """The toy LM's ``text_config``: ``LM_SIZES``, the vocab and eos/pad ids, plus ``family`` keys
    (rope, head_dim, ``model_type`` ...)."""
    return {
        "vocab_size": vocab_size,
        **LM_SIZES,
        **family,
        "eos_token_id": ids[EOS_TOKEN],
        "pad_token_id": ids[PAD_TOKEN],
    }


def vit_config(image_size: int, patch_size: int, init_std: float, **family: Any) -> dict[str, Any]:
    """The toy ViT of the LLaVA-OV (SigLIP) and InternVL3 (InternViT) builders: 2 layers, hidden 32,
    4 heads; ``family`` adds the tower's own keys. (Qwen's ViTs name their sizes differently.)"""
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "initializer_range": init_std,
        "image_size": image_size,
        "patch_size": patch_size,
        **family,
    }


def greedy_stop_on_either(ids: dict[str, int]) -> GenerationConfig:
    """Greedy decoding that stops at ``<|im_end|>`` or ``<|endoftext|>`` (LLaVA-OV, InternVL3), a
    fresh config replacing the one derived from the model config."""
    return GenerationConfig(
        eos_token_id=[ids[EOS_TOKEN], ids[PAD_TOKEN]],
        pad_token_id=ids[PAD_TOKEN],
        do_sample=False,
    )


def save_greedy_qwen(model: PreTrainedModel, ids: dict[str, int], out_dir: str | Path) -> None:
    """Save a Qwen-family model whose own generation config is made greedy with eos ``<|im_end|>``
    (edited in place: the rest of what transformers derived from the config is kept)."""
    model.generation_config.eos_token_id = ids[EOS_TOKEN]
    model.generation_config.pad_token_id = ids[PAD_TOKEN]
    model.generation_config.do_sample = False
    model.save_pretrained(out_dir)


def qwen_placeholder_ids(ids: dict[str, int]) -> dict[str, int]:
    """The Qwen-VL config's placeholder ids (image/video pads, vision start/end markers)."""
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def write_random_readme(out_dir: str | Path, family: str) -> None:
    """Say in the directory itself that the weights are random (the Qwen builders write this)."""
    (Path(out_dir) / "README.md").write_text(
        f"Tiny {family} with RANDOM weights, built by harness.models.tiny for tests and the demo.\n"
        "Its answers are meaningless.\n"
    )


def round_up(n: int, multiple: int = 64) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (the Qwen builders' ``vocab_size``)."""
    return (n + multiple - 1) // multiple * multiple

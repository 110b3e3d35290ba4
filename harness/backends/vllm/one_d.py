"""vLLM subclasses for 1D-RoPE families that let ``prompt_embeds`` keep their UNPRUNED positions.

vLLM numbers ``prompt_embeds`` rows 0..L-1. The transformers adapters (LLaVA-OV, InternVL3) give
each kept token the position it has in the unpruned prompt (gaps where tokens were dropped),
and RoPE makes those different inputs. Two stock vLLM mechanisms close the gap, no fork:

- M-RoPE with three EQUAL rows is plain 1D RoPE (each rotary frequency reads one of the rows),
  so declaring ``SupportsMRoPE`` and adding an ``mrope_section`` to the text config's
  ``rope_parameters`` (``hf_overrides``, see ``requests.mrope_overrides``) changes nothing but
  WHERE positions come from: ``get_mrope_input_positions``, once per request.
- A pure-embeddings prompt may carry ``prompt_token_ids`` next to ``prompt_embeds`` with
  ``prompt_is_token_ids`` all False: those ids are placeholders vLLM never embeds (it zeroes them
  for its gathers). We fill them with each row's unpruned position
  (``requests.embeds_request``) and read them back here as the positions.

Decoding continues at the last prompt position + 1, as the adapters' greedy loop does.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.model_executor.models.interfaces import SupportsMRoPE
from vllm.model_executor.models.interns1 import InternS1ForConditionalGeneration
from vllm.model_executor.models.llava_onevision import LlavaOnevisionForConditionalGeneration


class _PositionsFromPlaceholderIds:
    # SupportsMRoPE (a typing.Protocol) goes LAST in the bases of the concrete classes: first, its
    # no-op __init__ would shadow the model's.

    def get_mrope_input_positions(
        self, input_tokens: list[int], mm_features: list[Any]
    ) -> tuple[torch.Tensor, int]:
        positions = torch.as_tensor(list(input_tokens), dtype=torch.long)
        if positions.numel() and bool((positions[1:] <= positions[:-1]).any()):
            raise ValueError(
                "harness 1D-RoPE route: prompt_token_ids must carry strictly increasing positions "
                "(build requests with harness.backends.vllm.requests.embeds_request)"
            )
        delta = int(positions[-1]) + 1 - positions.numel() if positions.numel() else 0
        return positions.unsqueeze(0).expand(3, -1).contiguous(), delta


class HarnessLlavaOnevisionForConditionalGeneration(
    _PositionsFromPlaceholderIds, LlavaOnevisionForConditionalGeneration, SupportsMRoPE
):
    """Stock vLLM LLaVA-OneVision whose prompt_embeds keep their unpruned positions."""


class HarnessInternVLForConditionalGeneration(
    _PositionsFromPlaceholderIds, InternS1ForConditionalGeneration, SupportsMRoPE
):
    """Stock vLLM InternVL (-hf layout, vLLM's InternS1 implementation), unpruned positions."""

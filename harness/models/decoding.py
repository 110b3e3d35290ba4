"""The one greedy decoding loop every transformers adapter uses, timed per stage."""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F

from harness.models.common import StageTimer
from harness.pruning.stages import DecodePruning, LayerPruning


def stop_token_ids(model: torch.nn.Module) -> set[int]:
    """The generation config's eos ids: what stock ``generate`` stops on."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config.get_text_config(), "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


@cache
def _cache_argument(model_class: type) -> str:
    params = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(model: torch.nn.Module, kv_cache: Any) -> dict[str, Any]:
    """``{name: kv_cache}`` under the name this transformers takes.

    Why: transformers renamed the forward argument (and the output field) ``past_key_values`` to
    ``cache`` after 5.17; ``pyproject.toml`` allows 5.17 on (a lent GPU machine has 5.17).
    """
    return {_cache_argument(type(model)): kv_cache}


def returned_cache(out: Any) -> Any:
    """The KV cache a forward returned, under either name (see :func:`cache_kwargs`)."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


@torch.inference_mode()
def greedy_decode(
    model: torch.nn.Module, prefill_kwargs: dict[str, Any], *, max_new_tokens: int, timer: StageTimer,
    stop: set[int] | None = None, llm: LayerPruning | DecodePruning | None = None,
    visual_token_id: int | None = None,
    report: dict[str, Any] | None = None,
) -> list[int]:
    """Greedy decoding over the KV cache; times ``prefill`` (to the first token) and ``generate``.

    Why not ``model.generate``: it cannot report prefill (time to first token) apart from decode,
    which every record needs. The adapters' tests check this loop yields the same ids as stock
    ``generate``. ``prefill_kwargs`` holds ``input_ids``, a 2D all-ones ``attention_mask`` and
    explicit ``position_ids``: 1D (1, L) for 1D-RoPE LLMs or (R, 1, L) for M-RoPE ones; each new
    token takes every position row's last value + 1, exactly as ``generate`` extends them.
    ``stop``: the ids that end decoding (default: the generation config's eos ids).
    ``llm``: a selection's in-LLM stage, applied to the prefill's ``visual_token_id`` placeholders
    for the whole decode: ``LayerPruning`` (FastV; counts in ``report["llm_pruning"]``) or
    ``DecodePruning`` (DyCoke's KV stage; ``report["kv_pruning"]``).
    """
    if llm is None:
        return _greedy_decode(model, prefill_kwargs, max_new_tokens=max_new_tokens, timer=timer, stop=stop)
    if visual_token_id is None:
        raise ValueError("in-LLM pruning needs the visual placeholder id")
    from harness.models.layer_pruning import decode_pruning, layer_pruning

    if isinstance(llm, DecodePruning):
        hook, key = decode_pruning(model, llm, prefill_kwargs["input_ids"], visual_token_id), "kv_pruning"
    else:
        hook, key = layer_pruning(model, llm, prefill_kwargs["input_ids"], visual_token_id), "llm_pruning"
    with hook as stats:
        ids = _greedy_decode(model, prefill_kwargs, max_new_tokens=max_new_tokens, timer=timer, stop=stop)
    if report is not None:
        report[key] = stats.to_dict()
    return ids


def _greedy_decode(
    model: torch.nn.Module, prefill_kwargs: dict[str, Any], *, max_new_tokens: int, timer: StageTimer,
    stop: set[int] | None = None,
) -> list[int]:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    stop = stop_token_ids(model) if stop is None else set(stop)
    attention_mask = prefill_kwargs["attention_mask"]
    position_ids = prefill_kwargs["position_ids"][..., -1:]
    with timer.stage("prefill"):
        out = model(**prefill_kwargs, use_cache=True, logits_to_keep=1)
        token = int(out.logits[0, -1].argmax())
    ids = [token]
    with timer.stage("generate"):
        kv_cache = returned_cache(out)
        while len(ids) < max_new_tokens and token not in stop:
            position_ids = position_ids + 1
            attention_mask = F.pad(attention_mask, (0, 1), value=1)
            step = torch.tensor([[token]], device=attention_mask.device)
            out = model(
                input_ids=step,
                attention_mask=attention_mask,
                position_ids=position_ids,
                **cache_kwargs(model, kv_cache),
                use_cache=True,
                logits_to_keep=1,
            )
            kv_cache = returned_cache(out)
            token = int(out.logits[0, -1].argmax())
            ids.append(token)
    return ids

"""In-LLM visual token pruning, applied with module hooks around one decode: FastV from layer K
on (``layer_pruning``) and DyCoke's per-step KV-cache pruning (``decode_pruning``).

Why hooks and not a patched forward: transformers' decoder layers take the hidden states, the
position embeddings, the position ids and the mask as arguments, so a forward pre-hook on every
layer ``>= K`` can hand it the kept rows only; the layer then writes a shorter KV cache, and the
decoding steps attend to that. Nothing in the model's code changes, and the hooks are removed when
the decode ends (``layer_pruning`` is a context manager).

The ranking needs layer K-1's attention of the last prompt token: ``attention_capture`` reads it
during that layer's prefill call (``softmax(q_last . K^T * scaling)`` per head; the last token
sees every position in a batch-1 causal prefill, so no mask enters that row). Every layer's
outputs are the stock ones.

DyCoke's KV stage changes nothing in the prefill; at each decoding step it reads layer L-1's
attention of the new token the same way and hands layers ``>= L`` an additive mask hiding the
visual cache entries it drops that step (the reference gathers the kept entries instead: the same
attention).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.models.attention_capture import capture_attention, last_row
from harness.pruning.dycoke import dycoke_kv_step
from harness.pruning.fastv import average_visual_tokens, fastv_kept_positions
from harness.pruning.stages import DecodePruning, LayerPruning


def text_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The LLM's decoder layers of a transformers VLM (or causal LM)."""
    for path in ("model.language_model.layers", "language_model.layers", "model.layers"):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise ValueError(f"{type(model).__name__}: no decoder layers found for in-LLM pruning")


@dataclass
class LayerPruningStats:
    """What the LLM processed: visual tokens before / after layer K and their average over layers."""

    layer: int
    num_layers: int
    visual_before: int = 0
    visual_after: int = 0
    kept_positions: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "num_layers": self.num_layers,
            "visual_before": self.visual_before,
            "visual_after": self.visual_after,
            "avg_visual_tokens": average_visual_tokens(self.num_layers, self.layer, self.visual_before,
                                                       self.visual_after),
        }


def _slice_kwargs(kwargs: dict[str, Any], keep: torch.Tensor, full: int, prefill: bool) -> dict[str, Any]:
    out = dict(kwargs)
    pe = kwargs.get("position_embeddings")
    if prefill and isinstance(pe, tuple):
        out["position_embeddings"] = tuple(t.index_select(-2, keep.to(t.device)) for t in pe)
    for name in ("position_ids", "cache_position"):
        value = kwargs.get(name)
        if prefill and isinstance(value, torch.Tensor) and value.shape[-1] == full:
            out[name] = value.index_select(-1, keep.to(value.device))
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 4 and mask.shape[-1] >= full:
        cols = torch.cat([keep.to(mask.device), torch.arange(full, mask.shape[-1], device=mask.device)])
        mask = mask.index_select(-1, cols)
        if prefill:
            mask = mask.index_select(-2, keep.to(mask.device))
        out["attention_mask"] = mask
    return out


@contextlib.contextmanager
def layer_pruning(
    model: torch.nn.Module, plan: LayerPruning, input_ids: torch.Tensor, visual_token_id: int
) -> Iterator[LayerPruningStats]:
    """Apply ``plan`` to the prefill of ``input_ids`` (1, S) and every decoding step inside the block."""
    layers = text_layers(model)
    if plan.layer >= len(layers):
        raise ValueError(f"fastv: layer K={plan.layer} but the LLM has {len(layers)} layers")
    impl = str(layers[plan.layer].self_attn.config._attn_implementation or "")
    if "flash" in impl:  # its mask / position_ids slicing was never verified under a flash kernel
        raise ValueError(f"fastv: pruning inside the LLM is verified with sdpa and eager only, not {impl}; "
                         "load with sdpa or eager")
    deepstack = len(getattr(getattr(model.config, "vision_config", None), "deepstack_visual_indexes", None) or [])
    if plan.layer < deepstack:
        raise ValueError(
            f"fastv: layer K={plan.layer} is inside the {deepstack} layers DeepStack adds visual features "
            f"to (Qwen3-VL); use k >= {deepstack}"
        )
    visual = input_ids[0] == visual_token_id
    full = int(input_ids.shape[1])
    stats = LayerPruningStats(layer=plan.layer, num_layers=len(layers), visual_before=int(visual.sum()))
    if stats.visual_before == 0:
        raise ValueError("fastv: the prompt holds no visual token")
    kept: dict[str, torch.Tensor] = {}
    with capture_attention(layers[plan.layer - 1].self_attn, last_row,
                           when=lambda hidden: hidden.shape[1] == full and "keep" not in kept) as captured:

        def before_layer(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            hidden = args[0] if args else kwargs["hidden_states"]
            prefill = full > 1 and kwargs_len(kwargs, hidden) == full  # decoding steps have length 1
            if prefill and "keep" not in kept:
                if "last_row" not in captured:
                    raise RuntimeError("fastv: layer K-1's attention was not captured")
                n_keep = plan.num_keep(stats.visual_before)
                kept["keep"] = fastv_kept_positions(captured["last_row"].to(visual.device), visual, n_keep)
                stats.visual_after = n_keep
                stats.kept_positions = kept["keep"].tolist()
            keep = kept["keep"]
            if prefill and hidden.shape[1] == full:
                hidden = hidden.index_select(1, keep.to(hidden.device))
            kwargs = _slice_kwargs(kwargs, keep, full, prefill)
            if args:
                return (hidden, *args[1:]), kwargs
            kwargs["hidden_states"] = hidden
            return args, kwargs

        def kwargs_len(kwargs: dict, hidden: torch.Tensor) -> int:
            pe = kwargs.get("position_embeddings")
            return int(pe[0].shape[-2]) if isinstance(pe, tuple) else int(hidden.shape[1])

        handles = [layer.register_forward_pre_hook(before_layer, with_kwargs=True) for layer in layers[plan.layer:]]
        try:
            yield stats
        finally:
            for h in handles:
                h.remove()


@dataclass
class DecodePruningStats:
    """DyCoke's KV stage over one decode: steps, steps pruned, visual KV entries read per step."""

    layer: int
    num_layers: int
    visual_before: int = 0
    kept_per_step: list[int] = field(default_factory=list)  # visual entries layers >= L read, per step

    def to_dict(self) -> dict[str, Any]:
        steps = len(self.kept_per_step)
        return {
            "layer": self.layer,
            "num_layers": self.num_layers,
            "visual_before": self.visual_before,
            "steps": steps,
            "pruned_steps": sum(k < self.visual_before for k in self.kept_per_step),
            "avg_visual_read": (sum(self.kept_per_step) / steps) if steps else None,
        }


@contextlib.contextmanager
def decode_pruning(
    model: torch.nn.Module, plan: DecodePruning, input_ids: torch.Tensor, visual_token_id: int
) -> Iterator[DecodePruningStats]:
    """Apply DyCoke's KV stage to every decoding step inside the block (the prefill is untouched).

    Layers ``>= L`` get an additive attention mask that hides the visual KV entries not kept
    this step: the same attention as reading the gathered subset, as the reference does.
    """
    layers = text_layers(model)
    if plan.layer >= len(layers):
        raise ValueError(f"dycoke: KV layer l={plan.layer} but the LLM has {len(layers)} layers")
    impl = str(layers[plan.layer].self_attn.config._attn_implementation or "")
    if "flash" in impl:
        raise ValueError(f"dycoke: the KV stage masks cache entries, which {impl} cannot take; load with sdpa or eager")
    visual_prefill = input_ids[0] == visual_token_id
    stats = DecodePruningStats(layer=plan.layer, num_layers=len(layers), visual_before=int(visual_prefill.sum()))
    state: dict[str, Any] = {"previous": None, "mask": None}
    with capture_attention(layers[plan.layer - 1].self_attn, last_row, when=lambda hidden: hidden.shape[1] == 1) \
            as captured:

        def first_pruned_layer(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            hidden = args[0] if args else kwargs["hidden_states"]
            if hidden.shape[1] != 1:
                state["mask"] = None
                return None  # prefill: every layer sees everything
            row = captured["last_row"]
            visual = torch.zeros(row.shape[-1], dtype=torch.bool, device=row.device)
            visual[: visual_prefill.numel()] = visual_prefill.to(row.device)
            kept, state["previous"] = dycoke_kv_step(row, visual, state["previous"],
                                                     plan.num_keep(stats.visual_before), plan.threshold)
            if kept is None:
                state["mask"] = None
                stats.kept_per_step.append(stats.visual_before)
            else:
                mask = torch.full((row.shape[-1],), torch.finfo(hidden.dtype).min, dtype=hidden.dtype,
                                  device=hidden.device)
                mask[kept.to(hidden.device)] = 0
                state["mask"] = mask.view(1, 1, 1, -1)
                stats.kept_per_step.append(plan.num_keep(stats.visual_before))
            return masked(module, args, kwargs)

        def masked(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            hidden = args[0] if args else kwargs["hidden_states"]
            if hidden.shape[1] != 1 or state["mask"] is None:
                return None
            mask = state["mask"]
            given = kwargs.get("attention_mask")
            if isinstance(given, torch.Tensor) and given.dim() == 4:
                given = given[..., : mask.shape[-1]]
                mask = given + mask if given.dtype != torch.bool else mask.masked_fill(~given, mask.min())
            kwargs = dict(kwargs)
            kwargs["attention_mask"] = mask
            return args, kwargs

        handles = [layers[plan.layer].register_forward_pre_hook(first_pruned_layer, with_kwargs=True)]
        handles += [layer.register_forward_pre_hook(masked, with_kwargs=True) for layer in layers[plan.layer + 1:]]
        try:
            yield stats
        finally:
            for h in handles:
                h.remove()

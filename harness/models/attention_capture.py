"""Read an attention layer's weights or keys without replacing any model code.

Stock sdpa / flash kernels do not return attention weights. For the one call of one attention
module that a method needs, ``capture_attention`` switches that module's attention
implementation (through transformers' ``AttentionInterface`` registry, its extension point) to a
function that runs the model's own implementation unchanged, then hands the post-RoPE queries
and keys to a ``reduce`` callable that computes what the method reads (FastV: the last token's
row; VisionZip: the attention each token receives and the keys). The layer's outputs stay the
stock ones; the implementation is restored right after the call.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

_IMPL = "harness_capture"

#: reduce(query (B, H, Q, d), key (B, H, K, d) with kv heads repeated, scaling) -> facts
Reduce = Callable[[torch.Tensor, torch.Tensor, float], dict[str, torch.Tensor]]


@dataclass
class _Capture:
    reduce: Reduce
    impl: str = "sdpa"
    out: dict[str, torch.Tensor] = field(default_factory=dict)


_STATE: ContextVar[_Capture | None] = ContextVar("harness_attention_capture", default=None)


def _base_attention(module: torch.nn.Module, impl: str) -> Any:
    if impl in ALL_ATTENTION_FUNCTIONS:
        return ALL_ATTENTION_FUNCTIONS[impl]
    # "eager": the modeling file's own eager function, the one the module would have used
    return sys.modules[type(module).__module__].eager_attention_forward


def _capturing_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, **kwargs: Any) -> Any:
    state = _STATE.get()
    assert state is not None, f"{_IMPL} attention used outside capture_attention()"
    out = _base_attention(module, state.impl)(module, query, key, value, attention_mask, **kwargs)
    groups = query.shape[1] // key.shape[1]
    keys = key.repeat_interleave(groups, dim=1) if groups > 1 else key
    scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
    state.out.update(state.reduce(query, keys, scaling))
    return out


AttentionInterface.register(_IMPL, _capturing_attention)


def last_row(query: torch.Tensor, keys: torch.Tensor, scaling: float) -> dict[str, torch.Tensor]:
    """(H, K) attention of the last query (batch 0); in a batch-1 causal prefill it sees every key."""
    scores = (query[:, :, -1:].float() @ keys.float().transpose(2, 3)) * scaling
    return {"last_row": scores.softmax(-1)[0, :, 0]}


def received_and_keys(query: torch.Tensor, keys: torch.Tensor, scaling: float) -> dict[str, torch.Tensor]:
    """Per image (B): attention each token receives, averaged over heads and queries (B, N), and the
    keys averaged over heads (B, N, d). For unmasked (bidirectional) vision towers."""
    # one image at a time: the (H, N, N) weights of a whole clip at once would be ~1 GB for 32
    # frames of SigLIP-so400m (16 heads, 729 patches) in float32
    received = torch.stack([
        ((q.float() @ k.float().transpose(1, 2)) * scaling).softmax(-1).mean(dim=(0, 1))
        for q, k in zip(query, keys, strict=True)
    ])
    return {"received": received, "keys": keys.float().mean(1)}


@contextlib.contextmanager
def capture_attention(
    attention: torch.nn.Module, reduce: Reduce, when: Callable[[torch.Tensor], bool] = lambda h: True
) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, calls of ``attention`` whose hidden states pass ``when`` fill the dict."""
    state = _Capture(reduce=reduce)

    def before(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if hidden is not None and when(hidden):
            state.impl = module.config._attn_implementation
            module.config._attn_implementation_internal = _IMPL

    def after(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if module.config._attn_implementation == _IMPL:
            module.config._attn_implementation_internal = state.impl

    token = _STATE.set(state)
    handles = [attention.register_forward_pre_hook(before, with_kwargs=True),
               attention.register_forward_hook(after, with_kwargs=True)]
    try:
        yield state.out
    finally:
        for h in handles:
            h.remove()
        if attention.config._attn_implementation == _IMPL:
            attention.config._attn_implementation_internal = state.impl
        _STATE.reset(token)

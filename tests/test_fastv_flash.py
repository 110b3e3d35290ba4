"""FastV is verified with sdpa and eager attention only (its mask / position_ids slicing was never
checked under flash_attention_2): refused at the config preflight when ``model.kwargs`` names a
flash kernel, and by the layer hooks when the loaded LLM uses one, each in one line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from harness.models.layer_pruning import LayerPruning, layer_pruning
from harness.runner.config import ConfigError, load_config, validate_pruner_params


def _cfg(impl: str, pruner: dict) -> dict:
    return {"model": {"family": "qwen2_5_vl", "path": "tiny", "kwargs": {"attn_implementation": impl}},
            "benchmark": {"name": "synthetic_needle", "limit": 1}, "pruners": [pruner]}


@pytest.mark.parametrize("pruner", [{"name": "fastv"}, {"name": "dycoke"}])  # DyCoke: its KV stage (p set)
def test_flash_attention_with_an_in_llm_method_is_refused_at_start_up(pruner):
    with pytest.raises(ConfigError, match="model.kwargs.attn_implementation 'flash_attention_2' cannot run it") as err:
        validate_pruner_params(load_config(data=_cfg("flash_attention_2", pruner)))
    assert "\n" not in str(err.value) and str(err.value).startswith(f"pruner run '{pruner['name']}")


@pytest.mark.parametrize(("impl", "pruner"), [("sdpa", {"name": "fastv"}), ("eager", {"name": "fastv"}),
                                              ("flash_attention_2", {"name": "dycoke", "params": {"p": None}}),
                                              ("flash_attention_2", {"name": "random", "budget": 0.5})])
def test_what_flash_does_not_touch_passes(impl, pruner):
    validate_pruner_params(load_config(data=_cfg(impl, pruner)))


class _Layer(torch.nn.Module):
    def __init__(self, impl: str):
        super().__init__()
        self.self_attn = SimpleNamespace(config=SimpleNamespace(_attn_implementation=impl))


class _LLM(torch.nn.Module):
    """Just what ``layer_pruning`` reads before it hooks anything: the decoder layers' attention config."""

    def __init__(self, impl: str):
        super().__init__()
        self.model = torch.nn.Module()
        self.model.layers = torch.nn.ModuleList([_Layer(impl) for _ in range(4)])
        self.config = SimpleNamespace()


def test_the_layer_hooks_refuse_a_flash_loaded_llm():
    plan = LayerPruning(layer=2, keep=2, drop_ratio=0.5, selection_tokens=4)
    ids = torch.tensor([[1, 9, 9, 9, 9, 2]])
    with (pytest.raises(ValueError, match=r"^fastv: .*not flash_attention_2; load with sdpa or eager$"),
          layer_pruning(_LLM("flash_attention_2"), plan, ids, visual_token_id=9)):
        pass

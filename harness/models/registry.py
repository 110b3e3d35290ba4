"""Model family name -> adapter class, imported lazily so one family's deps never block another."""

from __future__ import annotations

import importlib

from harness.models.base import ModelAdapter

# family name -> "module:ClassName"
ADAPTERS: dict[str, str] = {
    "qwen2_5_vl": "harness.models.qwen2_5_vl:Qwen25VLAdapter",
    "qwen3_vl": "harness.models.qwen3_vl:Qwen3VLAdapter",
    "llava_onevision": "harness.models.llava_onevision:LlavaOnevisionAdapter",
    "internvl3": "harness.models.internvl3:InternVL3Adapter",
    "nvila_hd_video": "harness.models.nvila_hd_video:NvilaHDVideoAdapter",
}


# families whose checkpoints run code shipped in the snapshot (``trust_remote_code``): loading one
# needs ``model.trust_remote_code: true`` in the config, as transformers and lmms-eval ask for it.
REMOTE_CODE_FAMILIES: frozenset[str] = frozenset({"nvila_hd_video"})


def get_adapter_class(family: str) -> type[ModelAdapter]:
    if family not in ADAPTERS:
        raise KeyError(f"unknown model family {family!r}; valid choices: {', '.join(sorted(ADAPTERS))}")
    module_name, class_name = ADAPTERS[family].split(":")
    return getattr(importlib.import_module(module_name), class_name)

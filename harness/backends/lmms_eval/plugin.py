"""lmms-eval entry point: ``harness_<family>`` models, so lmms-eval users get our pruning in lmms-eval.

lmms-eval 0.7.3 reads the ``lmms_eval.models`` entry-point group when its model registry starts
(``ModelRegistryV2.load_entrypoint_manifests``); pyproject.toml declares

    [project.entry-points."lmms_eval.models"]
    harness = "harness.backends.lmms_eval.plugin:manifests"

Registration is by class path, so lmms-eval imports model.py (torch, transformers, our adapter)
only when one of these models is asked for. Usage (docs/lmms_eval.md):

    lmms-eval --model harness_qwen2_5_vl \\
        --model_args pretrained=DIR,preset=lmms-eval,pruner=random,ratio=0.5 --tasks videomme
"""

from __future__ import annotations

from harness.models.registry import ADAPTERS

MODEL_PREFIX = "harness_"
CLASS_MODULE = "harness.backends.lmms_eval.model"


def class_name(family: str) -> str:
    """``qwen2_5_vl`` -> ``Harness_qwen2_5_vl`` (the class model.py defines for that family)."""
    return f"Harness_{family}"


def manifests() -> list:
    """One simple-model manifest per adapter family (lmms-eval calls this)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [
        ModelManifest(model_id=f"{MODEL_PREFIX}{family}", simple_class_path=f"{CLASS_MODULE}.{class_name(family)}")
        for family in sorted(ADAPTERS)
    ]

"""Named presets (``model.preset``): per-family settings, kept as data in ``presets.yaml``.

Why data and not code: a preset such as ``lmms-eval`` must say exactly which frames, pixel
limits, resize and generation settings another pipeline uses, so a reader can check each value
against its source, and a run records the values (the resolved config), not only a name.
Merging rule: the preset fills a key only where the config does not set it (the config wins,
key by key, also inside ``model.pipeline``).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PRESETS_FILE = Path(__file__).with_name("presets.yaml")
# What a preset may set: the model keys and the frames section.
PRESET_MODEL_KEYS = ("dtype", "pipeline")


class PresetError(ValueError):
    """An unknown preset, or one that has no settings for the family asked."""


@cache
def _presets() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(PRESETS_FILE.read_text()) or {}


def preset_names() -> list[str]:
    return sorted(_presets())


def preset_families(name: str) -> list[str]:
    return sorted(_presets().get(name) or {})


def preset_settings(name: str, family: str) -> dict[str, Any]:
    """``{"model": {...}, "frames": {...}}`` of preset ``name`` for ``family`` (a copy)."""
    presets = _presets()
    if name not in presets:
        raise PresetError(f"unknown preset {name!r}; valid presets: {', '.join(preset_names())}")
    if family not in presets[name]:
        raise PresetError(
            f"preset {name!r} has no settings for model family {family!r}; it has: "
            f"{', '.join(preset_families(name))}"
        )
    return copy.deepcopy(presets[name][family])


def apply_preset(model: dict[str, Any], frames: dict[str, Any] | None, family: str,
                 base_pipeline: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model and frames dicts with ``model["preset"]`` filled in under the keys they set.

    ``base_pipeline``: pipeline keys inherited from elsewhere (a ``models:`` entry inherits the
    top-level one), between the preset's and the entry's own.
    """
    model, frames = dict(model), dict(frames or {})
    name = model.get("preset")
    if not name:
        return model, frames
    settings = preset_settings(str(name), family)
    for key, value in (settings.get("model") or {}).items():
        if key == "pipeline":
            model["pipeline"] = {**value, **(base_pipeline or {}), **(model.get("pipeline") or {})}
        elif key not in model:
            model[key] = value
    for key, value in (settings.get("frames") or {}).items():
        frames.setdefault(key, value)
    return model, frames


# Families whose M-RoPE text rule (``model.pipeline.text_positions``) decides the numbers even when
# the config does not set it: run.json records the rule in force (default: Qwen's reference rule).
TEXT_POSITION_FAMILIES = ("qwen2_5_vl", "qwen3_vl")


def recorded_pipeline(family: str, pipeline: dict[str, Any] | None) -> dict[str, Any]:
    """``model.pipeline`` as a run records it: the config's keys plus ``text_positions`` in force.

    Why: the default rule changed (it was the installed transformers' rule, it is now the
    checkpoint's reference rule) and it moves answers on long videos, so a run must say which one
    made its numbers, and resuming a run made under the other must be refused (run.json differs).
    """
    out = dict(pipeline or {})
    if family in TEXT_POSITION_FAMILIES and "text_positions" not in out:
        from harness.models.qwen2_5_vl import QwenPipeline  # the adapters' own default

        out["text_positions"] = QwenPipeline().text_positions
    return out

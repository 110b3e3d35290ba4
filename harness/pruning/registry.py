"""Pruner name -> class, imported lazily (``autogaze`` pulls in the gaze model; baselines don't).

``build_pruner`` checks the name and every parameter against the class's constructor, so a
typo in a run config fails at start-up with the valid choices instead of mid-run.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from harness.pruning.base import Pruner, PruningError

# pruner name -> "module:ClassName"
PRUNERS: dict[str, str] = {
    "none": "harness.pruning.none:NonePruner",
    "autogaze": "harness.pruning.autogaze:AutoGazePruner",
    "uniform_frames": "harness.pruning.uniform_frames:UniformFramesPruner",
    "random": "harness.pruning.random_tokens:RandomPruner",
    "temporal_diff": "harness.pruning.temporal_diff:TemporalDiffPruner",
    "downsample": "harness.pruning.downsample:DownsamplePruner",
    # published methods acting after the frames stage (harness/pruning/stages.py)
    "fastv": "harness.pruning.fastv:FastVPruner",
    "dycoke": "harness.pruning.dycoke:DyCokePruner",
    "vidcom2": "harness.pruning.vidcom2:VidCom2Pruner",
    "visionzip": "harness.pruning.visionzip:VisionZipPruner",
}


def get_pruner_class(name: str) -> type[Pruner]:
    if name not in PRUNERS:
        raise PruningError(f"unknown pruner {name!r}; valid choices: {', '.join(sorted(PRUNERS))}")
    module_name, class_name = PRUNERS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def pruner_params(name: str) -> dict[str, Any]:
    """The parameters ``name`` accepts, with their defaults (``inspect.Parameter.empty`` if none)."""
    cls = get_pruner_class(name)
    if cls.__init__ is object.__init__:
        return {}
    sig = inspect.signature(cls.__init__)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in sig.parameters.values() if p.name != "self" and p.kind in named}


def build_pruner(name: str, **params: Any) -> Pruner:
    """Instantiate pruner ``name`` with ``params``; unknown names/parameters raise with the choices."""
    valid = pruner_params(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        choices = ", ".join(sorted(valid)) or "(none)"
        raise PruningError(f"pruner {name!r}: unknown parameter(s) {', '.join(unknown)}; valid: {choices}")
    return get_pruner_class(name)(**params)

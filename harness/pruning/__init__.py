"""Token pruners: decide which LLM visual tokens a model sees (see docs/pruning.md)."""

from harness.pruning.base import Pruner, PruningError
from harness.pruning.matched import matched_budget, matched_selections
from harness.pruning.registry import PRUNERS, build_pruner
from harness.pruning.selection import Selection, TokenGeometry

__all__ = [
    "PRUNERS",
    "Pruner",
    "PruningError",
    "Selection",
    "TokenGeometry",
    "build_pruner",
    "matched_budget",
    "matched_selections",
]

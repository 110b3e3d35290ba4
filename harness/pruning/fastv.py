"""``fastv``: FastV (Chen et al., ECCV 2024): drop visual tokens inside the LLM from layer K on.

Reference: pkunlp-icler/FastV, ``fastv_forward`` in its patched
``transformers/models/llama/modeling_llama.py`` (fixture and commit in
``tests/fixtures/pruning_refs/README.md``). At layer ``K`` of the prefill, the attention of
layer ``K-1`` (the previous layer's output), averaged over heads, of the *last* prompt token to
each visual token ranks them; the top ``round(n * (1 - R))`` stay (Python's rounding, as there),
every text token stays, and each kept token keeps its original position. Layers ``< K`` see
every token. Published defaults: ``K = 2``, ``R = 0.5`` (the paper's main setting; the repo's
demo uses K=3, R=0.75).

The reference takes one contiguous image span; here the visual tokens are the prompt's visual
placeholders wherever they are (InternVL3 interleaves per-frame text), which is the same set
for a contiguous span.

Budget: a budget sets the visual tokens kept from layer K on (``keep``) instead of ``R``; the
record also gets the average over layers of the visual tokens the LLM processed
(``generation_extra.llm_pruning.avg_visual_tokens``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from harness.pruning.base import Pruner, PruningError
from harness.pruning.selection import Selection, TokenGeometry
from harness.pruning.stages import LayerPruning


def fastv_kept_positions(last_row: torch.Tensor, visual: torch.Tensor, num_keep: int) -> torch.Tensor:
    """Sorted sequence positions that stay from layer K on.

    ``last_row``: (H, S) attention of the last token over the S positions at layer K-1;
    ``visual``: bool (S,) marking visual tokens. Text positions always stay.
    """
    score = last_row.float().mean(0)
    vis = visual.nonzero().squeeze(-1)
    top = vis[score[vis].topk(num_keep).indices]
    keep = ~visual.clone()
    keep[top] = True
    return keep.nonzero().squeeze(-1)


def average_visual_tokens(num_layers: int, layer: int, before: int, after: int) -> float:
    """Visual tokens per layer, averaged over the LLM's layers (layers < K see ``before``)."""
    k = min(layer, num_layers)
    return (k * before + (num_layers - k) * after) / num_layers


class FastVPruner(Pruner):
    """Plans FastV; the adapter's decoding loop applies it inside the LLM (stage ``llm``)."""

    name = "fastv"
    budgeted: ClassVar[bool] = True
    stage: ClassVar[str] = "llm"
    budget_optional: ClassVar[bool] = True  # without a budget, ``r`` decides (the published way)

    def __init__(self, k: int = 2, r: float = 0.5):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise PruningError(f"pruner 'fastv': k (the layer pruning starts at) must be an int >= 1, got {k!r}")
        if not 0.0 <= float(r) < 1.0:
            raise PruningError(f"pruner 'fastv': r (share of visual tokens dropped) must be in [0, 1), got {r!r}")
        self.k, self.r = k, float(r)

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "r": self.r}

    def _select(
        self, frames: np.ndarray, geometry: TokenGeometry, budget: int | None, fps: float | None
    ) -> Selection:
        plan = LayerPruning(layer=self.k, keep=budget, drop_ratio=self.r, selection_tokens=geometry.total_tokens)
        return Selection.keep_all(geometry).with_llm(plan, {"stage": "llm", "llm_pruning": plan.to_dict()})

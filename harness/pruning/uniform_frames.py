"""``uniform_frames``: fewer frames. Keep whole temporal groups, evenly spaced, within the budget.

Rounding: ``n = budget // tokens_per_group`` groups (as many whole groups as fit, so the kept
count is the largest multiple of a group's tokens not above the budget), but at least one group
even when a single group exceeds the budget (a model needs some frame); ``info["budget_gap"]``
is ``kept - budget`` (<= 0, or > 0 only in that one-group case). Group ``i`` of ``n`` is the one
at the centre of the i-th of ``n`` equal spans of the clip: ``floor((i + 0.5) * grid_t / n)``,
so the kept frames are spread over the whole clip and symmetric about its middle.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.pruning.base import RatioPruner
from harness.pruning.selection import Selection, TokenGeometry


def evenly_spaced(n: int, total: int) -> list[int]:
    """``n`` distinct indices in ``range(total)`` at the centres of ``n`` equal spans."""
    if not 1 <= n <= total:
        raise ValueError(f"cannot pick {n} of {total} groups")
    return [(2 * i + 1) * total // (2 * n) for i in range(n)]


class UniformFramesPruner(RatioPruner):
    name = "uniform_frames"

    def _select(
        self, frames: np.ndarray, geometry: TokenGeometry, budget: int | None, fps: float | None
    ) -> Selection:
        assert budget is not None  # resolved by Pruner.select
        per_group = geometry.tokens_per_group
        n = max(1, min(geometry.grid_t, budget // per_group))
        groups = evenly_spaced(n, geometry.grid_t)
        keep = torch.zeros(geometry.grid_t, geometry.grid_h, geometry.grid_w, dtype=torch.bool)
        keep[groups] = True
        info = {"groups_kept": groups, "budget_gap": n * per_group - budget}
        return Selection(geometry, keep, info=info)

"""``downsample``: the same budget spent on a lower resolution instead of on fewer tokens.

Returns a keep-all Selection over a *smaller* TokenGeometry (same frames, same patch/merge
sizes); the adapter resizes the frames to ``geometry.height x geometry.width``. Sizes stay
multiples of one LLM token's pixel square (``patch_size * spatial_merge_size``), so the model's
patching needs no further rounding, and never exceed the native grid.

Size rule: among token grids ``(rows, cols)`` with ``rows <= grid_h``, ``cols <= grid_w`` and
``cols`` the floor or ceil of ``rows * width / height`` (aspect ratio kept to within one token),
take the one with the most tokens ``grid_t * rows * cols <= budget``; ties go to the smaller
aspect-ratio error. If even 1x1 per group exceeds the budget, 1x1 it is (``info["budget_gap"]``
then > 0). Adapters with a minimum resolution (e.g. Qwen's ``min_pixels``) may enlarge it again;
they report the tokens actually seen.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from harness.pruning.base import RatioPruner
from harness.pruning.selection import Selection, TokenGeometry


def downsampled_grid(geometry: TokenGeometry, budget: int) -> tuple[int, int]:
    """The (rows, cols) token grid per temporal group that best spends ``budget`` (see module doc)."""
    aspect = geometry.width / geometry.height
    per_group = max(1, budget // geometry.grid_t)
    best: tuple[int, float, int, int] | None = None  # (tokens, -aspect error, rows, cols)
    for rows in range(1, geometry.grid_h + 1):
        for cols in {math.floor(rows * aspect), math.ceil(rows * aspect)}:
            cols = min(max(cols, 1), geometry.grid_w)
            tokens = rows * cols
            if tokens > per_group and (rows, cols) != (1, 1):
                continue
            candidate = (tokens, -abs(math.log(cols / rows / aspect)), rows, cols)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
    assert best is not None  # (1, 1) is always a candidate
    return best[2], best[3]


class DownsamplePruner(RatioPruner):
    name = "downsample"

    def _select(
        self, frames: np.ndarray, geometry: TokenGeometry, budget: int | None, fps: float | None
    ) -> Selection:
        assert budget is not None  # resolved by Pruner.select
        rows, cols = downsampled_grid(geometry, budget)
        cell = geometry.patch_size * geometry.spatial_merge_size
        small = replace(geometry, height=rows * cell, width=cols * cell)
        selection = Selection.keep_all(small, pruner=self.name)
        selection.info.update(
            {
                "native_size": [geometry.height, geometry.width],
                "size": [small.height, small.width],
                "scale": small.height / geometry.height,
                "budget_gap": small.total_tokens - budget,
            }
        )
        return selection

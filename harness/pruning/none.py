"""``none``: keep every token. The reference point every other pruner is compared with."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.pruning.base import Pruner
from harness.pruning.selection import Selection, TokenGeometry


class NonePruner(Pruner):
    name = "none"
    latency_stage = None  # keeping everything is no work worth a latency stage

    def params(self) -> dict[str, Any]:
        return {}

    def _select(
        self, frames: np.ndarray, geometry: TokenGeometry, budget: int | None, fps: float | None
    ) -> Selection:
        return Selection.keep_all(geometry, pruner=self.name)

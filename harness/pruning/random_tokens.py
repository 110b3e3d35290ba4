"""``random``: keep exactly ``budget`` tokens drawn uniformly without replacement.

Deterministic per (seed, video): the generator is seeded with ``seed`` and a digest of the
frames, so re-running a sample reproduces its selection (resumable runs, reruns on another
machine) while different videos get different draws rather than the same mask every time.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from harness.pruning.base import Pruner, check_ratio
from harness.pruning.selection import Selection, TokenGeometry


def video_digest(frames: np.ndarray) -> int:
    """A 64-bit content digest of a clip: its shape plus a strided subsample of its pixels.

    Striding (every 4th row/column) keeps this cheap on long clips; two different videos of the
    same shape colliding on every sampled pixel is not a practical concern for seeding.
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(repr(frames.shape).encode())
    h.update(np.ascontiguousarray(frames[:, ::4, ::4]).tobytes())
    return int.from_bytes(h.digest(), "little")


class RandomPruner(Pruner):
    name = "random"
    budgeted = True

    def __init__(self, ratio: float | None = None, seed: int = 0):
        self.ratio = check_ratio(ratio, self.name)
        self.seed = int(seed)

    def params(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "seed": self.seed}

    def _select(
        self, frames: np.ndarray, geometry: TokenGeometry, budget: int | None, fps: float | None
    ) -> Selection:
        assert budget is not None  # resolved by Pruner.select
        digest = video_digest(frames)
        rng = np.random.default_rng([self.seed, digest])
        chosen = rng.choice(geometry.total_tokens, size=budget, replace=False)
        keep = torch.zeros(geometry.total_tokens, dtype=torch.bool)
        keep[torch.from_numpy(chosen)] = True
        keep = keep.view(geometry.grid_t, geometry.grid_h, geometry.grid_w)
        return Selection(geometry, keep, info={"video_digest": f"{digest:016x}"})

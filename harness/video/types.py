"""Values that leave ``harness.video``: what every pruner and adapter receives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class VideoError(Exception):
    """Any failure to open or decode a video; the message names the file and the cause."""

    def __init__(self, path: str | Path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


@dataclass(frozen=True)
class VideoMeta:
    """Container-level facts read without decoding the whole video."""

    path: str
    num_frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str
    decoder: str  # "decord" or "pyav": which backend actually opened the file


@dataclass
class FrameChunk:
    """A run of decoded frames (uint8 RGB, (T, H, W, 3)) with their source frame indices and times."""

    frames: np.ndarray
    indices: np.ndarray  # (T,) int64, indices into the source video
    timestamps: np.ndarray  # (T,) float64 seconds

    def __len__(self) -> int:
        return int(self.frames.shape[0])

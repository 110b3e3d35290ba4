"""Checks and resizing of the decoded frames every adapter receives (uint8 (T, H, W, 3))."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def check_frames(frames: np.ndarray) -> None:
    """Adapters take decoded RGB frames only; a wrong layout would be silently mis-resized."""
    if (
        not isinstance(frames, np.ndarray)
        or frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[-1] != 3
    ):
        got = f"{type(frames).__name__} {getattr(frames, 'dtype', '?')} {getattr(frames, 'shape', '?')}"
        raise ValueError(f"frames must be a uint8 numpy array (T, H, W, 3), got {got}")
    if frames.shape[0] == 0:
        raise ValueError("frames is empty: at least one frame is needed")


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic (antialiased) resize of uint8 (T, H, W, 3) frames, for selections at another size."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

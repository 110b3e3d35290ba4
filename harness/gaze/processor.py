"""``AutoGazeImageProcessor``: raw uint8 RGB frames -> the float clips ``AutoGaze.gaze`` expects.

Equivalent to the original's processor (a VivitImageProcessor variant) run with the published
``preprocessor_config.json``: PIL resize (shortest edge, or an exact height x width) on uint8,
rescale by ``rescale_factor`` with offset (x * 1/127.5 - 1 -> [-1, 1]), then mean/std
normalisation, in float32 at each step like transformers' numpy transforms, so results agree
with the original to ~1e-7.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from harness.gaze.loader import PREPROCESSOR_NAME, resolve_checkpoint

IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
# transformers' PILImageResampling values as stored in preprocessor configs (2 = bilinear).
_RESAMPLE = {
    0: Image.NEAREST,
    1: Image.LANCZOS,
    2: Image.BILINEAR,
    3: Image.BICUBIC,
    4: Image.BOX,
    5: Image.HAMMING,
}

Size = dict[str, int]


class AutoGazeImageProcessor:
    """Resize -> rescale(+offset) -> normalize, channels first, float32."""

    def __init__(
        self,
        do_resize: bool = True,
        size: Size | None = None,
        resample: int = 2,
        do_center_crop: bool = False,
        crop_size: Size | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 127.5,
        offset: bool = True,
        do_normalize: bool = True,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **_: Any,
    ):
        if offset and not do_rescale:
            raise ValueError("AutoGazeImageProcessor: offset=True requires do_rescale=True")
        if resample not in _RESAMPLE:
            raise ValueError(f"AutoGazeImageProcessor: unknown resample={resample!r} (expected 0-5)")
        self.do_resize = do_resize
        self.size = _check_size(size if size is not None else {"shortest_edge": 256}, "size")
        self.resample = resample
        self.do_center_crop = do_center_crop
        self.crop_size = _check_size(
            crop_size if crop_size is not None else {"height": 224, "width": 224}, "crop_size"
        )
        self.do_rescale = do_rescale
        self.rescale_factor = float(rescale_factor)
        self.offset = offset
        self.do_normalize = do_normalize
        self.image_mean = tuple(image_mean if image_mean is not None else IMAGENET_STANDARD_MEAN)
        self.image_std = tuple(image_std if image_std is not None else IMAGENET_STANDARD_STD)

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path) -> AutoGazeImageProcessor:
        """Read ``preprocessor_config.json`` from a checkpoint directory / HF cache id (or the file itself)."""
        path = Path(path_or_id)
        file = path if path.is_file() else resolve_checkpoint(path_or_id) / PREPROCESSOR_NAME
        try:
            data = json.loads(file.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{file}: preprocessor config not found") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}: not valid JSON ({exc})") from None
        kind = data.get("image_processor_type", "AutoGazeImageProcessor")
        if kind != "AutoGazeImageProcessor":
            raise ValueError(f"{file}: image_processor_type={kind!r}, expected 'AutoGazeImageProcessor'")
        return cls(**data)

    # ------------------------------------------------------------------ geometry

    def output_size(self, height: int, width: int, size: Size | None = None) -> tuple[int, int]:
        """(height, width) after resizing, as transformers' ``get_resize_output_image_size``."""
        size = _check_size(size, "size") if size is not None else self.size
        if "shortest_edge" in size:
            short, long = (height, width) if height <= width else (width, height)
            new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
            return (new_short, new_long) if height <= width else (new_long, new_short)
        return size["height"], size["width"]

    # ------------------------------------------------------------------ processing

    def preprocess(
        self, frames: np.ndarray | torch.Tensor | Sequence[np.ndarray], size: Size | None = None
    ) -> torch.Tensor:
        """uint8 RGB frames (T, H, W, 3) or (H, W, 3) -> float32 (T, 3, H', W')."""
        return self.normalize(self.resize(frames, size))

    def resize(
        self, frames: np.ndarray | torch.Tensor | Sequence[np.ndarray], size: Size | None = None
    ) -> np.ndarray:
        """The geometric half: resize (and crop) uint8 frames -> uint8 (T, H', W', 3).

        Split from ``normalize`` so callers can cut tiles from the small uint8 frames and
        normalize only the tiles they are about to use (per-pixel ops: same numbers)."""
        arr = _as_frames(frames)
        out = []
        for frame in arr:
            image = frame
            if self.do_resize:
                h, w = self.output_size(frame.shape[0], frame.shape[1], size)
                image = np.asarray(Image.fromarray(frame).resize((w, h), resample=_RESAMPLE[self.resample]))
            if self.do_center_crop:
                image = _center_crop(image, self.crop_size["height"], self.crop_size["width"])
            out.append(image)
        return np.stack(out)

    def normalize(self, frames: np.ndarray) -> torch.Tensor:
        """The per-pixel half: uint8 (..., H, W, 3) -> rescale (+offset) -> normalize -> float32 (..., 3, H, W)."""
        image = np.asarray(frames)
        if self.do_rescale:
            image = (image.astype(np.float64) * self.rescale_factor).astype(np.float32)
            if self.offset:
                image = image - 1
        image = image.astype(np.float32, copy=False)
        if self.do_normalize:
            mean = np.array(self.image_mean, dtype=np.float32)
            std = np.array(self.image_std, dtype=np.float32)
            image = (image - mean) / std
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, -3), dtype=np.float32))

    def __call__(
        self, videos: Any, size: Size | None = None, return_tensors: str = "pt"
    ) -> dict[str, torch.Tensor]:
        """Batch of videos (list of (T, H, W, 3)) or one video -> {"pixel_values": (B, T, 3, H', W')}."""
        if return_tensors != "pt":
            raise ValueError("AutoGazeImageProcessor only returns torch tensors (return_tensors='pt')")
        if isinstance(videos, (list, tuple)) and len(videos) and _is_video(videos[0]):
            batch = [self.preprocess(v, size) for v in videos]
        else:
            batch = [self.preprocess(videos, size)]
        return {"pixel_values": torch.stack(batch)}


def _check_size(size: Size, name: str) -> Size:
    if not isinstance(size, dict) or not (set(size) == {"shortest_edge"} or set(size) == {"height", "width"}):
        raise ValueError(
            f"AutoGazeImageProcessor: {name} must be {{'shortest_edge': n}} or {{'height': h, 'width': w}}, got {size!r}"
        )
    if any(not isinstance(v, int) or v <= 0 for v in size.values()):
        raise ValueError(f"AutoGazeImageProcessor: {name} values must be positive ints, got {size!r}")
    return dict(size)


def _is_video(x: Any) -> bool:
    return (isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 4) or (
        isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], np.ndarray)
    )


def _as_frames(frames: Any) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.cpu().numpy()
    if isinstance(frames, (list, tuple)):
        frames = np.stack([np.asarray(f) for f in frames])
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(
            f"AutoGazeImageProcessor: expected RGB frames (T, H, W, 3) or (H, W, 3), got shape {arr.shape}"
        )
    if arr.dtype != np.uint8:
        raise ValueError(f"AutoGazeImageProcessor: expected uint8 frames (0-255), got dtype {arr.dtype}")
    return arr


def _center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    top, left = max((h - height) // 2, 0), max((w - width) // 2, 0)
    return image[top : top + height, left : left + width]

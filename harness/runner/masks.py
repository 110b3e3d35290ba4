"""A few frames' keep masks in the record, so the report can draw what a pruner kept.

Why in the record: the report must not rerun AutoGaze (a model, minutes on a CPU) to show a
thumbnail strip, and the per-token selection is not in the record otherwise. Why only a few
frames: a strip shows ``STRIP_FRAMES`` evenly spaced frames, and their masks packed as bits stay
small (demo: ~0.3 KB a record) where the whole clip's could grow with the video.

``selection.masks`` (absent when nothing worth drawing, e.g. ``none`` keeps everything, or when
the masks would exceed ``MAX_BYTES``):

- ``kind``: ``gaze`` (AutoGaze's own multi-scale gaze per frame) or ``tokens`` (the LLM tokens
  kept: the model's token grid, a temporal group's mask shown on each of its frames);
- ``positions``: the strip frames' positions in the sampled clip; ``frames``: their source frame
  indices (what the report decodes);
- ``scales``: AutoGaze scales in px, coarse -> fine (``null`` for ``tokens``);
- ``grids``: ``[rows, cols]`` per scale; ``bits``: per scale, base64 of ``numpy.packbits`` of the
  bool (len(positions), rows, cols) array in C order.
"""

from __future__ import annotations

import base64
import warnings
from typing import Any

import numpy as np

STRIP_FRAMES = 8
MAX_BYTES = 16384  # packed bits per record, all scales together
GAZE_KEY = "_gaze"  # Selection.info key of the autogaze pruner's VideoGaze (never written itself)


def strip_positions(num_frames: int, count: int = STRIP_FRAMES) -> list[int]:
    """``count`` evenly spaced positions in a clip of ``num_frames``, first and last included."""
    if num_frames < 1:
        return []
    return sorted({int(round(p)) for p in np.linspace(0, num_frames - 1, min(count, num_frames))})


def _pack(masks: list[np.ndarray]) -> list[str]:
    return [base64.b64encode(np.packbits(np.asarray(m, dtype=bool).reshape(-1)).tobytes()).decode("ascii")
            for m in masks]


def _per_frame_token_masks(selection: Any, positions: list[int]) -> np.ndarray:
    """(len(positions), grid_h, grid_w): the LLM-token keep of the temporal group each frame is in
    (group g covers frames g * temporal_patch_size ..., as ``harness.pruning.base.group_frames``)."""
    keep = np.asarray(selection.keep.cpu().numpy(), dtype=bool)
    tps = max(1, int(selection.geometry.temporal_patch_size))
    return keep[[min(keep.shape[0] - 1, p // tps) for p in positions]]


def mask_record(selection: Any, frame_indices: np.ndarray, count: int = STRIP_FRAMES,
                max_bytes: int = MAX_BYTES) -> dict[str, Any] | None:
    """The ``selection.masks`` entry of a record (None: nothing to draw, too big, or it failed).

    Never raises: the masks are an extra for the report, and a sample must not fail over one.
    """
    try:
        return _mask_record(selection, frame_indices, count, max_bytes)
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"selection masks not recorded: {type(exc).__name__}: {exc}", stacklevel=2)
        return None


def _mask_record(selection: Any, frame_indices: np.ndarray, count: int, max_bytes: int) -> dict[str, Any] | None:
    if selection is None:
        return None
    frame_indices = np.asarray(frame_indices).reshape(-1)
    gaze = (selection.info or {}).get(GAZE_KEY)
    if gaze is None and selection.num_kept == selection.geometry.total_tokens:
        return None  # every token kept: a strip would only outline the whole picture
    while count >= 1:
        positions = strip_positions(len(frame_indices), count)
        if not positions:
            return None
        if gaze is not None:
            masks = [np.asarray(m.cpu().numpy() if hasattr(m, "cpu") else m, dtype=bool)[positions]
                     for m in gaze.scale_masks]
            kind, scales = "gaze", [int(s) for s in gaze.scales]
        else:
            masks = [_per_frame_token_masks(selection, positions)]
            kind, scales = "tokens", None
        if sum((m.size + 7) // 8 for m in masks) <= max_bytes:
            return {"kind": kind, "positions": positions, "frames": [int(frame_indices[p]) for p in positions],
                    "scales": scales, "grids": [[int(m.shape[1]), int(m.shape[2])] for m in masks],
                    "bits": _pack(masks)}
        count //= 2
    return None


def decode_masks(entry: dict[str, Any]) -> list[np.ndarray]:
    """``selection.masks`` -> per scale, bool (len(positions), rows, cols)."""
    n = len(entry["positions"])
    out = []
    for (rows, cols), bits in zip(entry["grids"], entry["bits"]):
        flat = np.unpackbits(np.frombuffer(base64.b64decode(bits), dtype=np.uint8))[: n * rows * cols]
        out.append(flat.astype(bool).reshape(n, rows, cols))
    return out

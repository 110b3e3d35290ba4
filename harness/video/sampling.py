"""Which frames to read: deterministic frame indices the way evaluation harnesses pick them.

Convention (documented because results depend on it): we follow lmms-eval
(``lmms_eval/models/model_utils/load_video.py``: ``_compute_sample_count`` +
``np.linspace(0, total - 1, n, dtype=int)``), which is what its Video-MME / Qwen / LLaVA-OneVision
loaders use: the first and the last frame are always included and the count is
``min(num_frames, total, int(duration * fps))``. transformers' ``default_sample_indices_fn``
(``arange(n) * total // n``, never the last frame; fps takes priority over num_frames) is available
as ``convention="transformers"`` for parity with stock HF processors.

Two knobs reproduce other pipelines exactly (``frames.index_rounding`` / ``frames.count_multiple``
in a config): qwen-vl-utils (lmms-eval's Qwen classes) rounds ``linspace`` to the NEAREST frame
(``torch.linspace(0, total - 1, n).round()``, float32, halves to even) where lmms-eval's generic
loader floors, and it floors the count to a multiple of 2 (``FRAME_FACTOR``), at least 2.
transformers' InternVL video processor (lmms-eval's ``internvl_hf``) takes segment CENTRES instead:
``torch.arange(total / n / 2, total, total / n).int()`` (float32, truncated), never the first frame.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from harness.video.types import VideoMeta

Convention = Literal["lmms_eval", "transformers"]
Rounding = Literal["floor", "nearest", "centers"]
ROUNDINGS = ("floor", "nearest", "centers")


def frame_window(
    meta: VideoMeta,
    start_s: float | None = None,
    end_s: float | None = None,
    timestamps: np.ndarray | None = None,
) -> tuple[int, int]:
    """Half-open index range ``[first, stop)`` of frames whose time lies in ``[start_s, end_s]``.

    With ``timestamps`` (per-frame seconds from pts, e.g. ``reader.timestamps``) the window is exact for
    variable-frame-rate video; without, frame ``i`` is taken to sit at ``i / meta.fps``.
    """
    n = meta.num_frames
    if start_s is not None and end_s is not None and end_s < start_s:
        raise ValueError(f"{meta.path}: end_s={end_s} is before start_s={start_s}")
    if timestamps is not None:
        ts = np.asarray(timestamps, dtype=np.float64)
        if ts.shape != (n,):
            raise ValueError(f"{meta.path}: timestamps has shape {ts.shape}, expected ({n},)")
        first = 0 if start_s is None else int(np.searchsorted(ts, start_s - 1e-9, side="left"))
        stop = n if end_s is None else int(np.searchsorted(ts, end_s + 1e-9, side="right"))
    else:
        fps = meta.fps if meta.fps > 0 else 1.0
        first = 0 if start_s is None else max(0, math.ceil(start_s * fps - 1e-6))
        stop = n if end_s is None else min(n, math.floor(end_s * fps + 1e-6) + 1)
    first, stop = min(max(first, 0), n), min(max(stop, 0), n)
    if stop <= first:
        raise ValueError(f"{meta.path}: no frames between start_s={start_s} and end_s={end_s}")
    return first, stop


def sample_indices(
    meta: VideoMeta,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    timestamps: np.ndarray | None = None,
    convention: Convention = "lmms_eval",
    rounding: Rounding = "floor",
    count_multiple: int = 1,
) -> np.ndarray:
    """Sorted, unique int64 frame indices, spread uniformly over the (windowed) video.

    - ``num_frames``: N frames uniformly; ``fps``: a target rate (``int(window_seconds * fps)``
      frames, at least 1); both given: the smaller count (lmms-eval). Neither: every frame.
    - ``max_frames`` caps the count; the count never exceeds the frames in the window.
    - ``start_s``/``end_s``: a time window (inclusive), see :func:`frame_window`.
    - ``rounding``: how the ``lmms_eval`` convention turns ``linspace`` into indices: ``floor``
      (``np.linspace(..., dtype=int)``) or ``nearest`` (qwen-vl-utils: float32 ``torch.linspace``
      rounded half to even; float32 matters, it moves some halves) or ``centers`` (the centre of
      each of ``n`` equal segments, truncated: transformers' ``InternVLVideoProcessor.sample_frames``
      with ``initial_shift=True``, float32 ``torch.arange``).
    - ``count_multiple``: the count is floored to a multiple of this, never below one multiple
      (qwen-vl-utils' FRAME_FACTOR 2), after every other cap.
    Pure function of its arguments, so indices are reproducible across runs and machines.
    """
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"{meta.path}: num_frames must be >= 1, got {num_frames}")
    if fps is not None and fps <= 0:
        raise ValueError(f"{meta.path}: fps must be > 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"{meta.path}: max_frames must be >= 1, got {max_frames}")
    if meta.num_frames < 1:
        raise ValueError(f"{meta.path}: video has no frames")
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown index rounding {rounding!r}; valid choices: {', '.join(ROUNDINGS)}")
    if count_multiple < 1:
        raise ValueError(f"count_multiple must be >= 1, got {count_multiple}")
    first, stop = frame_window(meta, start_s, end_s, timestamps)
    total = stop - first

    count = total
    if convention == "transformers" and fps is not None and num_frames is None:
        count = max(1, int(total / _video_fps(meta) * fps))
    else:
        if num_frames is not None:
            count = num_frames
        if fps is not None:
            by_fps = max(1, int(_window_seconds(meta, first, stop, timestamps) * fps))
            count = by_fps if num_frames is None else min(count, by_fps)
    if max_frames is not None:
        count = min(count, max_frames)
    count = min(count, total)
    if count_multiple > 1:
        count = max(count_multiple, count // count_multiple * count_multiple)
        if count > total:
            raise ValueError(
                f"{meta.path}: {total} frames in the window, fewer than count_multiple={count_multiple}"
            )

    if convention == "lmms_eval" and rounding == "nearest":
        import torch  # float32 linspace, exactly as qwen-vl-utils computes it

        rel = torch.linspace(0, total - 1, count).round().long().numpy().astype(np.int64)
    elif convention == "lmms_eval" and rounding == "centers":
        import torch  # float32 arange, exactly as transformers' InternVL video processor computes it

        step = total / count
        rel = torch.arange(step / 2, total, step).int().numpy().astype(np.int64)[:count]
    elif convention == "lmms_eval":
        rel = np.linspace(0, total - 1, count, dtype=np.int64)
    elif convention == "transformers":
        rel = np.arange(count, dtype=np.int64) * total // count
    else:
        raise ValueError(f"unknown sampling convention {convention!r}")
    # count <= total makes both spacings >= 1, so indices are strictly increasing; keep the guarantee explicit.
    assert np.all(np.diff(rel) > 0), rel
    return rel + first


def _video_fps(meta: VideoMeta) -> float:
    if meta.fps > 0:
        return meta.fps
    if meta.duration_s > 0:
        return meta.num_frames / meta.duration_s
    raise ValueError(f"{meta.path}: frame rate unknown, cannot sample by fps")


def _window_seconds(meta: VideoMeta, first: int, stop: int, timestamps: np.ndarray | None) -> float:
    """Length of the window in seconds: frame count / average fps, like lmms-eval's ``total / frame_rate``."""
    return (stop - first) / _video_fps(meta)

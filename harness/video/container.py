"""Container-level checks shared by every backend: turn bad input into a clear VideoError up front.

Why a PyAV pre-check even when decord decodes: decord can abort the process on some broken files, and
its errors do not say what is wrong; opening the container with PyAV is cheap (headers only) and lets
us name the cause (missing, empty, not a video, no video stream) before any decoder touches the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from harness.video.types import VideoError


@dataclass(frozen=True)
class ContainerFacts:
    """What the container header says about the first video stream (nothing decoded)."""

    path: str
    stream_index: int
    codec: str
    width: int
    height: int
    fps: float  # average rate; for variable frame rate this is an average, never used for timestamps
    header_frames: int  # nb_frames from the header; 0 when the container does not store it
    duration_s: float  # 0.0 when unknown
    time_base: Fraction


def check_file(path: str | Path) -> str:
    """Return ``path`` as str if it names a non-empty regular file; else raise VideoError naming the cause."""
    p = str(path)
    if not os.path.exists(p):
        raise VideoError(p, "file not found")
    if not os.path.isfile(p):
        raise VideoError(p, "not a regular file")
    if os.path.getsize(p) == 0:
        raise VideoError(p, "empty file (0 bytes)")
    return p


def open_container(path: str) -> av.container.InputContainer:
    """av.open with every failure mapped to VideoError (corrupt, truncated, unknown format)."""
    try:
        return av.open(path, mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(path, f"cannot open container (corrupt, truncated or not a video): {exc}") from exc
    except (OSError, ValueError) as exc:
        raise VideoError(path, f"cannot open container: {exc}") from exc


def first_video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(path, f"no video stream (streams present: {', '.join(kinds)})")
    return container.streams.video[0]


def inspect_container(path: str | Path) -> ContainerFacts:
    """Header facts of the first video stream; raises VideoError for anything that is not a readable video."""
    p = check_file(path)
    container = open_container(p)
    try:
        stream = first_video_stream(container, p)
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width < 1 or height < 1:
            raise VideoError(p, f"video stream has no valid size ({width}x{height})")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        tb = stream.time_base or Fraction(1, 1)
        if stream.duration:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        return ContainerFacts(
            path=p,
            stream_index=stream.index,
            codec=ctx.name or "unknown",
            width=width,
            height=height,
            fps=fps,
            header_frames=int(stream.frames or 0),
            duration_s=max(0.0, duration),
            time_base=Fraction(tb),
        )
    finally:
        container.close()

"""Container-level checks shared by every backend: turn bad input into a clear VideoError up front.

Why a PyAV pre-check even when decord decodes: decord can abort the process on some broken files, and
its errors do not say what is wrong; opening the container with PyAV is cheap (headers only) and lets
us name the cause (missing, empty, not a video, no video stream) before any decoder touches the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from harness.video.types import VideoError, VideoMeta

log = logging.getLogger(__name__)


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
    """The first real video stream: cover art (an "attached picture" video stream, common in music
    files) is not a video."""
    moving = [s for s in container.streams.video
              if not (int(s.disposition) & int(av.stream.Disposition.attached_pic))]
    if not moving:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        extra = " besides cover art" if container.streams.video else ""
        raise VideoError(path, f"no video stream{extra} (streams present: {', '.join(kinds)})")
    return moving[0]


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


def has_video_packets(path: str, stream_index: int) -> bool:
    """True if the stream yields at least one non-empty packet (reads one packet, decodes nothing).

    Run before decord, which reports a zero-frame stream as an opaque filter-graph failure."""
    container = open_container(path)
    try:
        return any(packet.size for packet in container.demux(container.streams[stream_index]))
    except av.FFmpegError:
        return False
    finally:
        container.close()


def build_meta(facts: ContainerFacts, num_frames: int, timestamps: np.ndarray, decoder: str,
               allow_truncated: bool = False) -> VideoMeta:
    """VideoMeta from the header facts plus the frames a backend actually indexed.

    Duration comes from the pts span (last frame + one frame interval): container durations can be
    wrong (variable frame rate, edit lists). fps is the header's average rate when it agrees with the
    index within 0.5% (exact rational rates such as 30000/1001), else frames / duration.
    Raises VideoError when the index shows the file is truncated or corrupt (see ``missing_frames``).
    """
    if num_frames < 1:
        raise VideoError(facts.path, "video stream has no frames")
    ts = np.asarray(timestamps, dtype=np.float64)
    if num_frames > 1:
        interval = float(np.median(np.diff(ts)))
    else:
        interval = 1.0 / facts.fps if facts.fps > 0 else 0.0
    span = float(ts[-1]) + interval
    index_fps = num_frames / span if span > 0 else 0.0
    fps = facts.fps if facts.fps > 0 and abs(facts.fps - index_fps) <= 0.005 * index_fps else index_fps
    if fps <= 0:
        fps = facts.fps
    problem = missing_frames(facts, num_frames, span)
    if problem:
        if not allow_truncated:
            raise VideoError(facts.path, problem)
        log.warning("%s: %s; reading the %d readable frames", facts.path, problem, num_frames)
    return VideoMeta(path=facts.path, num_frames=num_frames, fps=fps, duration_s=span if span > 0 else facts.duration_s,
                     width=facts.width, height=facts.height, codec=facts.codec, decoder=decoder)


def missing_frames(facts: ContainerFacts, num_frames: int, span_s: float) -> str | None:
    """Why the file looks truncated/corrupt, or None. FFmpeg stops demuxing silently at a cut or a
    damaged cluster, so we compare what was indexed with what the header promised: the header frame
    count where the container stores one (mp4/mov/avi), else the container duration (mkv/webm), with
    slack (1 s or 10%) for containers whose duration covers a slightly longer audio track."""
    if facts.header_frames > 0:
        if num_frames < facts.header_frames:
            return (f"truncated or corrupt: the header lists {facts.header_frames} frames but only "
                    f"{num_frames} can be read")
        return None
    if facts.duration_s > 0 and span_s + max(1.0, 0.1 * facts.duration_s) < facts.duration_s:
        return (f"truncated or corrupt: the container lasts {facts.duration_s:.2f} s but only "
                f"{span_s:.2f} s of video ({num_frames} frames) can be read")
    return None

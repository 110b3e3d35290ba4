"""PyAV backend: a packet index (no decoding) for exact frame count, pts timestamps and keyframe seeks.

Why an index: the header frame count is missing in some containers and wrong in truncated files, and
variable-frame-rate video needs per-frame pts. Demuxing reads packets only (no decoding), so it is cheap
next to decoding, and it tells us the keyframe before any index, so a chunk seeks to that keyframe and
decodes forward instead of decoding from the start; consecutive chunks continue without seeking.
Resizing happens in libswscale during the YUV->RGB conversion, so a 4K RGB frame is never materialised.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import av
import numpy as np

from harness.video.container import (
    ContainerFacts,
    build_meta,
    first_video_stream,
    inspect_container,
    open_container,
)
from harness.video.reader import VideoReader
from harness.video.types import VideoError

# Area averaging: anti-aliased for the large downscales we do (4K -> 448) and the fastest swscale path
# measured at 4K (76 fps vs 48 bilinear, 27 bicubic on this 2-core machine, 150 frames).
INTERPOLATION = "AREA"


def rgb_view(frame: av.VideoFrame, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 view of ``frame`` scaled and converted by libswscale in one pass.

    A view on the converted frame's buffer rather than ``to_ndarray``: the caller copies it once into
    the chunk array, where ``to_ndarray`` would copy it first into a fresh array (measured: the extra
    copy was ~15% of the time per frame at 720p -> 448x252)."""
    rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation=INTERPOLATION)
    plane = rgb.planes[0]
    rows = np.frombuffer(plane, dtype=np.uint8, count=h * plane.line_size).reshape(h, plane.line_size)
    return rows[:, : w * 3].reshape(h, w, 3)


@dataclass(frozen=True)
class PacketIndex:
    """Frames in presentation order: pts (stream time base) and whether each starts a keyframe."""

    pts: np.ndarray  # (N,) int64, sorted
    keyframe: np.ndarray  # (N,) bool
    damaged: str | None = None  # the demuxer error that ended indexing early, if any

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keys", np.flatnonzero(self.keyframe))

    def keyframe_before(self, i: int) -> int:
        """Index of the last keyframe at or before frame ``i`` (0 when none is flagged); O(log N)."""
        keys = self._keys
        pos = int(np.searchsorted(keys, i, side="right")) - 1
        return int(keys[pos]) if pos >= 0 else 0


@functools.lru_cache(maxsize=64)
def _cached_index(path: str, stream_index: int, size: int, mtime_ns: int) -> PacketIndex:
    return build_index(path, stream_index)


def packet_index(path: str, stream_index: int) -> PacketIndex:
    """build_index, memoised per (path, size, mtime): probe() then open_video() demuxes the file once.
    A few hundred KB at most per entry (two small arrays per frame)."""
    st = os.stat(path)
    return _cached_index(path, stream_index, st.st_size, st.st_mtime_ns)


def build_index(path: str, stream_index: int) -> PacketIndex:
    """Demux (not decode) every packet of the video stream and order them by presentation time."""
    container = open_container(path)
    pts: list[int] = []
    keys: list[bool] = []
    missing_pts = 0
    damaged = None
    try:
        stream = container.streams[stream_index]
        for packet in container.demux(stream):
            if packet.size == 0:  # the flush packet demux yields at end of stream
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                missing_pts += 1
                stamp = (pts[-1] + 1) if pts else 0
            pts.append(int(stamp))
            keys.append(bool(packet.is_keyframe))
    except av.FFmpegError as exc:  # damaged data: keep what was read, the caller decides
        damaged = f"demuxing stopped after {len(pts)} packets: {exc}"
    finally:
        container.close()
    if missing_pts:
        raise VideoError(path, f"{missing_pts} video packets carry no timestamp; cannot index frames")
    order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
    pts_arr = np.asarray(pts, dtype=np.int64)[order]
    key_arr = np.asarray(keys, dtype=bool)[order]
    if pts_arr.size and np.any(np.diff(pts_arr) == 0):
        raise VideoError(path, "duplicate frame timestamps in the video stream; cannot index frames")
    return PacketIndex(pts=pts_arr, keyframe=key_arr, damaged=damaged)


class PyAVReader(VideoReader):
    """Decodes with PyAV (FFmpeg) using frame+slice threads; seeks to keyframes only when that skips work."""

    def __init__(self, path: str, facts: ContainerFacts | None = None, threads: int = 0,
                 allow_truncated: bool = False):
        self.facts = facts or inspect_container(path)
        self.path = self.facts.path
        self.index = packet_index(self.path, self.facts.stream_index)
        n = int(self.index.pts.size)
        if n == 0:
            raise VideoError(self.path, "video stream has no frames")
        if self.index.damaged and not allow_truncated:
            raise VideoError(self.path, f"corrupt file: {self.index.damaged}")
        self.timestamps = (self.index.pts - self.index.pts[0]).astype(np.float64) * float(self.facts.time_base)
        self.meta = build_meta(self.facts, n, self.timestamps, "pyav", allow_truncated)
        self._pts_to_index = {int(p): i for i, p in enumerate(self.index.pts)}
        self._threads = threads
        self._container: av.container.InputContainer | None = None
        self._stream = None
        self._frames = None  # decode iterator
        self._pos = -1  # index of the last frame produced; the decoder's next frame comes after it
        self._last: av.VideoFrame | None = None
        self.seeks = 0  # number of seeks performed (tests check sequential reads do not seek)

    # -- decoder state ---------------------------------------------------------------------------
    def _ensure_open(self) -> None:
        if self._container is None:
            self._container = open_container(self.path)
            self._stream = first_video_stream(self._container, self.path)
            self._stream.thread_type = "AUTO"
            self._stream.codec_context.thread_count = self._threads
            self._frames = self._container.decode(self._stream)
            self._pos = -1

    def _seek_to_keyframe(self, key: int) -> None:
        """Jump to keyframe ``key``; afterwards the decoder's next frame is ``key`` (or a leading one before it)."""
        assert self._container is not None and self._stream is not None
        self._container.seek(int(self.index.pts[key]), stream=self._stream, backward=True, any_frame=False)
        self._frames = self._container.decode(self._stream)
        self._pos = key - 1
        self._last = None
        self.seeks += 1

    def _next_frame(self, i: int) -> av.VideoFrame:
        try:
            frame = next(self._frames)
        except StopIteration:
            raise VideoError(self.path, f"frame {i} could not be decoded (stream ended early)") from None
        except av.FFmpegError as exc:
            raise VideoError(self.path, f"decoding failed near frame {i}: {exc}") from exc
        if frame.pts is None:  # some AVI/raw streams: frames come out in order, so count them
            found = self._pos + 1
        else:
            found = self._pts_to_index.get(int(frame.pts))
            if found is None:  # pts absent from the packet index: place the frame by time
                found = max(0, int(np.searchsorted(self.index.pts, frame.pts, side="right")) - 1)
        self._pos = found
        self._last = frame
        return frame

    def frame_at(self, i: int) -> av.VideoFrame:
        """The decoded frame ``i``. Decodes forward from the current position unless a keyframe lies
        beyond it (or ``i`` is behind it); only then seeks, so sequential reads never seek."""
        self._ensure_open()
        if i == self._pos and self._last is not None:
            return self._last
        key = self.index.keyframe_before(i)
        if not (i > self._pos and key <= self._pos + 1):
            self._seek_to_keyframe(key)
        for fallback in (False, True):
            while self._pos < i:
                self._next_frame(i)
            if self._pos == i:
                return self._last
            if not fallback:  # overshot: keyframe flags lied; decoding from the start is always right
                self._seek_to_keyframe(0)
        raise VideoError(self.path, f"frame {i} could not be decoded (the decoder skipped it)")

    # -- VideoReader -----------------------------------------------------------------------------
    def read_chunk(self, indices: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
        h, w = out_hw
        out = np.empty((indices.size, h, w, 3), dtype=np.uint8)
        for k, i in enumerate(indices.tolist()):
            frame = self.frame_at(i)
            try:
                out[k] = rgb_view(frame, h, w)
            except (av.FFmpegError, ValueError) as exc:
                raise VideoError(self.path, f"converting frame {i} to RGB {w}x{h} failed: {exc}") from exc
        return out

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._stream = self._frames = self._last = None
        self._pos = -1

"""Opening videos: backend choice, fallback, and the one-call helpers everyone else uses.

``backend="auto"`` tries DEFAULT_BACKEND first (chosen by measurement, see harness/perf/video.py and
the note below) and falls back to the other one when it is missing, cannot open the file, or fails
while decoding a chunk. ``VideoMeta.decoder`` always names the backend that produced the frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from harness.video import decord_backend
from harness.video.container import ContainerFacts, inspect_container
from harness.video.decord_backend import DecordReader
from harness.video.pyav_backend import PyAVReader
from harness.video.reader import VideoReader
from harness.video.resize import Size
from harness.video.types import FrameChunk, VideoError, VideoMeta

log = logging.getLogger(__name__)

# Measured with `python -m harness.perf.video` (H.264, frames resized to 448x252, 16-frame chunks, best of
# 2-3 interleaved rounds, 2 shared cores): 3840x2160, 1,000 sequential frames: PyAV 42.9 fps vs decord
# 24.8 fps (decord needs 32% more CPU per frame: its filter graph scales with bicubic); 1280x720: PyAV
# 585 fps vs decord 395 fps; 64 sampled frames: on par (both must decode every reference frame).
# decord2 also miscopies some small frame widths (e.g. 1, 16, 32, 48, 96 px), see README.md.
DEFAULT_BACKEND = "pyav"
BACKENDS: dict[str, Callable[..., VideoReader]] = {"pyav": PyAVReader, "decord": DecordReader}


def available_backends() -> list[str]:
    """Backends importable here, default first."""
    names = [DEFAULT_BACKEND] + [b for b in BACKENDS if b != DEFAULT_BACKEND]
    return [b for b in names if b != "decord" or decord_backend.available()]


def _order(backend: str) -> list[str]:
    if backend == "auto":
        return available_backends()
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")
    return [backend]


class FallbackReader(VideoReader):
    """Reads with a primary backend and switches to the next one for good if a chunk fails to decode."""

    def __init__(self, primary: VideoReader, facts: ContainerFacts, others: list[str], threads: int,
                 allow_truncated: bool = False):
        self._allow_truncated = allow_truncated
        self._active = primary
        self._facts = facts
        self._others = list(others)
        self._threads = threads

    @property
    def meta(self) -> VideoMeta:  # type: ignore[override]
        return self._active.meta

    @property
    def timestamps(self) -> np.ndarray:  # type: ignore[override]
        return self._active.timestamps

    @property
    def active(self) -> VideoReader:
        """The backend reader currently decoding."""
        return self._active

    def read_chunk(self, indices: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
        try:
            return self._active.read_chunk(indices, out_hw)
        except VideoError as first:
            while self._others:
                name = self._others.pop(0)
                try:
                    replacement = BACKENDS[name](self._facts.path, self._facts, threads=self._threads,
                                                 allow_truncated=self._allow_truncated)
                except VideoError as exc:
                    log.warning("fallback backend %s cannot open %s: %s", name, self._facts.path, exc.cause)
                    continue
                if replacement.meta.num_frames != self._active.meta.num_frames:
                    log.warning("%s: %s counts %d frames, %s counted %d", self._facts.path, name,
                                replacement.meta.num_frames, self._active.meta.decoder, self._active.meta.num_frames)
                log.warning("%s failed on %s (%s); continuing with %s", self._active.meta.decoder,
                            self._facts.path, first.cause, name)
                failed = self._active.meta.decoder
                self._active.close()
                self._active = replacement
                try:
                    self.validate_indices(indices)  # the replacement may count fewer frames
                    return self._active.read_chunk(indices, out_hw)
                except VideoError as second:
                    raise VideoError(self._facts.path, f"{failed}: {first.cause}; {name}: {second.cause}") from second
            raise

    def __getattr__(self, name: str):
        """Backend-specific extras (e.g. PyAVReader.seeks) of the active reader."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._active, name)

    def close(self) -> None:
        self._active.close()


def open_video(path: str | Path, backend: str = "auto", threads: int = 0,
               allow_truncated: bool = False) -> VideoReader:
    """Open ``path`` for chunked reading. Raises VideoError (naming the file and cause) for bad input.

    ``threads``: decoder threads, 0 = FFmpeg's automatic choice. ``allow_truncated``: read the readable
    prefix of a truncated/corrupt file (with a warning) instead of raising.
    """
    order = _order(backend)
    if not order:
        raise VideoError(path, "no video backend available (install av or decord2)")
    facts = inspect_container(path)
    errors: list[str] = []
    for pos, name in enumerate(order):
        if name == "decord" and not decord_backend.available():
            errors.append("decord: decord is not installed (pip install decord2)")
            continue
        try:
            reader = BACKENDS[name](facts.path, facts, threads=threads, allow_truncated=allow_truncated)
        except VideoError as exc:
            errors.append(f"{name}: {exc.cause}")
            if pos + 1 < len(order):
                log.warning("%s cannot open %s (%s); trying %s", name, facts.path, exc.cause, order[pos + 1])
            continue
        rest = order[pos + 1 :]
        return FallbackReader(reader, facts, rest, threads, allow_truncated) if rest else reader
    if len(errors) == 1:
        raise VideoError(facts.path, errors[0].split(": ", 1)[1])
    raise VideoError(facts.path, "; ".join(errors))


def probe(path: str | Path, backend: str = "auto") -> VideoMeta:
    """Metadata (frame count, fps, duration, size, codec, decoder) from the packet index; nothing is decoded."""
    with open_video(path, backend=backend) as reader:
        return reader.meta


def read_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray | None = None,
    size: Size = None,
    keep_aspect: bool = True,
    backend: str = "auto",
) -> FrameChunk:
    """Open, read ``indices`` (all frames when None) into one FrameChunk, close. For short reads only."""
    with open_video(path, backend=backend) as reader:
        return reader.read(indices, size=size, keep_aspect=keep_aspect)

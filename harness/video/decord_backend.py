"""decord backend (the ``decord`` import, provided by the maintained ``decord2`` fork).

decord resizes inside its FFmpeg filter graph when given ``width``/``height`` at construction, so a
reader is (re)built per output size; only one decoder is kept alive at a time so memory stays bounded.
decord seeks to keyframes itself inside ``get_batch`` and skips forward for nearby indices.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from harness.video.container import ContainerFacts, build_meta, has_video_packets, inspect_container
from harness.video.reader import VideoReader
from harness.video.types import VideoError


def _import_decord():
    """Import decord without its CUDA preload (~0.6-1 GB of RSS).

    decord2's ``_ffi.base`` dlopens every ``nvidia/*/lib/*.so*`` it can find (cuDNN, cuBLAS, NVRTC ...)
    so that its CUDA build resolves symbols. We only decode on CPU, and in a venv that carries the CUDA
    torch wheels that preload alone costs ~1 GB of RSS at import (measured: 1,022 MB vs 40 MB). Hiding the
    ``nvidia`` namespace package for the duration of the import makes ``find_spec("nvidia")`` return None,
    so the preload is skipped; the real entry (if any) is restored right after. HARNESS_DECORD_CUDA=1 keeps
    decord's own behaviour (needed only for decord's GPU decoding, which the harness does not use).
    """
    if os.environ.get("HARNESS_DECORD_CUDA") == "1" or "decord" in sys.modules:
        import decord

        return decord
    missing = object()
    saved = sys.modules.get("nvidia", missing)
    sys.modules["nvidia"] = None  # type: ignore[assignment]
    try:
        import decord
    finally:
        if saved is missing:
            sys.modules.pop("nvidia", None)
        else:
            sys.modules["nvidia"] = saved
    return decord


try:  # decord is optional: the PyAV backend covers every feature
    _decord = _import_decord()
except ImportError:  # pragma: no cover - exercised only where decord2 is absent
    _decord = None


def available() -> bool:
    return _decord is not None


class DecordReader(VideoReader):
    """Decodes with decord; frame count and pts timestamps come from decord's own packet index."""

    def __init__(self, path: str, facts: ContainerFacts | None = None, threads: int = 0,
                 allow_truncated: bool = False):
        if _decord is None:
            raise VideoError(path, "decord is not installed (pip install decord2)")
        self.facts = facts or inspect_container(path)
        self.path = self.facts.path
        self._threads = threads
        self._vr = None
        self._vr_hw: tuple[int, int] | None = None
        if not has_video_packets(self.path, self.facts.stream_index):
            raise VideoError(self.path, "video stream has no frames")
        vr = self._open((-1, -1))
        try:
            n = len(vr)
            if n == 0:
                raise VideoError(self.path, "video stream has no frames")
            start = np.asarray(vr.get_frame_timestamp(np.arange(n))[:, 0], dtype=np.float64)
        except VideoError:
            raise
        except Exception as exc:  # decord raises DECORDError / RuntimeError subclasses
            raise VideoError(self.path, f"decord could not index frames: {exc}") from exc
        self.timestamps = start - start[0]
        self.meta = build_meta(self.facts, n, self.timestamps, "decord", allow_truncated)
        # Keep the native-size decoder only until a sized read asks for another one.
        self._vr, self._vr_hw = vr, (self.facts.height, self.facts.width)

    def _open(self, hw: tuple[int, int]):
        h, w = hw
        try:
            return _decord.VideoReader(self.path, ctx=_decord.cpu(0), width=w, height=h,
                                       num_threads=self._threads)
        except Exception as exc:
            raise VideoError(self.path, f"decord could not open the file: {exc}") from exc

    def _reader_for(self, out_hw: tuple[int, int]):
        if self._vr is None or self._vr_hw != out_hw:
            self._vr = None  # release the old decoder before building the next
            native = out_hw == (self.facts.height, self.facts.width)
            self._vr = self._open((-1, -1) if native else out_hw)
            self._vr_hw = out_hw
        return self._vr

    def read_chunk(self, indices: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
        vr = self._reader_for(out_hw)
        try:
            frames = vr.get_batch(indices.tolist()).asnumpy()
        except Exception as exc:
            raise VideoError(self.path, f"decord failed decoding frames {indices[0]}..{indices[-1]}: {exc}") from exc
        if frames.shape != (indices.size, *out_hw, 3) or frames.dtype != np.uint8:
            raise VideoError(self.path, f"decord returned frames of shape {frames.shape}, expected "
                             f"{(indices.size, *out_hw, 3)}")
        return frames

    def close(self) -> None:
        self._vr = None
        self._vr_hw = None

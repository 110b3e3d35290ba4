"""The reader interface every backend implements: metadata plus chunked, resized frame streaming.

Backends implement ``read_chunk`` (decode a handful of frames at one output size); the shared
``iter_chunks`` does validation and chunking so that peak memory is one chunk, never the video.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import numpy as np

from harness.video.resize import Size, output_size
from harness.video.types import FrameChunk, VideoError, VideoMeta


class VideoReader(ABC):
    """An opened video. Use as a context manager or call ``close()``; not thread-safe."""

    meta: VideoMeta
    timestamps: np.ndarray  # (num_frames,) float64 seconds from pts, frame 0 at 0.0

    @abstractmethod
    def read_chunk(self, indices: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
        """Decode ``indices`` (validated, in range) to a uint8 (T, out_h, out_w, 3) RGB array."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends release on GC
        """Release decoder resources."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.meta.num_frames

    def output_size(self, size: Size = None, keep_aspect: bool = True) -> tuple[int, int]:
        return output_size((self.meta.height, self.meta.width), size, keep_aspect)

    def validate_indices(self, indices: Sequence[int] | np.ndarray | None) -> np.ndarray:
        """int64 1-D copy of ``indices`` (all frames when None); VideoError if any is out of range."""
        n = self.meta.num_frames
        if indices is None:
            return np.arange(n, dtype=np.int64)
        arr = np.asarray(indices)
        if arr.ndim != 1:
            raise VideoError(self.meta.path, f"frame indices must be 1-D, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise VideoError(self.meta.path, f"frame indices must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=True)
        bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            raise VideoError(self.meta.path, f"frame index {int(bad[0])} out of range (video has {n} frames)")
        return arr

    def iter_chunks(
        self,
        indices: Sequence[int] | np.ndarray | None = None,
        chunk_size: int = 16,
        size: Size = None,
        keep_aspect: bool = True,
    ) -> Iterator[FrameChunk]:
        """Yield FrameChunks of at most ``chunk_size`` frames, in the order of ``indices``.

        ``size``: None (native), int (longer side, aspect kept) or (h, w) (fit inside when ``keep_aspect``,
        exact otherwise). Frames are resized while decoding, so a 4K video costs one small chunk of memory.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        idx = self.validate_indices(indices)
        out_hw = self.output_size(size, keep_aspect)
        for start in range(0, idx.size, chunk_size):
            part = idx[start : start + chunk_size]
            frames = self.read_chunk(part, out_hw)
            yield FrameChunk(frames=frames, indices=part, timestamps=self.timestamps[part].copy())

    def read(self, indices: Sequence[int] | np.ndarray | None = None, size: Size = None,
             keep_aspect: bool = True) -> FrameChunk:
        """All requested frames in one FrameChunk (memory grows with len(indices): use iter_chunks for long reads)."""
        idx = self.validate_indices(indices)
        out_hw = self.output_size(size, keep_aspect)
        frames = np.empty((idx.size, *out_hw, 3), dtype=np.uint8)
        pos = 0
        for chunk in self.iter_chunks(idx, chunk_size=16, size=out_hw, keep_aspect=False):
            frames[pos : pos + len(chunk)] = chunk.frames
            pos += len(chunk)
        return FrameChunk(frames=frames, indices=idx, timestamps=self.timestamps[idx].copy())

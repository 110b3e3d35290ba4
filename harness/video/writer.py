"""Write videos with PyAV: used by tests, the synthetic benchmark and the perf benchmarks.

One writer for the whole project so every generated video has the same, known encoding
(H.264 yuv420p by default, which needs even sizes; other codecs for odd-size edge cases).
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = 24.0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> Path:
    """Encode uint8 RGB frames (each (H, W, 3)) to ``path``; frames may be a generator (bounded memory).

    A frame the encoder cannot take (empty, not RGB, odd size for 4:2:0, a size change) is a
    ``ValueError`` naming the file and the size, not an error from deep inside FFmpeg.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = None
        for frame in frames:
            _check_frame(path, frame, codec, pix_fmt, None if stream is None else (stream.height, stream.width))
            if stream is None:
                h, w = frame.shape[:2]
                stream = container.add_stream(codec, rate=rate)
                stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
                default = {"preset": "ultrafast"} if codec == "libx264" else {}
                stream.options = {**default, **(options or {})}
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return path


_SUBSAMPLED = ("yuv420p", "yuvj420p", "nv12", "yuv420p10le")  # chroma at half size
_EVEN_ONLY = ("libx264", "libx265")  # these refuse odd sizes in 4:2:0 (mpeg4 and others pad)


def _check_frame(path: Path, frame: np.ndarray, codec: str, pix_fmt: str, size: tuple[int, int] | None) -> None:
    shape = tuple(getattr(frame, "shape", ()))
    if len(shape) != 3 or shape[2] != 3 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{path}: cannot encode a frame of shape {shape}; expected (H, W, 3) with H, W >= 1")
    h, w = shape[:2]
    if codec in _EVEN_ONLY and pix_fmt in _SUBSAMPLED and (h % 2 or w % 2):
        raise ValueError(f"{path}: {codec} {pix_fmt} needs an even width and height, got {w}x{h}")
    if size is not None and (h, w) != size:
        raise ValueError(f"{path}: frame size changed from {size[1]}x{size[0]} to {w}x{h}")

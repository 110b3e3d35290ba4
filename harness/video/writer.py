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
    """Encode uint8 RGB frames (each (H, W, 3)) to ``path``; frames may be a generator (bounded memory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = None
        for frame in frames:
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

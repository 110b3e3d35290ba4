"""harness.video: the one place that turns a video file into frames for every pruner and model.

    meta = probe(path)                                  # VideoMeta, no decoding
    idx = sample_indices(meta, num_frames=64)           # lmms-eval convention, deterministic
    with open_video(path) as reader:                    # decord or PyAV, with fallback
        for chunk in reader.iter_chunks(idx, chunk_size=16, size=448):
            ...                                         # FrameChunk: uint8 (T, H, W, 3) RGB
"""

from harness.video.api import DEFAULT_BACKEND, available_backends, open_video, probe, read_frames
from harness.video.reader import VideoReader
from harness.video.resize import output_size
from harness.video.sampling import frame_window, sample_indices
from harness.video.types import FrameChunk, VideoError, VideoMeta
from harness.video.writer import write_video

__all__ = [
    "DEFAULT_BACKEND",
    "FrameChunk",
    "VideoError",
    "VideoMeta",
    "VideoReader",
    "available_backends",
    "frame_window",
    "open_video",
    "output_size",
    "probe",
    "read_frames",
    "sample_indices",
    "write_video",
]

"""Video-MME subtitles (.srt) and the lines that belong to the sampled frames.

Written to reproduce lmms-eval's ``videomme_w_subtitle`` (tasks/videomme/utils.py) exactly,
quirks included, because the subtitle text is part of the prompt and a different prompt is a
different benchmark:

- the file is split on blank lines; a block needs >= 3 lines (index, ``start --> end``, text),
  text lines are joined with a space; blocks with the same time range keep the last text;
- times ``HH:MM:SS,mmm`` become frames with ``int(seconds * fps)``;
- the sampled frames are ``linspace(0, total_frames - 1, frame_num)`` cast to int, and a block
  is selected when one of them lies in ``[start_frame, end_frame)``;
- only text inside ``<font color="white" size=".72c">...</font>`` is kept (the Video-MME
  subtitles wrap every line in that tag); a block without it contributes nothing;
- the selected lines come out in the order of ``list(set(block indices))``, which CPython
  makes ascending for these small ints, and are joined with newlines.

fps and frame count come from PyAV (container metadata: average rate, ``nb_frames`` or
duration * fps), the same fields OpenCV's FFmpeg backend reports for CAP_PROP_FPS and
CAP_PROP_FRAME_COUNT on constant-frame-rate files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FONT_TEXT = re.compile(r'<font color="white" size=".72c">(.*?)</font>')
NO_SUBTITLES = "No subtitles available"


@dataclass(frozen=True)
class SubtitleBlock:
    start_s: float
    end_s: float
    text: str


def _parse_time(stamp: str, path: Path) -> float:
    try:
        hms, millis = stamp.strip().split(",")
        h, m, s = hms.split(":")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(millis) / 1000
    except ValueError as exc:
        raise ValueError(f"{path}: bad subtitle time {stamp!r} (expected HH:MM:SS,mmm)") from exc


def parse_srt(path: str | Path) -> list[SubtitleBlock]:
    """Blocks in file order, de-duplicated by time range (the later text wins, first position kept)."""
    path = Path(path)
    content = path.read_text(encoding="utf-8")
    by_range: dict[tuple[float, float], str] = {}
    for section in content.split("\n\n"):
        if not section.strip():
            continue
        lines = section.split("\n")
        if len(lines) < 3:
            continue
        start, _, end = lines[1].partition(" --> ")
        key = (_parse_time(start, path), _parse_time(end, path))
        by_range[key] = " ".join(lines[2:])
    return [SubtitleBlock(s, e, t) for (s, e), t in by_range.items()]


def video_fps_and_frames(path: str | Path) -> tuple[float, int]:
    """(fps, frame count) from container metadata, without decoding."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            frames = int(stream.frames or 0)
            if frames <= 0:
                duration = (
                    float(stream.duration * stream.time_base)
                    if stream.duration is not None and stream.time_base is not None
                    else (container.duration or 0) / 1_000_000
                )
                frames = int(np.floor(duration * fps + 0.5))
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise ValueError(f"{path}: cannot read fps/frame count for subtitle selection ({exc})") from exc
    return fps, frames


def sampled_frame_indices(total_frames: int, frame_num: int) -> list[int]:
    """lmms-eval's uniform sampling for subtitle selection (frame_num -1 = every frame)."""
    if frame_num == -1:
        frame_num = total_frames
    return np.linspace(0, total_frames - 1, frame_num, dtype=int).tolist()


def subtitles_for_frames(blocks: list[SubtitleBlock], fps: float, frame_indices: list[int]) -> str:
    """The subtitle text shown to the model for these frames (see module docstring)."""
    spans = [(int(b.start_s * fps), int(b.end_s * fps), b.text) for b in blocks]
    hits: list[int] = []
    for frame in frame_indices:
        for idx, (start, end, _) in enumerate(spans):
            if start <= frame < end:
                hits.append(idx)
    lines = []
    # list(set(...)) on purpose: its iteration order is the order lmms-eval emits lines in.
    for idx in list(set(hits)):
        found = FONT_TEXT.findall(spans[idx][2])
        if found:
            lines.append(found[0])
    return "\n".join(lines)


def subtitle_text(
    subtitle_path: str | Path,
    video_path: str | Path,
    frame_num: int = 32,
    frame_indices: list[int] | None = None,
) -> str:
    """Subtitle text for a video as lmms-eval builds it; ``frame_indices`` overrides its sampling."""
    subtitle_path = Path(subtitle_path)
    if not subtitle_path.is_file():
        return NO_SUBTITLES
    blocks = parse_srt(subtitle_path)
    fps, total = video_fps_and_frames(video_path)
    indices = frame_indices if frame_indices is not None else sampled_frame_indices(total, frame_num)
    return subtitles_for_frames(blocks, fps, indices)

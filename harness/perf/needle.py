"""Synthetic needle generation speed and memory: one long video, drawn and encoded frame by frame.

    python -m harness.perf.needle [--width 3840 --height 2160 --frames 240] [--encode/--no-encode]

Times ``benchmarks.synthetic_needle`` drawing one video (``plan_video`` + ``video_frames``: the
panning texture, the moving shapes, the plates) and, with ``--encode`` (default), writing it with
``harness.video.writer.write_video`` (libx264 ultrafast, yuv420p) into a temporary directory.
Reports frames per second for drawing alone and for drawing plus encoding, seconds for the
set-up (texture and shapes built once), the projected seconds for 1,000 frames, and the peak
RSS of the process (ru_maxrss): it must not grow with the number of frames (frames are
streamed). Last line: one JSON object.

Measured 2026-12-01 on the 2-core shared dev machine (load average ~6-9), 3840x2160:
  drawing only, 1,000 frames: 11.8 frames/s (85 s), peak RSS 908 MB (908 MB for 10 frames too:
                              flat in length; ~700 MB of it is importing torch and pandas)
  drawing + encoding, 60 frames: 2.8 frames/s -> ~6 minutes per 1,000-frame video, 26 MB per 60 frames
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=3840)
    parser.add_argument("--height", type=int, default=2160)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--encode", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)

    from benchmarks.synthetic_needle import NeedleConfig, plan_video, video_frames
    from harness.video.writer import write_video

    cfg = NeedleConfig(num_videos=1, width=args.width, height=args.height, num_frames=args.frames,
                       fps=args.fps, needle_frames=min(24, args.frames), sizes=(0.04, 0.01, 0.005))
    start = time.perf_counter()
    plan, rng = plan_video(cfg, 0)
    frames = video_frames(cfg, plan, rng)
    first = next(frames)
    setup = time.perf_counter() - start

    def stream():
        yield first
        yield from frames

    start = time.perf_counter()
    if args.encode:
        with tempfile.TemporaryDirectory() as tmp:
            path = write_video(Path(tmp) / "needle.mp4", stream(), fps=cfg.fps)
            size_mb = path.stat().st_size / 2**20
    else:
        size_mb = None
        for _ in stream():
            pass
    seconds = time.perf_counter() - start
    fps = args.frames / seconds
    result = {
        "width": args.width, "height": args.height, "frames": args.frames, "encode": args.encode,
        "setup_s": round(setup, 3), "frames_per_s": round(fps, 2),
        "projected_1000_frames_s": round(setup + 1000 / fps, 1),
        "file_mb": None if size_mb is None else round(size_mb, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

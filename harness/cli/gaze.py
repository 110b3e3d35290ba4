"""``run_eval.py gaze``: run AutoGaze on a video, write it with the gazed patches highlighted.

    python run_eval.py gaze --video in.mp4 --model DIR --out gaze.mp4 \\
        [--gazing-ratio 0.3] [--task-loss-requirement 0.7] [--frames N] [--size 448] [--side-by-side]

Each gazed cell is outlined in its scale's colour (coarse -> fine: blue, green, yellow, red),
finer scales drawn over coarser ones; un-gazed area is dimmed (``harness.video.overlay``). Every
frame carries its index and kept-token count on a band at the top and the colour legend at the
bottom; ``--side-by-side`` puts the original frame on the left. The video is read twice (gaze,
then draw) so memory stays bounded by a chunk, not the video; both passes show a progress bar
(after a couple of seconds). Prints tokens kept per frame and the total.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, help="input video file")
    parser.add_argument(
        "--model", required=True, help="AutoGaze checkpoint dir, HF cache id (e.g. nvidia/AutoGaze), or tiny (random weights)"
    )
    parser.add_argument("--out", required=True, help="output video (.mp4)")
    parser.add_argument(
        "--gazing-ratio", type=float, default=None, help="max fraction of tokens gazed per frame"
    )
    parser.add_argument(
        "--task-loss-requirement", type=float, default=None, help="stop a frame once predicted loss <= this"
    )
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames (default: all)")
    parser.add_argument(
        "--size", type=int, default=None, help="resize so the longer side is SIZE px (default: native)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="clip-tiles gazed per model call")
    parser.add_argument(
        "--tile-size", type=int, default=224, help="tile size in px (the model sees 224 px tiles)"
    )
    parser.add_argument(
        "--clip-len", type=int, default=16, help="frames per clip (the model is trained on 16)"
    )
    parser.add_argument(
        "--side-by-side", action="store_true", help="the original frame on the left, the overlay on the right"
    )


def _chunks(path: str, indices: np.ndarray, size: int | None, bar=None) -> Iterator:
    """Decoded chunks; ``bar`` (a tqdm) advances by each chunk's frames as it is handed on."""
    from harness.video import open_video

    with open_video(path) as reader:
        for chunk in reader.iter_chunks(indices, chunk_size=16, size=size):
            yield chunk
            if bar is not None:
                bar.update(len(chunk))


def draw_frame(frame: np.ndarray, masks: list[np.ndarray], scales: list[int], index: int, kept: int,
               per_frame: int, side_by_side: bool = False) -> np.ndarray:
    """One output frame: outlines per scale, frame index and kept tokens on top, legend at the bottom."""
    from harness.video.overlay import annotate, outline_overlay, scale_legend

    drawn = outline_overlay(frame, masks)
    top = f"frame {index}  {kept}/{per_frame} tokens kept ({100 * kept / per_frame:.1f}%)"
    drawn = annotate(drawn, top=top, legend=scale_legend(scales))
    if side_by_side:
        drawn = np.concatenate([annotate(frame, top="original"), drawn], axis=1)
    return drawn


def _bar(total: int, desc: str):
    from tqdm import tqdm

    # delay: short gazes stay quiet; long ones (minutes on a CPU) show frames done and the rate
    return tqdm(total=total, desc=desc, unit="frame", delay=2.0, file=sys.stderr, leave=False)


def run(args: argparse.Namespace) -> int:
    import av
    import torch

    from harness.gaze import AutoGaze, CheckpointError, ConfigError, gaze_video
    from harness.video import VideoError, probe
    from harness.video.writer import write_video

    try:
        meta = probe(args.video)
        n = meta.num_frames if args.frames is None else min(args.frames, meta.num_frames)
        if n < 1:
            raise VideoError(args.video, "no frames to gaze")
        indices = np.arange(n, dtype=np.int64)
        model = AutoGaze.from_pretrained(args.model)
        with _bar(n, "gaze") as bar:
            result = gaze_video(
                model,
                _chunks(args.video, indices, args.size, bar),
                gazing_ratio=args.gazing_ratio,
                task_loss_requirement=args.task_loss_requirement,
                tile_size=args.tile_size,
                clip_len=args.clip_len,
                batch_size=args.batch_size,
            )
    except (VideoError, CheckpointError, ConfigError, ValueError) as exc:
        print(f"run_eval.py gaze: {exc}", file=sys.stderr)
        return 2

    masks = [m.numpy() for m in result.scale_masks]
    per_scale = np.stack([m.reshape(m.shape[0], -1).sum(1) for m in masks], axis=1)

    def frames_out(bar) -> Iterator[np.ndarray]:
        t = 0
        for chunk in _chunks(args.video, indices, args.size, bar):
            for frame in chunk.frames:
                drawn = draw_frame(frame, [m[t] for m in masks], result.scales, int(result.frame_indices[t]),
                                   int(result.gazed_per_frame[t]), result.tokens_per_frame, args.side_by_side)
                h, w = drawn.shape[:2]  # H.264 yuv420p needs even sizes: repeat the last row/column
                yield np.pad(drawn, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                t += 1

    try:
        with _bar(n, "draw") as bar:
            write_video(args.out, frames_out(bar), fps=meta.fps or 24.0)
    except (OSError, ValueError, av.FFmpegError) as exc:
        print(f"run_eval.py gaze: cannot write {args.out}: {exc}", file=sys.stderr)
        return 2
    total = int(result.gazed_per_frame.sum())
    print(
        f"scales {result.scales} (outline colours blue, green, yellow, red: coarse -> fine); "
        f"{result.tokens_per_frame} gaze tokens per frame if all were kept"
    )
    for t, idx in enumerate(result.frame_indices):
        kept = int(result.gazed_per_frame[t])
        split = "+".join(str(int(x)) for x in per_scale[t])
        print(
            f"frame {int(idx):6d}: {kept:5d}/{result.tokens_per_frame} tokens kept "
            f"({100 * kept / result.tokens_per_frame:5.1f}%)  per scale {split}"
        )
    all_tokens = result.tokens_per_frame * result.num_frames
    print(
        f"total: {total}/{all_tokens} tokens kept ({100 * total / all_tokens:.1f}%), "
        f"gaze {result.seconds:.2f} s on {torch.get_num_threads()} threads; wrote {args.out}"
    )
    return 0

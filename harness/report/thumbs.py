"""Thumbnail strips for the HTML report: the frames a pruner saw, with what it kept outlined.

Made at report time from what the records carry (no model runs): ``video`` and the decode size
``frames.height x frames.width``, and ``selection.masks`` (``harness.runner.masks``: source frame
indices of up to 8 strip frames and their masks). The frames are decoded again exactly as the
runner decoded them (same indices, same size), once per sample for all its runs. AutoGaze runs
show its gaze outlined per scale (the gaze overlay's colours); baselines show the LLM tokens they
kept. One bad sample (video moved, unreadable) never stops the report: its cell says why.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.runner.masks import decode_masks
from harness.video.overlay import COLOURS, TOKEN_COLOUR, font, outline_overlay, resize

THUMB_HEIGHT = 80
LABEL_HEIGHT = 13
GAP = 3


@dataclass
class Thumb:
    """A strip's file (relative to the report folder) or why there is none."""

    path: str | None = None
    reason: str | None = None


def _safe(text: str) -> str:
    """A file name for ``text``: readable part + a short hash (two ids never share a file)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "x"
    return f"{readable}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def strip_image(frames: list[np.ndarray], masks: list[np.ndarray], kind: str, labels: list[str],
                height: int = THUMB_HEIGHT) -> np.ndarray:
    """Frames side by side at ``height`` px, masks outlined (drawn after resizing, so outlines stay
    one crisp pixel), each frame's label under it. ``kind``: ``gaze`` or ``tokens`` (see
    ``harness.runner.masks``)."""
    from PIL import Image, ImageDraw

    gaze = kind == "gaze"
    # AutoGaze: a box per gaze token and scale; baselines (mostly kept): dark drops, kept areas outlined
    colours, dim = (COLOURS, 0.55) if gaze else ([TOKEN_COLOUR], 0.25)
    tiles = [outline_overlay(resize(f, height), [m[i] for m in masks], colours, dim=dim, thickness=1,
                             regions=not gaze) for i, f in enumerate(frames)]
    width = sum(t.shape[1] for t in tiles) + GAP * (len(tiles) - 1)
    canvas = Image.new("RGB", (width, height + LABEL_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for tile, label in zip(tiles, labels):
        canvas.paste(Image.fromarray(tile), (x, 0))
        draw.text((x + 2, height + 1), label, font=font(10), fill=(60, 60, 60))
        x += tile.shape[1] + GAP
    return np.asarray(canvas)


def _decode(video: str, indices: list[int], height: int, width: int) -> list[np.ndarray]:
    from harness.video import open_video

    out: list[np.ndarray] = []
    with open_video(video) as reader:
        for chunk in reader.iter_chunks(np.asarray(indices), chunk_size=16, size=(height, width), keep_aspect=False):
            out.extend(chunk.frames)
    return out


def render_thumbnails(records: pd.DataFrame, out_dir: Path, limit: int = 1000,
                      height: int = THUMB_HEIGHT) -> dict[tuple[str, str], Thumb]:
    """(run_id, sample_id) -> its strip, for every record with ``sel_masks``; at most ``limit`` strips.

    Strips go to ``out_dir / "thumbs"``. Records are visited by video so each video's frames are
    decoded once and dropped before the next (memory: one sample's strip frames).
    """
    result: dict[tuple[str, str], Thumb] = {}
    if "sel_masks" not in records:
        return result
    todo = records[records["sel_masks"].notna()]
    # over the limit, AutoGaze's strips come first (the gaze is what a reader came to see)
    first = todo.assign(_gaze=todo["pruner"] != "autogaze").sort_values("_gaze", kind="stable")
    for row in first.iloc[max(0, limit):].itertuples(index=False):
        result[(str(row.run_id), str(row.sample_id))] = Thumb(
            reason=f"not drawn: over the report's limit of {limit} strips (--max-thumbnails)")
    todo = first.iloc[: max(0, limit)].sort_values(["video", "run_id"], kind="stable")
    folder = out_dir / "thumbs"
    cache: dict[tuple, list[np.ndarray] | Exception] = {}
    current_video = None
    for row in todo.itertuples(index=False):
        key = (str(row.run_id), str(row.sample_id))
        entry = row.sel_masks
        if row.video != current_video:
            cache.clear()
            current_video = row.video
        spec = (tuple(entry["frames"]), row.frames_height, row.frames_width)
        try:
            if spec not in cache:
                try:
                    cache[spec] = _decode(str(row.video), list(entry["frames"]), int(row.frames_height),
                                          int(row.frames_width))
                except Exception as exc:  # noqa: BLE001 - recorded against this sample's cell
                    cache[spec] = exc
            frames = cache[spec]
            if isinstance(frames, Exception):
                raise frames
            image = strip_image(frames, decode_masks(entry), entry.get("kind", "tokens"),
                                [f"#{i}" for i in entry["frames"]], height)
            from PIL import Image

            path = folder / _safe(key[0]) / f"{_safe(key[1])}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, optimize=True)
            result[key] = Thumb(path=path.relative_to(out_dir).as_posix())
        except Exception as exc:  # noqa: BLE001 - one unreadable video must not stop the report
            result[key] = Thumb(reason=f"thumbnail unavailable: {type(exc).__name__}: {exc}")
    return result

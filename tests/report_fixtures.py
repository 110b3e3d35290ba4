"""Runs with real (tiny) videos and recorded masks, for the HTML report and its browser test.

Three runs over three samples: ``none`` (keeps everything: no strip), ``autogaze_gr0.2`` (gaze
masks per scale), ``random_match-autogaze_gr0.2`` (kept-token masks). Sample ``s1`` fails in the
AutoGaze run; sample ``s2``'s video is missing from disk, so its strips cannot be drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.pruning.selection import Selection, TokenGeometry
from harness.runner.masks import mask_record
from harness.runner.records import RecordWriter, write_json
from harness.video.writer import write_video

GEOMETRY = TokenGeometry(num_frames=8, height=64, width=96, patch_size=8, temporal_patch_size=2)


class FakeGaze:
    """The autogaze pruner's in-process ``_gaze``: per-scale masks over the whole frame."""

    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        self.scales = [32, 224]
        self.scale_masks = [torch.from_numpy(rng.random((8, 2, 2)) < 0.3),
                            torch.from_numpy(rng.random((8, 8, 12)) < 0.15)]


def make_video(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    frames = [np.full((64, 96, 3), rng.integers(40, 220, size=3), dtype=np.uint8) for _ in range(12)]
    return write_video(path, frames, fps=6)


def masks_for(pruner: str, seed: int) -> dict | None:
    frame_indices = np.arange(0, 12)[:8]
    if pruner == "autogaze":
        keep = torch.ones(GEOMETRY.grid_t, GEOMETRY.grid_h, GEOMETRY.grid_w, dtype=torch.bool)
        sel = Selection(GEOMETRY, keep, info={"_gaze": FakeGaze(seed)})
    elif pruner == "random":
        keep = torch.from_numpy(np.random.default_rng(seed).random((GEOMETRY.grid_t, 8, 12)) < 0.5)
        sel = Selection(GEOMETRY, keep)
    else:
        sel = Selection.keep_all(GEOMETRY)
    return mask_record(sel, frame_indices)


def write_runs(root: Path) -> Path:
    """The experiment folder described in the module docstring."""
    videos = [make_video(root / "videos" / f"v{i}.mp4", i) for i in range(2)]
    videos.append(root / "videos" / "gone.mp4")  # recorded, then moved away
    exp = root / "exp"
    for label, pruner in [("none", "none"), ("autogaze_gr0.2", "autogaze"),
                          ("random_match-autogaze_gr0.2", "random")]:
        run_dir = exp / "m" / label
        write_json(run_dir / "run.json", {"run_id": f"m/{label}", "experiment": "x"})
        with RecordWriter(run_dir / "records.jsonl") as w:
            for i, video in enumerate(videos):
                failed = pruner == "autogaze" and i == 1
                correct = (i + len(label)) % 2 == 0
                w.write({
                    "sample_id": f"s{i}", "run_id": f"m/{label}", "model": "m", "benchmark": "b",
                    "pruner": pruner, "pruner_label": label, "video": str(video),
                    "question": f"What colour is video {i}?", "options": ["red <b>", "green & blue"],
                    "answer": "A", "prompt": f"Q{i}", "output": None if failed else ("A" if correct else "B"),
                    "extracted": None if failed else ("A" if correct else "B"),
                    "correct": None if failed else correct, "counted": True,
                    "error": {"stage": "generate", "type": "RuntimeError", "message": "out of memory"}
                    if failed else None,
                    "splits": {"kind": "code" if i % 2 else "shape"},
                    "tokens": {"visual_before": 48, "visual_after": 20, "prompt": 60, "generated": 1},
                    "selection": {"kept": 20, "total": 48, "masks": masks_for(pruner, i)},
                    "latency": {"decode": 0.01, "gaze": 0.2, "vision": 0.02, "prefill": 0.03, "generate": 0.04,
                                "total": 0.3},
                    "frames": {"num": 8, "height": 64, "width": 96},
                })
    return exp

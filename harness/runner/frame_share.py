"""Decoded frames handed from one model entry to the next whose frame settings are equal.

Why: the runner runs model entries one after another (each model loads alone, to bound memory),
sample by sample. Two entries with the same ``frames`` settings decode the same frames, so the
first entry keeps what it decoded, up to ``cache.shared_frames_gb``, for the later ones.

Policy: an array is kept only if a later entry has equal frame settings; once the budget is
full nothing more is added (keep-first, not LRU: the next entry walks the samples in the same
order, and LRU would have evicted exactly the samples it asks for first); entries are dropped
once no later entry needs their settings. Keyed by the video path, its size and mtime, and the
frame settings (``chunk_size`` aside, which only changes how decoding is chunked).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from harness.runner.components import DecodedVideo
from harness.runner.config import FramesConfig


def frames_key(frames: FramesConfig) -> str:
    return json.dumps({k: v for k, v in frames.model_dump(mode="json").items() if k != "chunk_size"},
                      sort_keys=True)


class SharedFrames:
    """A byte-bounded store of ``DecodedVideo`` for the plans still to run."""

    def __init__(self, plan_frames: list[FramesConfig], max_bytes: int):
        self.keys = [frames_key(f) for f in plan_frames]
        self.max_bytes = int(max_bytes)
        self.plan = 0
        self.store: dict[tuple[Any, ...], DecodedVideo] = {}
        self.bytes = 0
        self.decoded = 0  # decodes done / avoided (for the perf benchmark)
        self.reused = 0

    def _key(self, path: str) -> tuple[Any, ...]:
        try:
            st = os.stat(path)
            stamp: tuple[Any, ...] = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = ()
        return (path, *stamp, self.keys[self.plan])

    def start_plan(self, index: int) -> None:
        """Enter plan ``index``: drop what no plan from here on can use."""
        self.plan = index
        wanted = set(self.keys[index:])
        for key in [k for k in self.store if k[-1] not in wanted]:
            self.bytes -= self.store.pop(key).frames.nbytes

    def get(self, path: str) -> DecodedVideo | None:
        video = self.store.get(self._key(path))
        if video is None:
            return None
        self.reused += 1
        return dataclasses.replace(video, seconds=0.0, shared=True)

    def put(self, path: str, video: DecodedVideo) -> None:
        self.decoded += 1
        key = self._key(path)
        if key in self.store or key[-1] not in self.keys[self.plan + 1:]:
            return
        if self.bytes + video.frames.nbytes > self.max_bytes:
            return
        self.store[key] = video
        self.bytes += video.frames.nbytes

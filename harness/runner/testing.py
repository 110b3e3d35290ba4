"""Fakes implementing the runner's component contracts, for tests of the runner and reports (no models)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchmarks.base import Sample
from harness.models.base import Generation, TokenCounts
from harness.pruning.selection import Selection, TokenGeometry
from harness.runner.components import Components, DecodedVideo
from harness.video.types import VideoError


class FakeBenchmark:
    name = "fake"
    split_keys = ["duration"]

    def __init__(self, n: int = 6, missing: tuple[int, ...] = ()):
        self.items = [
            Sample(id=f"s{i}", video_path="missing.mp4" if i in missing else f"v{i}.mp4",
                   question=f"q{i}", options=["a", "b", "c", "d"], answer="ABCD"[i % 4],
                   metadata={"duration": "short" if i % 2 else "long", "n": i})
            for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def samples(self, limit=None):
        yield from self.items[: limit if limit is not None else None]

    def build_prompt(self, sample, **kw):
        return f"Q: {sample.question}"

    def extract_answer(self, output, sample, convention=None):
        m = re.search(r"[A-D]", output)
        return m.group(0) if m else None


class FakePruner:
    def __init__(self, name: str, params: dict[str, Any]):
        self.name, self.params = name, params
        self.calls: list[int | None] = []
        # as the real classes declare them (Pruner.latency_stage): AutoGaze gazes, none does no work
        self.latency_stage = {"autogaze": "gaze", "none": None}.get(name, "prune")

    def select(self, frames, geometry, budget=None, fps=None):
        self.calls.append(budget)
        total = geometry.total_tokens
        if self.name == "none":
            n = total
        elif self.name == "autogaze":
            n = max(1, int(self.params.get("gazing_ratio", 0.5) * total))
        elif self.name == "boom":
            raise RuntimeError("pruner exploded")
        else:
            n = budget if budget is not None else total
        keep = torch.zeros(total, dtype=torch.bool)
        keep[:n] = True
        return Selection(geometry, keep.view(geometry.grid_t, geometry.grid_h, geometry.grid_w), pruner=self.name,
                         info={"budget": budget})


@dataclass
class FakeAdapter:
    fail_on: set[str] = field(default_factory=set)
    interrupt_after: int | None = None  # raise KeyboardInterrupt on this generate call (a kill)
    calls: list[tuple[str, int]] = field(default_factory=list)
    warm_ups: int = 0  # the runner's untimed warm-up calls, kept apart from the recorded ones
    batches: list[int] = field(default_factory=list)  # size of each generate_batch call
    batch_timings: bool = True  # False: generate_batch reports no per-request stage times (amortised)

    def token_geometry(self, t, h, w):
        return TokenGeometry(num_frames=t, height=h, width=w, patch_size=8)

    def generate(self, frames, selection, prompt, *, fps, max_new_tokens=16, prune_stage="post_vit"):
        if prompt == "warm-up":
            self.warm_ups += 1
            return Generation(text="A", tokens=TokenCounts(0, 0, 0, 1))
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append((prompt, selection.num_kept))
        if prompt.split()[-1] in self.fail_on:
            raise RuntimeError(f"adapter failed on {prompt}")
        # answer "A" when it sees more than half the tokens: accuracy then depends on the pruner
        letter = "A" if selection.num_kept * 2 > selection.geometry.total_tokens else "B"
        total = selection.geometry.total_tokens
        return Generation(text=f"The answer is {letter}.", tokens=TokenCounts(total, selection.num_kept,
                          selection.num_kept + 5, 3), timings={"vision": 0.01, "prefill": 0.02, "generate": 0.03},
                          peak_memory_mb=100.0)


    def generate_batch(self, items, *, max_new_tokens=16, prune_stage="post_vit"):
        """Like the vLLM backend's: one call for many requests; one bad request fails the whole call."""
        self.batches.append(len(items))
        bad = [it.prompt for it in items if it.prompt.split()[-1] in self.fail_on]
        if bad:
            raise RuntimeError(f"batch failed on {bad}")
        gens = [self.generate(it.frames, it.selection, it.prompt, fps=it.fps, max_new_tokens=max_new_tokens,
                              prune_stage=prune_stage) for it in items]
        if not self.batch_timings:
            for g in gens:
                g.timings = {}
        return gens


def fake_components(bench: FakeBenchmark, adapter: FakeAdapter, decoded: list[str] | None = None,
                    pruners: dict[str, FakePruner] | None = None) -> Components:
    decoded = decoded if decoded is not None else []
    pruners = pruners if pruners is not None else {}

    def load_frames(path, frames_cfg):
        if path == "missing.mp4":
            raise VideoError(path, "file not found")
        decoded.append(path)
        n = frames_cfg.num_frames or 4
        return DecodedVideo(frames=np.zeros((n, 32, 32, 3), np.uint8), indices=np.arange(n),
                            timestamps=np.arange(n) / 2.0, fps=2.0, source_fps=2.0, source_size=(32, 32),
                            decoder="fake", seconds=0.001)

    def build(name, params):
        p = FakePruner(name, params)
        pruners[f"{name}:{sorted(params.items())}"] = p
        return p

    def evidence(benchmark, selection, sample, video):
        return {"recall": selection.num_kept / selection.geometry.total_tokens,
                "hit": bool(selection.keep.flatten()[0])}

    return Components(load_benchmark=lambda cfg: bench, load_adapter=lambda m, b, d, s: adapter,
                      build_pruner=build, load_frames=load_frames, evidence_scores=evidence)

"""One lmms-eval document's work, free of lmms-eval imports: frames -> selection -> answer + timings.

Kept apart from ``model.py`` (which subclasses lmms-eval's model class) so the route and the
timing rules are testable without lmms-eval's venv, and so they stay the runner's: a
``prune_stage: native`` setting selects through the runner's own native route
(``harness.pruning.native_gaze.select_for_native_stage``), never ``select`` under the native name.
"""

from __future__ import annotations

import time
from typing import Any

from harness.pruning.native_gaze import select_for_native_stage as select_native
from harness.runner.components import load_frames
from harness.runner.sweep import Budget, resolve_budget


def answer_video(path: str, context: str, *, pruner: Any, adapter: Any, model_cfg: Any, frames_cfg: Any,
                 budget: Budget, max_new_tokens: int) -> tuple[Any, dict[str, float]]:
    """The adapter's generation for one video and prompt, and the seconds per stage (records' names)."""
    video = load_frames(path, frames_cfg)
    frames = video.frames
    geometry = adapter.token_geometry(*frames.shape[:3])
    resolved = resolve_budget(budget, geometry.total_tokens, None)
    start = time.perf_counter()
    if model_cfg.prune_stage == "native":
        selection = select_native(pruner, adapter, frames, geometry, resolved, video.fps)
    else:
        selection = pruner.select(frames, geometry, budget=resolved, fps=video.fps)
    select_s = time.perf_counter() - start
    gen = adapter.generate(frames, selection, context, fps=video.fps, max_new_tokens=max_new_tokens,
                           prune_stage=model_cfg.prune_stage)
    ours = {"decode": video.seconds, **selection_timing(pruner, select_s)}
    return gen, merge_timings(ours, gen.timings)


def selection_timing(pruner: Any, seconds: float) -> dict[str, float]:
    """The selection time under the stage the pruner's class names (``gaze`` for AutoGaze, ``prune``
    for a baseline, none for ``none``), as the runner records it (harness/stages.py)."""
    stage = getattr(pruner, "latency_stage", "prune")
    return {} if stage is None else {stage: seconds}


def merge_timings(ours: dict[str, float], adapter: dict[str, float] | None) -> dict[str, float]:
    """Our stage times plus the adapter's. A stage both timed (``gaze``: AutoGaze's selection here and
    the adapter's own gazing, e.g. NVILA's) adds up, as the runner's records do; any other stage
    is the adapter's."""
    out = dict(ours)
    for name, seconds in (adapter or {}).items():
        out[name] = out.get(name, 0.0) + float(seconds) if name == "gaze" else float(seconds)
    return out

"""The lmms-eval wrapper's per-document work (harness/backends/lmms_eval/answer.py) follows the
runner: ``prune_stage: native`` goes through the runner's native route (``select_native``), and a
``gaze`` time both sides measured adds up rather than the adapter's overwriting ours. Fakes only
(no lmms-eval import), so these run in the main venv in well under a second."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from harness.backends.lmms_eval import answer
from harness.models.base import Generation, TokenCounts
from harness.runner.components import DecodedVideo
from harness.runner.sweep import Budget
from harness.runner.testing import FakeAdapter, FakePruner


class NativeAwarePruner(FakePruner):
    """Like AutoGaze: a ``select_native`` beside ``select``, recording which one ran."""

    def __init__(self) -> None:
        super().__init__("autogaze", {"gazing_ratio": 0.5})
        self.routes: list[str] = []

    def select(self, frames, geometry, budget=None, fps=None):
        self.routes.append("select")
        return super().select(frames, geometry, budget=budget, fps=fps)

    def select_native(self, frames, target, geometry, fps=None):
        self.routes.append(f"select_native:{target}")
        return super().select(frames, geometry, fps=fps)


class GazingAdapter(FakeAdapter):
    """An adapter that times its own gazing too (as NVILA's does), and has a native target."""

    def native_target(self, t, h, w):
        return "vit"

    def generate(self, frames, selection, prompt, *, fps, max_new_tokens=16, prune_stage="post_vit"):
        total = selection.geometry.total_tokens
        return Generation(text="A", tokens=TokenCounts(total, selection.num_kept, selection.num_kept + 5, 1),
                          timings={"gaze": 2.0, "prefill": 0.5})


@pytest.fixture(autouse=True)
def fake_frames(monkeypatch):
    def load(path, frames_cfg):
        return DecodedVideo(frames=np.zeros((4, 32, 32, 3), np.uint8), indices=np.arange(4),
                            timestamps=np.arange(4) / 2.0, fps=2.0, source_fps=2.0, source_size=(32, 32),
                            decoder="fake", seconds=0.25)
    monkeypatch.setattr(answer, "load_frames", load)


def run(pruner, adapter, stage):
    return answer.answer_video("v.mp4", "Q", pruner=pruner, adapter=adapter,
                               model_cfg=SimpleNamespace(prune_stage=stage), frames_cfg=None,
                               budget=Budget("none"), max_new_tokens=4)


@pytest.mark.parametrize(("stage", "route"), [("native", "select_native:vit"), ("post_vit", "select")])
def test_native_stage_runs_the_native_route(stage, route):
    pruner = NativeAwarePruner()
    run(pruner, GazingAdapter(), stage)
    assert pruner.routes == [route]


def test_native_stage_without_a_native_target_is_refused_as_the_runner_does():
    with pytest.raises(ValueError, match="prune_stage 'native' is not available"):
        run(NativeAwarePruner(), FakeAdapter(), "native")


def test_adapter_gaze_time_adds_to_ours(monkeypatch):
    clock = iter([10.0, 11.5])  # our selection: 1.5 s
    monkeypatch.setattr(answer.time, "perf_counter", lambda: next(clock))
    _, timings = run(NativeAwarePruner(), GazingAdapter(), "post_vit")
    assert timings == {"decode": 0.25, "gaze": 3.5, "prefill": 0.5}


def test_merge_timings_only_adds_gaze():
    assert answer.merge_timings({"gaze": 1.0, "decode": 1.0}, {"gaze": 1.0, "decode": 4.0, "vision": 2.0}) == {
        "gaze": 2.0, "decode": 4.0, "vision": 2.0}
    assert answer.merge_timings({"prune": 1.0}, None) == {"prune": 1.0}

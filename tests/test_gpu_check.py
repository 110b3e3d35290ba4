"""``python -m harness.perf.gpu_check`` in its CPU mode (what CI can run): every step runs and passes,
and a broken device loop makes the gaze step fail."""

from __future__ import annotations

import json

import pytest

from harness.perf import gpu_check

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = ["gaze_parity", "gaze_speed", "adapters_keep_all", "gazed_vit", "e2e"]


def _run(capsys, steps: list[str]) -> tuple[int, dict]:
    rc = gpu_check.main(["--cpu", "--steps", ",".join(steps)])
    return rc, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_cpu_mode_runs_every_step(capsys):
    rc, result = _run(capsys, STEPS)
    assert result["mode"] == "cpu-tiny" and result["device"] == "cpu"
    assert list(result["steps"]) == STEPS
    assert rc == 0 and result["failed"] == [], result
    for name, step in result["steps"].items():
        assert step["status"] == "ok" or step["status"].startswith("skipped"), (name, step["status"])
    speed = result["steps"]["gaze_speed"]["float32"]
    assert set(speed["ms_per_clip"]) == {"b1_r0.3", "b2_r0.3"}
    assert all(v > 0 for v in speed["share_of_bound"].values())
    assert all(f["ok"] for f in result["steps"]["adapters_keep_all"]["families"].values())


def test_a_broken_device_loop_fails_the_gaze_step(capsys, monkeypatch, parity_dir):
    from harness.gaze import generate

    real = generate.select_step_torch

    def broken(*args, **kwargs):
        toks, taken, unfinished, stop = real(*args, **kwargs)
        return toks.flip(1), taken, unfinished, stop  # right ids, wrong order

    monkeypatch.setattr(generate, "select_step_torch", broken)
    rc, result = _run(capsys, ["gaze_parity"])
    assert rc == 1 and result["failed"] == ["gaze_parity"]
    assert min(result["steps"]["gaze_parity"]["share_equal"]["float32"].values()) < 1.0

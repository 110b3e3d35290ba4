"""The video benchmark's contract: runs end to end on a tiny video and ends with one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(180)
def test_perf_video_runs_and_prints_json_last(tmp_path):
    env = {**os.environ, "HARNESS_PERF_CACHE": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.perf.video", "--width", "96", "--height", "64", "--frames", "40",
         "--samples", "8", "--size", "32", "--repeats", "1", "--backends", "pyav"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(tmp_path.glob("synthetic_96x64_40f_*.mp4")), "video not cached where HARNESS_PERF_CACHE points"
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("peak_rss_mb", "fps", "ratio_to_bare_decode", "cpu_ratio_to_bare_decode", "per_decoder"):
        assert summary[key] is not None, key
    assert summary["out_hw"] == [21, 32] and summary["frames"] == 40
    seq = summary["per_decoder"]["pyav"]["sequential_40"]
    assert seq["decoder"] == "pyav" and seq["frames"] == 40
    assert summary["per_decoder"]["pyav"]["sampled_8"]["frames"] == 8
    assert "pyav and bare frames identical: True" in proc.stdout  # same pixels as the bare decode

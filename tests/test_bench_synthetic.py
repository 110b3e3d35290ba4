"""Synthetic needle benchmark: determinism, where the needle is, caching, evidence metrics."""

from __future__ import annotations

import dataclasses
import json
import math

import av
import numpy as np
import pytest
import torch

from benchmarks.base import Evidence
from benchmarks.evidence import evidence_hit, evidence_mask, evidence_recall
from benchmarks.registry import get_benchmark
from benchmarks.synthetic_needle import NeedleConfig, SyntheticNeedle, plan_video, video_frames
from harness.pruning.selection import Selection, TokenGeometry

SMALL = {"num_videos": 4, "width": 96, "height": 64, "num_frames": 12, "needle_frames": 3, "needle_frac": 0.3}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return SyntheticNeedle(cache_dir=tmp_path_factory.mktemp("cache"), **SMALL)


def _decode(path: str) -> np.ndarray:
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_default_needs_no_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    b = get_benchmark("synthetic_needle")
    assert b.config == NeedleConfig() and (b.config.width, b.config.height, b.config.num_frames) == (
        448,
        448,
        64,
    )
    # nothing is generated until first use
    assert not (tmp_path / "synthetic_needle").exists()
    assert (
        get_benchmark("synthetic-needle", num_videos=2, width=64, height=64, num_frames=8).config.num_videos
        == 2
    )


def test_samples_are_well_formed(bench):
    samples = list(bench.samples())
    assert len(samples) == 4 and [s.metadata["kind"] for s in samples] == ["code", "shape", "code", "shape"]
    for s in samples:
        assert len(s.options) == 4 == len(set(s.options))
        assert s.options[ord(s.answer) - 65] == s.metadata["answer_text"]
        (ev,) = s.evidence
        assert ev.frame_end - ev.frame_start == 3 and 0 <= ev.frame_start <= 12 - 3
        x0, y0, x1, y1 = ev.box
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 64
        assert "A. " + s.options[0] in bench.build_prompt(s)
        if s.metadata["kind"] == "code":  # distractors one character away: the code must be read
            for o in s.options:
                assert sum(a != b for a, b in zip(o, s.metadata["answer_text"])) <= 1


def test_needle_only_in_its_frames_and_box():
    cfg = NeedleConfig(**SMALL)
    for i in range(2):
        plan, rng = plan_video(cfg, i)
        with_needle = np.stack(list(video_frames(cfg, plan, rng)))
        _, rng2 = plan_video(cfg, i)
        without = np.stack(list(video_frames(cfg, dataclasses.replace(plan, start=10**6), rng2)))
        diff = np.any(with_needle != without, axis=-1)  # (T, H, W)
        frames = np.flatnonzero(diff.any(axis=(1, 2)))
        assert frames.tolist() == list(range(plan.start, plan.start + cfg.needle_frames))
        ys, xs = np.nonzero(diff[plan.start])
        x0, y0, x1, y1 = plan.box
        assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
        # the background moves: consecutive frames differ outside the box too
        assert np.any(without[1] != without[0])


def test_video_file_shows_the_needle(bench):
    s = next(bench.samples())
    frames = _decode(s.video_path)
    assert frames.shape == (12, 64, 96, 3)
    (ev,) = s.evidence
    x0, y0, x1, y1 = ev.box
    inside = frames[:, y0:y1, x0:x1].astype(float)
    # the code plate is white with black glyphs: far from the textured background
    plate_white = (inside > 200).all(axis=-1).mean(axis=(1, 2))
    assert plate_white[ev.frame_start : ev.frame_end].min() > 0.4
    assert np.delete(plate_white, range(ev.frame_start, ev.frame_end)).max() < 0.2


def test_deterministic_and_cached(tmp_path, bench):
    again = SyntheticNeedle(cache_dir=tmp_path, **SMALL)
    a = json.loads((bench.directory / "samples.json").read_text())
    b = json.loads((again.directory / "samples.json").read_text())
    assert a == b and bench.directory.name == again.directory.name
    first = next(again.samples())
    assert np.array_equal(_decode(first.video_path)[:2], _decode(next(bench.samples()).video_path)[:2])
    stamp = (again.directory / "samples.json").stat().st_mtime_ns
    assert SyntheticNeedle(cache_dir=tmp_path, **SMALL).directory == again.directory
    assert (again.directory / "samples.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    other = SyntheticNeedle(cache_dir=tmp_path, **{**SMALL, "seed": 1})
    assert other.config.key() != again.config.key()


def test_4k_long_config_plans_and_streams():
    cfg = NeedleConfig(num_videos=1, width=3840, height=2160, num_frames=1200, needle_frac=0.04)
    plan, rng = plan_video(cfg, 0)
    x0, y0, x1, y1 = plan.box
    assert x1 <= 3840 and y1 <= 2160 and (x1 - x0) * (y1 - y0) < 0.01 * 3840 * 2160  # a small region
    gen = video_frames(cfg, plan, rng)
    assert next(gen).shape == (2160, 3840, 3)  # frames are produced one at a time


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="even"):
        NeedleConfig(width=449)
    with pytest.raises(ValueError, match="needle_frames"):
        NeedleConfig(num_frames=2, needle_frames=4)
    with pytest.raises(ValueError, match="kinds"):
        NeedleConfig(kinds=("audio",))


def test_scoring_by_kind(bench):
    samples = list(bench.samples())
    outputs = {s.id: s.answer for s in samples}
    outputs[samples[1].id] = "nothing"
    table = bench.aggregate(bench.score(outputs))
    assert table.iloc[0]["accuracy"] == pytest.approx(75.0)
    shape = table[(table["split"] == "kind") & (table["group"] == "shape")].iloc[0]
    assert shape["correct"] == 1 and shape["unanswered"] == 1


# -- evidence metrics on hand-made grids ---------------------------------------------------
GEO = TokenGeometry(num_frames=8, height=64, width=64, patch_size=16, temporal_patch_size=2)  # grid (4, 4, 4)
EV = [Evidence(frame_start=3, frame_end=5, box=(20, 0, 40, 10))]


def test_evidence_mask_by_hand():
    mask = evidence_mask(EV, GEO)
    expected = torch.zeros(4, 4, 4, dtype=torch.bool)
    # frames 3 and 4 lie in groups 1 (frames 2-3) and 2 (frames 4-5); x 20-40 -> cols 1, 2; y 0-10 -> row 0
    expected[1:3, 0, 1:3] = True
    assert torch.equal(mask, expected)
    # a box exactly on token borders covers exactly that token (end exclusive)
    exact = evidence_mask([Evidence(0, 1, (16, 16, 32, 32))], GEO)
    assert exact.sum() == 1 and exact[0, 1, 1]


def test_recall_and_hit_by_hand():
    keep = torch.zeros(4, 4, 4, dtype=torch.bool)
    keep[0] = True  # lots kept, none of it evidence
    assert evidence_recall(keep, EV, GEO) == 0.0 and not evidence_hit(keep, EV, GEO)
    keep[1, 0, 1] = keep[2, 0, 2] = True
    assert evidence_recall(keep, EV, GEO) == 0.5 and evidence_hit(keep, EV, GEO)
    sel = Selection(geometry=GEO, keep=keep, pruner="hand")
    assert evidence_recall(sel, EV) == 0.5 and evidence_hit(sel, EV)
    assert evidence_recall(Selection.keep_all(GEO), EV) == 1.0
    with pytest.raises(ValueError, match="does not match the geometry grid"):
        evidence_recall(torch.ones(4, 4, 3, dtype=torch.bool), EV, GEO)


def test_frame_mapping_and_scaling():
    # the model saw source frames 0, 10, ..., 70 resized from 128x128 to 64x64
    frames = np.arange(8) * 10
    ev = [Evidence(frame_start=20, frame_end=31, box=(40, 0, 80, 20))]  # source frames 20..30, source px
    mask = evidence_mask(ev, GEO, frame_indices=frames, source_size=(128, 128))
    expected = torch.zeros(4, 4, 4, dtype=torch.bool)
    expected[1, 0, 1:3] = True  # model frames 2 (src 20) and 3 (src 30) -> group 1; box /2 -> x 20-40
    assert torch.equal(mask, expected)
    # evidence between sampled frames: nothing to recall
    missed = [Evidence(frame_start=11, frame_end=19, box=(0, 0, 10, 10))]
    assert math.isnan(
        evidence_recall(Selection.keep_all(GEO), missed, frame_indices=frames, source_size=(128, 128))
    )
    assert not evidence_hit(Selection.keep_all(GEO), missed, frame_indices=frames, source_size=(128, 128))


def test_benchmark_evidence_scores(bench):
    s = next(bench.samples())
    geo = TokenGeometry(num_frames=12, height=64, width=96, patch_size=8)
    scores = bench.evidence_scores(s, Selection.keep_all(geo))
    assert scores == {"evidence_recall": 1.0, "evidence_hit": True}


def test_score_output_for_runner_records(bench):
    s = next(bench.samples())
    wrong = next(letter for letter in "ABCD" if letter != s.answer)
    assert bench.score_output(s, f"The answer is ({s.answer}).") == {
        "pred": s.answer, "status": "ok", "counted": True, "correct": True, "reason": ""
    }  # fmt: skip
    assert bench.score_output(s, wrong)["correct"] is False
    assert bench.score_output(s, None)["status"] == "no_prediction"
    assert bench.score_output(s, "no idea", "videomme-official")["counted"] is False

"""Work reused by a sweep through the runner: cached gazes and shared decoded frames change no record."""

from __future__ import annotations

import pytest

from harness.perf.sweep import comparable, run_records, sweep_config
from harness.runner.config import load_config
from harness.runner.engine import Evaluator
from harness.runner.records import read_run_records
from harness.runner.sharding import ShardInfo
from harness.runner.testing import FakeAdapter, FakeBenchmark, fake_components

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(cfg):
    ev = Evaluator(cfg, shard_info=ShardInfo(), progress=False)
    ev.run()
    return ev


@pytest.mark.parametrize("stage", ["post_vit", "native"])
def test_cached_and_uncached_runs_give_identical_records(tmp_path, stage):
    """Off, then on (every gaze computed and stored), then on again (every gaze read back)."""
    records, statuses = [], []
    for name, on in (("off", False), ("miss", True), ("hit", True)):
        cfg = sweep_config(tmp_path / name, samples=1, frames=4, size=112, families=("qwen2_5_vl",),
                           ratios=(0.2, 0.5), baselines=("random",), gaze_cache=on, cache_dir=tmp_path / "cache",
                           clip_len=4)
        cfg.model.prune_stage = stage
        cfg = load_config(data=cfg.to_dict())
        _run(cfg)
        recs = run_records(tmp_path / name)
        assert recs and all(r["error"] is None for r in recs.values()), [r["error"] for r in recs.values()]
        records.append(recs)
        gazing = [r for r in recs.values() if r["pruner"] == "autogaze"]
        statuses.append({r["gaze_cache"] for r in gazing})
        assert all(r["gaze_cache"] is None for r in recs.values() if r["pruner"] != "autogaze")
        for r in gazing:  # a cached sample's gaze time is reported apart, and still counted in the total
            lat = r["latency"]
            assert ("gaze_cached" in lat) == (name == "hit") and ("gaze" in lat) == (name != "hit")
            assert lat["total"] >= lat.get("gaze_cached", 0.0)
    assert statuses == [{"off"}, {"miss"}, {"hit"}]
    off, miss, hit = records
    assert off.keys() == miss.keys() == hit.keys()
    for key in off:
        assert comparable(off[key]) == comparable(miss[key]) == comparable(hit[key]), key
    if stage == "native":
        assert all(r["selection"]["info"].get("route") == "native" for r in hit.values() if r["pruner"] == "autogaze")


def test_comparable_records_can_differ(tmp_path):
    """The equality above can fail: a changed answer or kept count is not hidden by ``comparable``."""
    rec = {"output": "A", "selection": {"kept": 3, "info": {"seconds": 1.0}}, "latency": {"gaze": 1.0},
           "gaze_cache": "hit"}
    same = {**rec, "selection": {"kept": 3, "info": {"seconds": 2.0}}, "latency": {"gaze_cached": 0.1},
            "gaze_cache": "miss"}
    assert comparable(rec) == comparable(same)
    assert comparable(rec) != comparable({**rec, "output": "B"})
    assert comparable(rec) != comparable({**rec, "selection": {"kept": 4, "info": {"seconds": 1.0}}})


def _two_models(tmp_path, second_frames=None, shared_gb=2.0):
    entry = {"name": "m2", "path": "/m2"}
    if second_frames:
        entry["frames"] = second_frames
    return load_config(data={
        "name": "t", "output_dir": str(tmp_path / "out"),
        "model": {"family": "qwen2_5_vl", "path": "/m", "name": "m1"},
        "models": [{"name": "m1"}, entry],
        "benchmark": {"name": "fake"}, "frames": {"num_frames": 4},
        "pruners": [{"name": "none"}, {"name": "random", "params": {"ratio": 0.5}}],
        "cache": {"shared_frames_gb": shared_gb},
    })


@pytest.mark.parametrize(("second_frames", "shared_gb", "decodes"), [
    (None, 2.0, 3),  # equal frame settings: decoded once, for both models
    ({"chunk_size": 2}, 2.0, 3),  # chunking does not change the frames
    ({"num_frames": 2}, 2.0, 6),  # other frames: decoded again
    (None, 0.0, 6),  # sharing off
    (None, 2 * 4 * 32 * 32 * 3 / 2**30, 4),  # room for two samples' frames: the first two are shared
])
def test_frames_decoded_once_per_frame_setting(tmp_path, second_frames, shared_gb, decodes):
    decoded: list[str] = []
    Evaluator(_two_models(tmp_path, second_frames, shared_gb), fake_components(FakeBenchmark(3), FakeAdapter(), decoded),
              ShardInfo(), progress=False).run()
    assert len(decoded) == decodes
    first = read_run_records(tmp_path / "out" / "m1" / "none")
    second = read_run_records(tmp_path / "out" / "m2" / "none")
    assert not any(r["frames_shared"] for r in first)
    assert sum(r["frames_shared"] for r in second) == 6 - decodes
    for a, b in zip(first, second, strict=True):  # the shared frames are the same frames
        assert a["frames"] == b["frames"] or second_frames


def _rank(out: str, cache_dir: str, rank: int, start) -> None:
    """One torchrun-like rank: the real AutoGaze pruner, fake model and videos (every video the same)."""
    import numpy as np

    from harness.runner.components import Components, DecodedVideo, build_pruner

    def load_frames(path, frames_cfg):
        frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        return DecodedVideo(frames=frames, indices=np.arange(4), timestamps=np.arange(4) / 2.0, fps=2.0,
                            source_fps=2.0, source_size=(32, 32), decoder="fake", seconds=0.001)

    cfg = load_config(data={
        "name": "t", "output_dir": out, "model": {"family": "qwen2_5_vl", "path": "/m", "name": "fake"},
        "benchmark": {"name": "fake"}, "frames": {"num_frames": 4},
        "pruners": [{"name": "autogaze", "params": {"model": "tiny", "task_loss_requirement": None, "clip_len": 4},
                     "grid": {"gazing_ratio": [0.2, 0.5]}}],
        "cache": {"dir": cache_dir},
    })
    comps = Components(load_benchmark=lambda c: FakeBenchmark(4), load_adapter=lambda m, b, d, s: FakeAdapter(),
                       build_pruner=build_pruner, load_frames=load_frames,
                       evidence_scores=lambda *a: None)
    start.wait()
    Evaluator(cfg, comps, ShardInfo(rank=rank, world_size=2), progress=False).run()


def test_sharded_ranks_fill_one_cache_together(tmp_path):
    """Two ranks gaze the same frames at once into one cache: every entry verifies, both ranks'
    records agree, and a rerun reads every gaze back."""
    import multiprocessing as mp

    from harness.gaze import cache

    ctx = mp.get_context("fork")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_rank, args=(str(tmp_path / "out"), str(tmp_path / "cache"), r, start))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    entries = cache.entries(tmp_path / "cache")
    assert len(entries) == 2  # one per gazing_ratio: the same frames everywhere
    for e in entries:
        cache.read_entry(e.path, e.path.stem)  # verifies
    assert not [p for p in (tmp_path / "cache").rglob("*.tmp")]
    for label in ("autogaze_gr0.2", "autogaze_gr0.5"):
        recs = read_run_records(tmp_path / "out" / "fake" / label)
        assert sorted(r["sample_id"] for r in recs) == ["s0", "s1", "s2", "s3"]
        assert {r["rank"] for r in recs} == {0, 1}
        selections = {str(comparable(r)["selection"]) for r in recs}
        assert len(selections) == 1  # the same gaze on every sample, whichever rank made it
        assert {r["gaze_cache"] for r in recs} <= {"hit", "miss"} and "hit" in {r["gaze_cache"] for r in recs}
    start = ctx.Barrier(1)
    p = ctx.Process(target=_rank, args=(str(tmp_path / "again"), str(tmp_path / "cache"), 0, start))
    p.start()
    p.join(120)
    assert p.exitcode == 0
    again = [r for label in ("autogaze_gr0.2", "autogaze_gr0.5")
             for r in read_run_records(tmp_path / "again" / "fake" / label)]
    assert len(again) == 4 and {r["gaze_cache"] for r in again} == {"hit"}

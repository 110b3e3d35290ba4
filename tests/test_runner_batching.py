"""generation.batch_size: the runner batches generation through adapter.generate_batch without changing records."""

from __future__ import annotations

import types
import weakref

import pytest

from harness.runner.config import ConfigError, load_config
from harness.runner.engine import Evaluator
from harness.runner.records import read_run_records
from harness.runner.sharding import ShardInfo
from harness.runner.testing import FakeAdapter, FakeBenchmark, fake_components

LABELS = ["none", "autogaze_gr0.25", "autogaze_gr0.75", "random_match-autogaze_gr0.25",
          "random_match-autogaze_gr0.75"]
TIMING_KEYS = {"latency", "finished", "latency_batched", "latency_amortized"}


def _cfg(out, batch_size=1, **over):
    data = {
        "name": "t", "output_dir": str(out),
        "model": {"family": "qwen2_5_vl", "path": "/m", "name": "fake"},
        "benchmark": {"name": "fake"},
        "frames": {"num_frames": 4},
        "generation": {"batch_size": batch_size},
        "pruners": [{"name": "none"}, {"name": "autogaze", "grid": {"gazing_ratio": [0.25, 0.75]}},
                    {"name": "random", "budget": "matched"}],
    }
    data.update(over)
    return load_config(data=data)


def _run(out, adapter, batch_size, bench=None, **kw):
    comps = fake_components(bench or FakeBenchmark(5, missing=(2,)), adapter, **kw)
    return Evaluator(_cfg(out, batch_size), comps, ShardInfo(), progress=False).run()


def _records(out, label):
    return read_run_records(out / "fake" / label)


def _untimed(recs):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in recs]


def test_batched_records_equal_one_by_one_records(tmp_path):
    """Same records, same order per run file, whether requests go one by one or 4 per call."""
    one, four = FakeAdapter(fail_on={"q3"}), FakeAdapter(fail_on={"q3"})
    with pytest.warns(RuntimeWarning, match="retrying each request alone"):  # the batch holding q3
        r4 = _run(tmp_path / "b4", four, 4)
    r1 = _run(tmp_path / "b1", one, 1)
    assert (r1.written, r1.errors) == (r4.written, r4.errors) == (25, 10)  # s2: no video, s3: adapter fails
    assert one.batches == []  # batch_size 1 never calls generate_batch
    assert four.batches[0] == 4 and max(four.batches) == 4 and len(four.batches) > 1
    for label in LABELS:
        a, b = _records(tmp_path / "b1", label), _records(tmp_path / "b4", label)
        assert [r["sample_id"] for r in b] == ["s0", "s1", "s2", "s3", "s4"]
        assert _untimed(a) == _untimed(b), label
        for ra, rb in zip(a, b):  # same stage times reported per request (the fake's are fixed)
            for stage in ("vision", "prefill", "generate"):
                assert ra["latency"].get(stage) == rb["latency"].get(stage)
    s0 = _records(tmp_path / "b4", "none")[0]
    assert s0["latency_batched"] == 4 and "latency_amortized" not in s0
    assert "latency_batched" not in _records(tmp_path / "b1", "none")[0]


def test_batches_cross_runs_and_samples_with_bounded_frames(tmp_path):
    """3 requests per call although a sample has 5 runs; at most 3 samples' frames alive per call."""
    alive: list[weakref.ref] = []
    seen: list[int] = []

    class Watch(FakeAdapter):
        def generate_batch(self, items, **kw):
            seen.append(sum(ref() is not None for ref in alive))
            return super().generate_batch(items, **kw)

    adapter = Watch()
    comps = fake_components(FakeBenchmark(6), adapter)
    real_load = comps.load_frames

    def load_frames(path, cfg):
        video = real_load(path, cfg)
        alive.append(weakref.ref(video.frames))
        return video

    comps.load_frames = load_frames
    result = Evaluator(_cfg(tmp_path, 3), comps, ShardInfo(), progress=False).run()
    assert result.written == 30 and result.errors == 0
    assert adapter.batches == [3] * 10  # 30 requests: batches span the runs of a sample and two samples
    assert len(adapter.calls) == 30 and max(seen) <= 3 and max(seen) >= 2


def test_resume_after_a_kill_inside_a_batch_redoes_nothing(tmp_path):
    out = tmp_path / "out"
    killer = FakeAdapter(interrupt_after=7)  # dies in the second batch (requests 5..8)
    with pytest.raises(KeyboardInterrupt):
        _run(out, killer, 4, bench=FakeBenchmark(4))
    written = {label: [r["sample_id"] for r in _records(out, label)] for label in LABELS}
    assert sum(map(len, written.values())) == 4  # only the first batch reached disk
    adapter = FakeAdapter()
    result = _run(out, adapter, 3, bench=FakeBenchmark(4))  # another batch size resumes the same runs
    assert result.written == 20 - 4 and result.skipped == 4 and len(adapter.calls) == 16
    for label in LABELS:
        ids = [r["sample_id"] for r in _records(out, label)]
        assert sorted(ids) == ["s0", "s1", "s2", "s3"], label
    again = FakeAdapter()
    assert _run(out, again, 4, bench=FakeBenchmark(4)).written == 0 and again.calls == again.batches == []


def test_a_failing_request_in_a_batch_fails_alone(tmp_path):
    adapter = FakeAdapter(fail_on={"q1"})
    with pytest.warns(RuntimeWarning, match=r"generate_batch failed on a batch of 4 .*Q: q1"):
        _run(tmp_path, adapter, 4, bench=FakeBenchmark(3))
    for label in LABELS:
        recs = {r["sample_id"]: r for r in _records(tmp_path, label)}
        assert recs["s1"]["error"]["stage"] == "generate" and recs["s1"]["error"]["type"] == "RuntimeError"
        assert "adapter failed on Q: q1" in recs["s1"]["error"]["message"]
        assert recs["s0"]["error"] is None and recs["s2"]["error"] is None
        assert recs["s0"]["output"].startswith("The answer is") and recs["s2"]["extracted"] in ("A", "B")
        assert recs["s1"]["selection"] is not None  # pruning happened; only its generation failed
    # 15 requests in calls of 4: the two calls holding q1 failed whole and each request was retried
    # alone; every request reached the model exactly once
    assert adapter.batches == [4, 4, 4, 3]
    prompts = [c[0] for c in adapter.calls]
    assert [prompts.count(f"Q: q{i}") for i in range(3)] == [5, 5, 5]


def test_matched_baselines_get_autogaze_kept_count_when_batched(tmp_path):
    pruners: dict = {}
    _run(tmp_path, FakeAdapter(), 4, bench=FakeBenchmark(3), pruners=pruners)
    for ratio in (0.25, 0.75):
        gaze = {r["sample_id"]: r["selection"]["kept"] for r in _records(tmp_path, f"autogaze_gr{ratio}")}
        matched = {r["sample_id"]: r["selection"]["kept"]
                   for r in _records(tmp_path, f"random_match-autogaze_gr{ratio}")}
        assert gaze == matched == {f"s{i}": int(ratio * 64) for i in range(3)}
    random = next(p for key, p in pruners.items() if key.startswith("random"))
    assert random.calls[1:] == [16, 48] * 3  # budgets passed to the baseline (after the warm-up call)


def test_latency_is_amortised_only_when_the_backend_times_no_request(tmp_path):
    _run(tmp_path, FakeAdapter(batch_timings=False), 4, bench=FakeBenchmark(4))
    for label in LABELS:
        for rec in _records(tmp_path, label):
            lat = rec["latency"]
            assert rec["latency_batched"] == 4 and rec["latency_amortized"] is True
            assert "vision" not in lat and "prefill" not in lat and lat["generate"] >= 0
            selected = lat.get("gaze", 0.0) + lat.get("prune", 0.0)  # the pruner's stage, if it had one
            assert lat["total"] == pytest.approx(lat["decode"] + selected + lat["generate"])


def test_adapter_without_generate_batch_runs_one_by_one(tmp_path):
    fake = FakeAdapter()
    plain = types.SimpleNamespace(token_geometry=fake.token_geometry, generate=fake.generate)
    with pytest.warns(RuntimeWarning, match="batch_size=4 ignored .* no generate_batch"):
        result = _run(tmp_path, plain, 4, bench=FakeBenchmark(2))
    assert result.written == 10 and len(fake.calls) == 10
    assert all("latency_batched" not in r for r in _records(tmp_path, "none"))


@pytest.mark.parametrize("bad", [0, -2, 2.5, "4", True, None])
def test_batch_size_is_validated(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"generation\.batch_size: Input should be (a valid integer|greater than or equal to 1)"):
        _cfg(tmp_path, bad)


def test_batch_size_defaults_to_one(tmp_path):
    cfg = load_config(data={"output_dir": str(tmp_path), "benchmark": {"name": "fake"}})
    assert cfg.generation.batch_size == 1
    assert _cfg(tmp_path, 8, models=[{"name": "a", "generation": {"batch_size": 2}}]).plans()[0].generation.batch_size == 2


def test_pruner_only_runs_write_at_once_and_never_generate(tmp_path):
    out = tmp_path / "out"
    adapter = FakeAdapter()
    comps = fake_components(FakeBenchmark(3), adapter)
    result = Evaluator(_cfg(out, 4, generation={"enabled": False, "batch_size": 4}), comps, ShardInfo(),
                       progress=False).run()
    assert result.written == 15 and adapter.calls == adapter.batches == []
    assert [r["sample_id"] for r in _records(out, "none")] == ["s0", "s1", "s2"]
    assert all("latency_batched" not in r and r["output"] is None for r in _records(out, "autogaze_gr0.25"))


def test_the_sample_file_goes_only_to_adapters_that_want_it():
    """``video_path=`` (NVILA's ``video_input: source``) reaches an adapter only when it asks for it."""
    import numpy as np

    from harness.models.request import BatchItem
    from harness.runner.batching import generate_one

    class Seen:
        wants_video_path = False

        def __init__(self):
            self.kwargs = None

        def generate(self, frames, selection, prompt, **kwargs):
            self.kwargs = kwargs
            raise RuntimeError("stop")

    item = BatchItem(np.zeros((1, 2, 2, 3), np.uint8), None, "Q", 1.0, "/data/v.mp4")
    plain, wanting = Seen(), Seen()
    wanting.wants_video_path = True
    generate_one(plain, item, max_new_tokens=1, prune_stage="post_vit")
    generate_one(wanting, item, max_new_tokens=1, prune_stage="post_vit")
    assert "video_path" not in plain.kwargs and wanting.kwargs["video_path"] == "/data/v.mp4"

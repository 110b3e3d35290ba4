"""The evaluation loop with fake components: records, decode-once, matched budgets, errors, resume, sharding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.runner.config import ConfigError, load_config
from harness.runner.engine import Evaluator
from harness.runner.records import RecordWriter, iter_records, read_run_records, records_filename
from harness.runner.sharding import ShardInfo, device_for_rank, shard, shard_from_env
from harness.runner.testing import FakeAdapter, FakeBenchmark, fake_components

REPO = Path(__file__).resolve().parents[1]


def _cfg(tmp_path, **over):
    data = {
        "name": "t", "output_dir": str(tmp_path / "out"),
        "model": {"family": "qwen2_5_vl", "path": "/m", "name": "fake"},
        "benchmark": {"name": "fake", "limit": over.pop("limit", None)},
        "frames": {"num_frames": 4},
        "pruners": [{"name": "none"}, {"name": "autogaze", "grid": {"gazing_ratio": [0.25, 0.75]}},
                    {"name": "random", "budget": "matched"}],
    }
    data.update(over)
    return load_config(data=data)


def _records(tmp_path, label):
    return read_run_records(tmp_path / "out" / "fake" / label)


def test_records_decode_once_and_matched_budgets(tmp_path):
    bench, adapter, decoded, pruners = FakeBenchmark(4), FakeAdapter(), [], {}
    result = Evaluator(_cfg(tmp_path), fake_components(bench, adapter, decoded, pruners), ShardInfo(),
                       progress=False).run()
    assert result.written == 4 * 5 and result.errors == 0
    assert decoded == ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]  # once per sample, for all 5 settings
    total = 4 * 4 * 4  # 4 frames of 32x32 with patch 8
    for ratio, label in [(0.25, "autogaze_gr0.25"), (0.75, "autogaze_gr0.75")]:
        recs = _records(tmp_path, label)
        assert [r["sample_id"] for r in recs] == ["s0", "s1", "s2", "s3"]
        assert all(r["selection"]["kept"] == int(ratio * total) for r in recs)
        matched = _records(tmp_path, f"random_match-{label}")
        # the baseline got exactly AutoGaze's kept count on the same sample
        assert [r["selection"]["kept"] for r in matched] == [r["selection"]["kept"] for r in recs]
        assert all(r["budget"] == {"kind": "matched", "value": None, "match": label} for r in matched)
    rec = _records(tmp_path, "none")[0]
    assert rec["tokens"] == {"visual_before": total, "visual_after": total, "prompt": total + 5, "generated": 3,
                             "gazes": None}  # no AutoGaze ran
    assert rec["output"] == "The answer is A." and rec["extracted"] == "A" and rec["correct"] is True
    assert rec["prompt"] == "Q: q0" and rec["splits"] == {"duration": "long"}
    # latency stages only where they happened: `none` selects nothing, a baseline prunes, AutoGaze gazes
    assert set(rec["latency"]) == {"decode", "vision", "prefill", "generate", "total"}
    assert rec["latency"]["total"] == pytest.approx(sum(v for k, v in rec["latency"].items() if k != "total"))
    stages = {label: set(_records(tmp_path, label)[0]["latency"]) - {"decode", "vision", "prefill", "generate",
                                                                     "total"}
              for label in ("none", "autogaze_gr0.25", "random_match-autogaze_gr0.25")}
    assert stages == {"none": set(), "autogaze_gr0.25": {"gaze"}, "random_match-autogaze_gr0.25": {"prune"}}
    assert rec["schema_version"] == 2 and rec["status"] == "ok"
    assert rec["evidence"] == {"recall": 1.0, "hit": True} and rec["peak_memory_mb"] == 100.0
    assert rec["frames"]["num"] == 4 and rec["error"] is None
    run = json.loads((tmp_path / "out" / "fake" / "none" / "run.json").read_text())
    assert run["run_id"] == "fake/none" and run["pruner"]["name"] == "none"
    meta = json.loads((tmp_path / "out" / "run_meta.json").read_text())
    assert {"versions", "git", "hardware", "config"} <= set(meta) and meta["versions"]["torch"]
    assert (tmp_path / "out" / "config.yaml").exists()


def test_failing_samples_are_recorded_and_the_run_goes_on(tmp_path):
    bench, adapter = FakeBenchmark(4, missing=(1,)), FakeAdapter(fail_on={"q2"})
    result = Evaluator(_cfg(tmp_path), fake_components(bench, adapter), ShardInfo(), progress=False).run()
    recs = {r["sample_id"]: r for r in _records(tmp_path, "none")}
    assert set(recs) == {"s0", "s1", "s2", "s3"}
    assert recs["s1"]["error"]["stage"] == "decode" and "file not found" in recs["s1"]["error"]["message"]
    assert recs["s1"]["error"]["type"] == "VideoError"
    assert recs["s2"]["error"]["stage"] == "generate" and "adapter failed on Q: q2" in recs["s2"]["error"]["message"]
    assert recs["s0"]["error"] is None and recs["s3"]["error"] is None
    # the matched baseline of a sample whose autogaze failed says why
    matched = {r["sample_id"]: r for r in _records(tmp_path, "random_match-autogaze_gr0.25")}
    assert matched["s1"]["error"]["stage"] == "decode"
    assert result.errors == 2 * 5


def test_matched_baseline_errors_when_autogaze_failed(tmp_path):
    cfg = _cfg(tmp_path, pruners=[{"name": "autogaze", "params": {"gazing_ratio": 0.5}},
                                  {"name": "random", "budget": "matched"}])
    comps = fake_components(FakeBenchmark(2), FakeAdapter())
    real_build = comps.build_pruner
    comps.build_pruner = lambda name, params: real_build("boom" if name == "autogaze" else name, params)
    Evaluator(cfg, comps, ShardInfo(), progress=False).run()
    recs = _records(tmp_path, "random_match-autogaze")
    assert all(r["error"]["stage"] == "prune" for r in recs)
    assert "matched budget unavailable" in recs[0]["error"]["message"]


class _SourceFailsAtGeneration(FakeAdapter):
    """AutoGaze's selection on sample s1 succeeds; its generation there fails (the baselines' do not)."""

    def generate(self, frames, selection, prompt, **kw):
        if selection.pruner == "autogaze" and prompt.endswith("q1"):
            raise RuntimeError("autogaze generation failed on q1")
        return super().generate(frames, selection, prompt, **kw)


def test_matched_budget_after_a_source_failed_at_generation_is_the_same_within_a_run_and_on_resume(tmp_path):
    """Within a run, AutoGaze's kept count reaches the matched baseline at selection time, even when
    AutoGaze then fails at generation. Resume used to read kept counts from successful source records
    only, so (retry_failed off) the same baseline got "matched budget unavailable" although the
    failed source record holds ``selection.kept``. Both paths must give the same budget."""
    source = {"name": "autogaze", "params": {"gazing_ratio": 0.5}}
    matched = {"name": "random", "budget": "matched"}

    one = tmp_path / "one"  # AutoGaze and the baseline in one run
    Evaluator(_cfg(one, pruners=[source, matched]), fake_components(FakeBenchmark(2), _SourceFailsAtGeneration()),
              ShardInfo(), progress=False).run()
    two = tmp_path / "two"  # AutoGaze first; the baseline added by a later run that does not retry failures
    Evaluator(_cfg(two, pruners=[source]), fake_components(FakeBenchmark(2), _SourceFailsAtGeneration()),
              ShardInfo(), progress=False).run()
    Evaluator(_cfg(two, pruners=[source, matched]), fake_components(FakeBenchmark(2), _SourceFailsAtGeneration()),
              ShardInfo(), retry_failed=False, progress=False).run()

    for root in (one, two):
        src = {r["sample_id"]: r for r in _records(root, "autogaze")}
        assert src["s1"]["error"]["stage"] == "generate" and src["s1"]["selection"]["kept"] == 32
    within = {r["sample_id"]: r for r in _records(one, "random_match-autogaze")}
    resumed = {r["sample_id"]: r for r in _records(two, "random_match-autogaze")}
    assert resumed["s1"]["error"] is None, resumed["s1"]["error"]
    assert [within[s]["selection"]["kept"] for s in ("s0", "s1")] == \
        [resumed[s]["selection"]["kept"] for s in ("s0", "s1")] == [32, 32]


def test_the_budget_source_is_a_property_of_the_pruner_class(tmp_path, monkeypatch):
    """Which run a matched baseline follows is the pruner class's ``defines_matched_budget``, not a name in the runner."""
    from harness.pruning.autogaze import AutoGazePruner
    from harness.pruning.uniform_frames import UniformFramesPruner

    monkeypatch.setattr(AutoGazePruner, "defines_matched_budget", False)
    monkeypatch.setattr(UniformFramesPruner, "defines_matched_budget", True)
    cfg = _cfg(tmp_path, pruners=[{"name": "autogaze", "params": {"gazing_ratio": 0.5}},
                                  {"name": "uniform_frames"}, {"name": "random", "budget": "matched"}])
    Evaluator(cfg, fake_components(FakeBenchmark(2), FakeAdapter()), ShardInfo(), progress=False).run()
    runs = sorted(p.name for p in (tmp_path / "out" / "fake").iterdir())
    assert runs == ["autogaze", "random_match-uniform_frames", "uniform_frames"]
    source = _records(tmp_path, "uniform_frames")  # the fake keeps all 64 tokens without a budget
    matched = _records(tmp_path, "random_match-uniform_frames")
    assert [r["selection"]["kept"] for r in matched] == [r["selection"]["kept"] for r in source] == [64, 64]
    assert {r["selection"]["kept"] for r in _records(tmp_path, "autogaze")} == {32}


def test_resume_after_interrupt_redoes_nothing(tmp_path):
    cfg = _cfg(tmp_path)
    killer = FakeAdapter(interrupt_after=7)  # dies inside sample s1 (5 settings per sample)
    with pytest.raises(KeyboardInterrupt):
        Evaluator(cfg, fake_components(FakeBenchmark(4), killer), ShardInfo(), progress=False).run()
    before = {label: [r["sample_id"] for r in _records(tmp_path, label)]
              for label in ["none", "autogaze_gr0.25", "autogaze_gr0.75", "random_match-autogaze_gr0.25"]}
    assert before["none"] == ["s0", "s1"] and before["autogaze_gr0.75"] == ["s0"]
    adapter = FakeAdapter()
    result = Evaluator(cfg, fake_components(FakeBenchmark(4), adapter), ShardInfo(), progress=False).run()
    assert result.written == 4 * 5 - 7 and result.skipped == 7
    assert len(adapter.calls) == 4 * 5 - 7
    for label in before:
        ids = [r["sample_id"] for r in _records(tmp_path, label)]
        assert sorted(ids) == ["s0", "s1", "s2", "s3"] and len(ids) == 4
    # the matched baseline resumed for s1 took AutoGaze's kept count from the record on disk
    s1 = {r["sample_id"]: r for r in _records(tmp_path, "random_match-autogaze_gr0.25")}["s1"]
    assert s1["selection"]["kept"] == 16
    # a third run does nothing
    again = Evaluator(cfg, fake_components(FakeBenchmark(4), FakeAdapter()), ShardInfo(), progress=False).run()
    assert again.written == 0 and again.skipped == 20


def test_a_matched_run_is_not_resumed_against_a_removed_source(tmp_path):
    """A matched run's budgets came from its source's records. Removing the source directory (what
    the configuration check advises when the source's settings change) and running again used to
    resume the matched run silently: its old samples kept the old budgets, its new ones got the new
    source's, two matches mixed in one run. Now the resume is refused in one line."""
    import shutil

    def cfg(ratio, limit):
        return _cfg(tmp_path, limit=limit, pruners=[
            {"name": "autogaze", "label": "ag", "params": {"gazing_ratio": ratio}},
            {"name": "random", "budget": "matched"}])

    Evaluator(cfg(0.25, 2), fake_components(FakeBenchmark(4), FakeAdapter()), ShardInfo(), progress=False).run()
    shutil.rmtree(tmp_path / "out" / "fake" / "ag")
    with pytest.raises(ConfigError, match=r"random_match-ag holds 2 record\(s\) matched to 'ag' samples it no "
                                          r"longer has \(s0, s1\)") as err:
        Evaluator(cfg(0.75, 4), fake_components(FakeBenchmark(4), FakeAdapter()), ShardInfo(), progress=False).run()
    assert "\n" not in str(err.value)
    assert [r["selection"]["kept"] for r in _records(tmp_path, "random_match-ag")] == [16, 16]  # untouched
    # with the source intact, extending the run resumes as before
    shutil.rmtree(tmp_path / "out" / "fake" / "random_match-ag")
    Evaluator(cfg(0.75, 2), fake_components(FakeBenchmark(4), FakeAdapter()), ShardInfo(), progress=False).run()
    Evaluator(cfg(0.75, 4), fake_components(FakeBenchmark(4), FakeAdapter()), ShardInfo(), progress=False).run()
    assert [r["selection"]["kept"] for r in _records(tmp_path, "random_match-ag")] == [48] * 4


def test_failed_samples_are_retried_on_rerun(tmp_path):
    cfg = _cfg(tmp_path, pruners=["none"])
    Evaluator(cfg, fake_components(FakeBenchmark(3), FakeAdapter(fail_on={"q1"})), ShardInfo(), progress=False).run()
    adapter = FakeAdapter()
    Evaluator(cfg, fake_components(FakeBenchmark(3), adapter), ShardInfo(), progress=False).run()
    assert [c[0] for c in adapter.calls] == ["Q: q1"]
    recs = _records(tmp_path, "none")
    assert [r["sample_id"] for r in recs] == ["s0", "s1", "s2", "s1"]  # the failure stays on file
    from harness.runner.records import latest_by_sample

    assert latest_by_sample(recs)["s1"]["error"] is None


def test_truncated_last_line_is_skipped_and_sealed(tmp_path):
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as w:
        w.write({"sample_id": "a", "error": None})
    with path.open("a") as fh:
        fh.write('{"sample_id": "b", "err')  # a write cut short by a kill
    with pytest.warns(UserWarning, match="truncated"):
        assert [r["sample_id"] for r in iter_records(path)] == ["a"]
    with RecordWriter(path) as w:
        w.write({"sample_id": "c", "error": None})
    with pytest.warns(UserWarning):
        assert [r["sample_id"] for r in iter_records(path)] == ["a", "c"]


_KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from harness.runner.config import load_config
    from harness.runner.engine import Evaluator
    from harness.runner.sharding import ShardInfo
    from harness.runner.testing import FakeAdapter, FakeBenchmark, fake_components

    class Slow(FakeAdapter):
        def generate(self, *a, **k):
            time.sleep(0.05)
            return super().generate(*a, **k)

    cfg = load_config(data={"output_dir": sys.argv[1], "model": {"name": "fake", "path": "/m"},
                            "benchmark": {"name": "fake"}, "frames": {"num_frames": 4}, "pruners": ["none"]})
    Evaluator(cfg, fake_components(FakeBenchmark(400), Slow()), ShardInfo(), progress=False).run()
""")


def test_sigkill_mid_run_then_resume(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(out)], cwd=REPO)
    path = out / "fake" / "none" / "records.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not path.exists() or path.read_text().count("\n") < 5):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [r["sample_id"] for r in iter_records(path)]
    assert 5 <= len(done) < 400
    cfg = load_config(data={"output_dir": str(out), "model": {"name": "fake", "path": "/m"},
                            "benchmark": {"name": "fake"}, "frames": {"num_frames": 4}, "pruners": ["none"]})
    adapter = FakeAdapter()
    Evaluator(cfg, fake_components(FakeBenchmark(400), adapter), ShardInfo(), progress=False).run()
    assert len(adapter.calls) == 400 - len(done)
    ids = [r["sample_id"] for r in iter_records(path)]
    assert sorted(ids) == sorted(f"s{i}" for i in range(400))


def test_shard_slicing_covers_every_sample_once():
    items = list(range(11))
    parts = [list(shard(items, ShardInfo(rank=r, world_size=3))) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(parts, [])) == items


def test_shard_from_env():
    assert shard_from_env({}) == ShardInfo(0, 1, 0)
    info = shard_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert info == ShardInfo(3, 4, 1) and device_for_rank("cuda", info) == "cuda:1"
    assert device_for_rank("cuda:0", info) == "cuda:0" and device_for_rank("cpu", info) == "cpu"
    with pytest.raises(ValueError, match="RANK=4 WORLD_SIZE=2"):
        shard_from_env({"RANK": "4", "WORLD_SIZE": "2"})


def test_sharded_ranks_write_own_files_and_merge(tmp_path):
    cfg = _cfg(tmp_path, limit=5)
    for rank in range(2):
        Evaluator(cfg, fake_components(FakeBenchmark(7), FakeAdapter()), ShardInfo(rank, 2, rank),
                  progress=False).run()
    run_dir = tmp_path / "out" / "fake" / "none"
    files = sorted(p.name for p in run_dir.glob("records*.jsonl"))
    assert files == [records_filename(0, 2), records_filename(1, 2)]
    assert [r["sample_id"] for r in iter_records(run_dir / files[0])] == ["s0", "s2", "s4"]
    assert [r["sample_id"] for r in iter_records(run_dir / files[1])] == ["s1", "s3"]
    from harness.report.load import load_records

    df = load_records([tmp_path / "out"])
    assert sorted(df[df.pruner_label == "none"].sample_id) == ["s0", "s1", "s2", "s3", "s4"]
    # a later single-process rerun (world size changed) sees every shard's samples as done
    again = Evaluator(cfg, fake_components(FakeBenchmark(7), FakeAdapter()), ShardInfo(), progress=False).run()
    assert again.written == 0


def test_pruner_only_runs_skip_the_model_and_report_evidence(tmp_path):
    cfg = _cfg(tmp_path, generation={"enabled": False})
    adapter = FakeAdapter()
    Evaluator(cfg, fake_components(FakeBenchmark(3), adapter), ShardInfo(), progress=False).run()
    assert adapter.calls == []
    rec = _records(tmp_path, "autogaze_gr0.25")[0]
    assert rec["output"] is None and rec["tokens"] is None and rec["error"] is None
    assert rec["evidence"]["recall"] == pytest.approx(0.25) and rec["selection"]["kept"] == 16
    from harness.report.load import load_records
    from harness.report.tables import summary_table

    summary = summary_table(load_records([tmp_path / "out"])).set_index("pruner_label")
    assert summary.loc["autogaze_gr0.25", "visual_tokens"] == 16
    assert summary.loc["autogaze_gr0.25", "evidence_recall"] == pytest.approx(0.25)
    assert summary["accuracy"].isna().all()


def test_several_models_each_get_their_runs(tmp_path):
    cfg = _cfg(tmp_path, models=[{"name": "fake", "path": "/a"}, {"name": "other", "path": "/b",
                                                                  "pruners": ["none"]}])
    loaded = []
    comps = fake_components(FakeBenchmark(2), FakeAdapter())
    comps.load_adapter = lambda m, b, d, s: loaded.append(m.label) or FakeAdapter()
    Evaluator(cfg, comps, ShardInfo(), progress=False).run()
    assert loaded == ["fake", "other"]
    assert len(read_run_records(tmp_path / "out" / "other" / "none")) == 2
    assert not (tmp_path / "out" / "other" / "autogaze_gr0.25").exists()
    assert len(read_run_records(tmp_path / "out" / "fake" / "autogaze_gr0.25")) == 2


def test_resume_refuses_a_changed_config(tmp_path):
    Evaluator(_cfg(tmp_path, limit=2), fake_components(FakeBenchmark(4), FakeAdapter()), ShardInfo(),
              progress=False).run()
    changed = _cfg(tmp_path, limit=2, generation={"max_new_tokens": 3})
    with pytest.raises(ConfigError, match=r"different configuration \(generation.max_new_tokens: 16 -> 3\)"):
        Evaluator(changed, fake_components(FakeBenchmark(4), FakeAdapter()), ShardInfo(), progress=False).run()
    # more samples (a larger limit) is a resume, not a different experiment
    more = Evaluator(_cfg(tmp_path, limit=4), fake_components(FakeBenchmark(4), FakeAdapter()), ShardInfo(),
                     progress=False).run()
    assert more.written == 2 * 5 and more.skipped == 2 * 5


_RANK_SCRIPT = textwrap.dedent("""
    import sys
    from harness.runner.config import load_config
    from harness.runner.engine import Evaluator
    from harness.runner.testing import FakeAdapter, FakeBenchmark, fake_components

    cfg = load_config(data={"output_dir": sys.argv[1], "model": {"name": "fake", "path": "/m"},
                            "benchmark": {"name": "fake"}, "frames": {"num_frames": 4},
                            "pruners": ["none", {"name": "autogaze", "params": {"gazing_ratio": 0.5}},
                                        {"name": "random", "budget": "matched"}]})
    Evaluator(cfg, fake_components(FakeBenchmark(9), FakeAdapter()), progress=False).run()  # ranks from env
""")


def test_ranks_from_launcher_env_run_concurrently_and_merge(tmp_path):
    """Two processes with torchrun's env vars: each takes its slice, writes its own files; report merges."""
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-c", _RANK_SCRIPT, str(out)], cwd=REPO,
                              env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r)})
             for r in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    run_dir = out / "fake" / "random_match-autogaze"
    assert sorted(p.name for p in run_dir.glob("records*.jsonl")) == [records_filename(0, 2), records_filename(1, 2)]
    assert (out / "run_meta.rank000.json").exists() and (out / "run_meta.rank001.json").exists()
    from harness.report.load import load_records

    df = load_records([out])
    for label in ["none", "autogaze", "random_match-autogaze"]:
        sub = df[df.pruner_label == label]
        assert sorted(sub.sample_id) == sorted(f"s{i}" for i in range(9)) and sub.ok.all()
    assert set(df[df.sample_id == "s3"]["rank"]) == {1} and set(df[df.sample_id == "s4"]["rank"]) == {0}


def test_tiny_model_build_is_atomic_and_cached(tmp_path, monkeypatch):
    import harness.models.tiny as tiny
    from harness.runner.components import resolve_model_path
    from harness.runner.config import ModelConfig

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    builds = []

    def fake_build(family, out_dir, seed=0, answer_letters=False):
        builds.append(Path(out_dir))
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "config.json").write_text("{}")
        return Path(out_dir)

    monkeypatch.setattr(tiny, "build_tiny_model", fake_build)
    stale = tmp_path / "tiny-models" / "qwen2_5_vl-seed0-letters"
    stale.mkdir(parents=True)  # a build killed half-way: no .complete marker
    path = Path(resolve_model_path(ModelConfig(family="qwen2_5_vl", path="tiny")))
    assert path == stale and (path / ".complete").exists() and (path / "config.json").exists()
    assert builds[0].name.startswith("qwen2_5_vl-seed0-letters.tmp")  # built beside the target, then renamed
    assert resolve_model_path(ModelConfig(family="qwen2_5_vl", path="tiny")) == str(path)
    assert len(builds) == 1  # the second call reuses the cache
    assert resolve_model_path(ModelConfig(family="qwen2_5_vl", path="/models/q")) == "/models/q"


def test_load_frames_decodes_the_sampled_frames_resized(tmp_path):
    import numpy as np

    from harness.runner.components import load_frames
    from harness.runner.config import FramesConfig
    from harness.video.writer import write_video

    frames = [np.full((48, 64, 3), 4 * i, np.uint8) for i in range(40)]
    path = write_video(tmp_path / "v.mp4", frames, fps=10.0)
    video = load_frames(str(path), FramesConfig(num_frames=5, resolution=[32, 32]))
    assert video.frames.shape == (5, 24, 32, 3)  # fit inside 32x32, aspect kept
    assert video.indices.tolist() == [0, 9, 19, 29, 39]  # lmms-eval: first and last included
    assert abs(int(video.frames[4].mean()) - 4 * 39) <= 3  # the right frame, not just the right count
    assert video.fps == pytest.approx(4 / 3.9) and video.source_size == (48, 64)
    by_fps = load_frames(str(path), FramesConfig(num_frames=16, fps=2.0))  # fps wins over the default count
    assert len(by_fps.frames) == 8 and by_fps.frames.shape[1:] == (48, 64, 3)
    capped = load_frames(str(path), FramesConfig(fps=5.0, max_frames=6, resolution=32))
    assert capped.frames.shape == (6, 24, 32, 3)
    with pytest.raises(MemoryError, match=r"40 frames at 64x48 need .* GiB, above frames.max_decoded_gb"):
        load_frames(str(path), FramesConfig(num_frames=40, max_decoded_gb=0.0001))


def test_resume_accepts_a_schema_key_added_at_its_default(tmp_path):
    cfg = _cfg(tmp_path, limit=1, pruners=["none"])
    Evaluator(cfg, fake_components(FakeBenchmark(2), FakeAdapter()), ShardInfo(), progress=False).run()
    run_file = tmp_path / "out" / "fake" / "none" / "run.json"
    old = json.loads(run_file.read_text())
    del old["generation"]["enabled"]  # as if the run was made before that key existed
    run_file.write_text(json.dumps(old))
    more = Evaluator(_cfg(tmp_path, limit=2, pruners=["none"]), fake_components(FakeBenchmark(2), FakeAdapter()),
                     ShardInfo(), progress=False).run()
    assert more.written == 1 and more.skipped == 1


def test_vllm_backend_without_vllm_says_how_to_install():
    import importlib.util

    from harness.runner.components import load_adapter
    from harness.runner.config import ModelConfig

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here: the missing-package message cannot be shown")
    with pytest.raises(ConfigError, match=r"pip install \.\[vllm\]"):
        load_adapter(ModelConfig(path="/models/q"), "vllm", "cpu")


def test_one_untimed_warm_up_pass_precedes_the_first_record(tmp_path):
    """First calls pay lazy set-up costs; the runner warms model and pruners up once, unrecorded."""
    bench, adapter = FakeBenchmark(3), FakeAdapter()
    result = Evaluator(_cfg(tmp_path), fake_components(bench, adapter), ShardInfo(), progress=False).run()
    assert result.written == 3 * 5
    assert adapter.warm_ups == 1 and len(adapter.calls) == result.written


def test_a_record_the_schema_refuses_fails_its_sample_not_the_run(tmp_path):
    class OddTimings(FakeAdapter):
        def generate(self, frames, selection, prompt, **kw):
            gen = super().generate(frames, selection, prompt, **kw)
            if prompt == "Q: q1":
                gen.timings["tokenize"] = 0.1  # not a stage name (harness/stages.py)
            return gen

    cfg = _cfg(tmp_path, pruners=["none"])
    result = Evaluator(cfg, fake_components(FakeBenchmark(3), OddTimings()), ShardInfo(), progress=False).run()
    recs = {r["sample_id"]: r for r in _records(tmp_path, "none")}
    assert result.written == 3 and result.errors == 1 and recs["s0"]["error"] is recs["s2"]["error"] is None
    assert recs["s1"]["error"]["stage"] == "generate" and "'tokenize'" in recs["s1"]["error"]["message"]
    assert "tokenize" not in recs["s1"]["latency"]


def test_a_record_refused_at_write_time_is_written_as_a_failure(tmp_path, monkeypatch):
    from harness.runner import engine

    real = engine.Evaluator._finish

    def sloppy(self, rec, sample, benchmark, outcome):
        real(self, rec, sample, benchmark, outcome)
        if rec.sample_id == "s1":
            rec.latency["warp"] = 1.0  # a nested edit no assignment check sees

    monkeypatch.setattr(engine.Evaluator, "_finish", sloppy)
    cfg = _cfg(tmp_path, pruners=["none"])
    result = Evaluator(cfg, fake_components(FakeBenchmark(3), FakeAdapter()), ShardInfo(), progress=False).run()
    recs = {r["sample_id"]: r for r in _records(tmp_path, "none")}
    assert result.written == 3 and result.errors == 1
    assert recs["s1"]["error"]["stage"] == "record" and "warp" in recs["s1"]["error"]["message"]
    assert recs["s1"]["question"] == "q1" and recs["s1"]["output"] is None


def test_resume_reads_matched_budgets_from_version_1_records(tmp_path):
    """A run directory written before the typed record (``"schema": 1``) resumes: its AutoGaze counts
    budget the baseline added now, read through the migration."""
    cfg = _cfg(tmp_path, pruners=[{"name": "autogaze", "params": {"gazing_ratio": 0.5}}])
    Evaluator(cfg, fake_components(FakeBenchmark(2), FakeAdapter()), ShardInfo(), progress=False).run()
    path = tmp_path / "out" / "fake" / "autogaze" / "records.jsonl"
    old = []
    for i, line in enumerate(path.read_text().splitlines()):  # rewrite as version 1 wrote them
        rec = json.loads(line)
        rec.pop("schema_version"), rec.pop("status")
        rec["selection"]["kept"] = 10 + i  # counts only the file can have given
        old.append(json.dumps({"schema": 1, **rec}))
    path.write_text("\n".join(old) + "\n")
    cfg = _cfg(tmp_path, pruners=[{"name": "autogaze", "params": {"gazing_ratio": 0.5}},
                                  {"name": "random", "budget": "matched"}])
    adapter = FakeAdapter()
    Evaluator(cfg, fake_components(FakeBenchmark(2), adapter), ShardInfo(), progress=False).run()
    assert len(adapter.calls) == 2  # only the new baseline ran
    assert [r["selection"]["kept"] for r in _records(tmp_path, "random_match-autogaze")] == [10, 11]

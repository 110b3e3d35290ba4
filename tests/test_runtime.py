"""Model runtimes (harness/runtime): a model driven in a worker process gives the in-process records.

The worker here is the main venv's own interpreter (the cross-version case, transformers 4.5x in
its own venv, is tests/test_runtime_pinned.py). Real pieces throughout: the synthetic needle
benchmark with PyAV-made videos, the tiny random-weight Qwen2.5-VL, the tiny AutoGaze, a baseline
at AutoGaze's matched budget. Compared field by field: every record field except the timing ones
(``latency``, ``finished``, ``peak_memory_mb``, timers inside ``selection.info`` / ``generation_extra``: ``seconds``, ``*_seconds``, ``*_s``) and an error's traceback (it names the other process's frames).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.runner import components as comp
from harness.runner.config import ConfigError, from_dict
from harness.runner.engine import Evaluator
from harness.runner.records import RUN_FILE, read_run_records
from harness.runner.sharding import ShardInfo

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

PYTHON = sys.executable
NOT_COMPARED = ("latency", "finished", "peak_memory_mb",  # measurements of the process, not results
                "gaze_cache", "frames_shared")  # where a gaze or frames came from (the second run reads the first's)

BASE: dict[str, Any] = {
    "name": "runtime",
    "seed": 0,
    "model": {"family": "qwen2_5_vl", "path": "tiny", "device": "cpu", "dtype": "float32"},
    "benchmark": {"name": "synthetic_needle", "limit": 2,
                  "kwargs": {"num_videos": 2, "width": 256, "height": 192, "num_frames": 24, "fps": 8.0,
                             "needle_frames": 4}},
    "frames": {"num_frames": 8, "resolution": 224},
    "generation": {"max_new_tokens": 4},
    "pruners": [{"name": "none"},
                {"name": "autogaze", "params": {"model": "tiny", "task_loss_requirement": None},
                 "grid": {"gazing_ratio": [0.1]}},
                {"name": "random", "budget": "matched"}],
}


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp() / "harness-cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(root))
    return root


def config(out: Path, runtime: dict[str, Any] | None = None, pruners: list[Any] | None = None,
           **changes: Any) -> Any:
    data = copy.deepcopy(BASE)
    data["output_dir"] = str(out)
    if pruners is not None:
        data["pruners"] = pruners
    if runtime is not None:
        data["model"]["runtime"] = runtime
    for key, value in changes.items():
        section, name = key.split("__")
        data[section][name] = value
    return from_dict(data)


def records(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(run id, sample id) -> record, over every run directory and shard file of ``out``."""
    found = {}
    for run in sorted(p.parent for p in out.rglob(RUN_FILE)):
        for rec in read_run_records(run):
            found[(rec["run_id"], rec["sample_id"])] = rec
    return found


def differences(a: dict[tuple[str, str], dict[str, Any]], b: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Every (record, field) where two runs differ, timing fields and tracebacks aside."""
    out = [f"only in one run: {key}" for key in sorted(set(a) ^ set(b))]
    for key in sorted(set(a) & set(b)):
        ra, rb = a[key], b[key]
        for name in sorted((set(ra) | set(rb)) - set(NOT_COMPARED)):
            va, vb = ra.get(name), rb.get(name)
            if name == "error" and va and vb:
                va, vb = {**va, "traceback": ""}, {**vb, "traceback": ""}
            va, vb = _untimed(va), _untimed(vb)
            if json.dumps(va, sort_keys=True) != json.dumps(vb, sort_keys=True):
                out.append(f"{key} {name}: {va!r} != {vb!r}")
    return out


def _untimed(value: Any) -> Any:
    """``value`` without its timers (keys ``seconds``, ``*_seconds``, ``*_s``: pruners' and adapters' own)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if not (k == "seconds" or k.endswith(("_seconds", "_s")))}
    return value


def run_shards(cfg: Any, components: Any = None) -> list[Any]:
    return [Evaluator(cfg, components=components, shard_info=ShardInfo(rank, 2), progress=False).run()
            for rank in (0, 1)]


class Spy(comp.Components):
    """The production components, remembering every adapter loaded (to reach the worker)."""

    def __init__(self) -> None:
        super().__init__(load_adapter=self._load)
        self.adapters: list[Any] = []

    def _load(self, *args: Any) -> Any:
        adapter = comp.load_adapter(*args)
        self.adapters.append(adapter)
        return adapter


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_worker_records_equal_in_process_with_sharding_and_resume(tmp_path):
    inproc, worker = tmp_path / "inproc", tmp_path / "worker"
    run_shards(config(inproc))
    spy = Spy()
    results = run_shards(config(worker, {"python": PYTHON}), spy)
    a, b = records(inproc), records(worker)
    assert len(a) == 6 and all(r["error"] is None for r in a.values())
    assert differences(a, b) == []
    assert {r["rank"] for r in b.values()} == {0, 1}
    assert sum(r.written for r in results) == 6
    assert all(set(r["latency"]) >= {"decode", "vision", "prefill", "generate"} for r in b.values())
    run = json.loads(next(worker.rglob(RUN_FILE)).read_text())
    assert run["worker"]["executable"] and run["worker"]["torch"] and "worker" not in json.loads(
        next(inproc.rglob(RUN_FILE)).read_text())
    # the worker ended with its run
    pids = [ad.pid for ad in spy.adapters]
    assert spy.adapters and all(p is None for p in pids)
    # resume through the worker: nothing left to do, nothing rewritten
    again = Evaluator(config(worker, {"python": PYTHON}), shard_info=ShardInfo(0, 2), progress=False).run()
    assert (again.written, again.skipped) == (0, 3)
    assert differences(records(worker), a) == []


def test_the_comparison_can_fail(tmp_path):
    """The equivalence check above flags one changed token count or answer."""
    rec = {"run_id": "m/none", "sample_id": "0", "tokens": {"visual_after": 10}, "output": "A", "latency": {}}
    changed = copy.deepcopy(rec)
    changed["tokens"]["visual_after"] = 11
    assert differences({("m", "0"): rec}, {("m", "0"): changed})
    assert differences({("m", "0"): rec}, {("m", "0"): {**rec, "output": "B"}})
    assert differences({("m", "0"): rec}, {}) == ["only in one run: ('m', '0')"]
    assert differences({("m", "0"): rec}, {("m", "0"): {**rec, "latency": {"total": 1.0}}}) == []
    timed = {**rec, "generation_extra": {"preprocess_s": 0.1, "ids": [1]}}
    slower = {**timed, "generation_extra": {"preprocess_s": 0.2, "ids": [1]}}
    assert differences({("m", "0"): timed}, {("m", "0"): slower}) == []
    other = {**timed, "generation_extra": {"preprocess_s": 0.1, "ids": [2]}}
    assert differences({("m", "0"): timed}, {("m", "0"): other})


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_crashed_worker_is_restarted_and_its_sample_failed(tmp_path):
    """The worker kills itself (SIGKILL) on its 3rd generate (warm-up, sample 0, sample 1), once: that
    record fails, the run goes on with a restarted worker."""
    marker = tmp_path / "crashed"
    code = (f"import os, signal, sys, harness.runtime.worker as w\n"
            f"orig = w.Worker._generate\n"
            f"n = [0]\n"
            f"def crash(self, *a):\n"
            f"    n[0] += 1\n"
            f"    if n[0] == 3 and not os.path.exists({str(marker)!r}):\n"
            f"        open({str(marker)!r}, 'w').close(); os.kill(os.getpid(), signal.SIGKILL)\n"
            f"    return orig(self, *a)\n"
            f"w.Worker._generate = crash\n"
            f"sys.exit(w.main())")
    (tmp_path / "crash.py").write_text(code)
    python = _script(tmp_path / "python", f'exec {PYTHON} {tmp_path / "crash.py"}')
    out = tmp_path / "out"
    cfg = config(out, {"python": python}, pruners=["none", {"name": "random", "budget": 0.5}])
    spy = Spy()
    result = Evaluator(cfg, components=spy, progress=False).run()
    recs = records(out)
    failed = [r for r in recs.values() if r["error"] is not None]
    assert marker.exists() and result.written == 4 and len(failed) == 1
    err = failed[0]["error"]
    assert err["stage"] == "generate" and err["type"] == "WorkerCrashed"
    assert f"exited with code {-signal.SIGKILL}" in err["message"] and python in err["message"]
    assert spy.adapters[0].restarts == 1
    # the others equal an in-process run's records
    inproc = tmp_path / "inproc"
    Evaluator(config(inproc, pruners=["none", {"name": "random", "budget": 0.5}]), progress=False).run()
    ref = records(inproc)
    key = (failed[0]["run_id"], failed[0]["sample_id"])
    assert differences({k: v for k, v in ref.items() if k != key}, {k: v for k, v in recs.items() if k != key}) == []
    # and a resume retries the failed sample through a fresh worker, completing the run
    again = Evaluator(config(out, {"python": python}, pruners=["none", {"name": "random", "budget": 0.5}]), progress=False).run()
    assert again.written == 1 and again.errors == 0


def test_a_hung_worker_is_killed_after_timeout_s_and_its_sample_failed(tmp_path):
    """The worker hangs on its 2nd generate (sample 0; the 1st is the warm-up), once: after
    ``runtime.timeout_s`` that record fails with WorkerTimeout, and the restarted worker answers sample 1."""
    marker = tmp_path / "hung"
    code = (f"import os, time, sys, harness.runtime.worker as w\n"
            f"orig = w.Worker._generate\n"
            f"n = [0]\n"
            f"def hang(self, *a):\n"
            f"    n[0] += 1\n"
            f"    if n[0] == 2 and not os.path.exists({str(marker)!r}):\n"
            f"        open({str(marker)!r}, 'w').close(); time.sleep(600)\n"
            f"    return orig(self, *a)\n"
            f"w.Worker._generate = hang\n"
            f"sys.exit(w.main())")
    (tmp_path / "hang.py").write_text(code)
    python = _script(tmp_path / "python", f'exec {PYTHON} {tmp_path / "hang.py"}')
    out = tmp_path / "out"
    spy = Spy()
    result = Evaluator(config(out, {"python": python, "timeout_s": 20}, pruners=["none"]), components=spy,
                       progress=False).run()
    recs = sorted(records(out).values(), key=lambda r: r["sample_id"])
    assert marker.exists() and result.written == 2
    assert recs[0]["error"]["type"] == "WorkerTimeout" and "within 20 s" in recs[0]["error"]["message"]
    assert recs[1]["error"] is None and spy.adapters[0].restarts == 1


def test_missing_interpreter_is_one_line_before_any_sample(tmp_path):
    out = tmp_path / "out"
    missing = str(tmp_path / "nowhere" / "bin" / "python")
    with pytest.raises(ConfigError) as err:
        Evaluator(config(out, {"python": missing}), progress=False).run()
    msg = str(err.value)
    assert "\n" not in msg and missing in msg and "no such interpreter" in msg
    assert not out.exists()


def test_worker_that_cannot_import_names_interpreter_and_cause(tmp_path):
    """A venv without the adapter's dependencies (here: no site-packages at all)."""
    python = _script(tmp_path / "python", f"exec {PYTHON} -S \"$@\"")
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        Evaluator(config(out, {"python": python}), progress=False).run()
    msg = str(err.value)
    assert "\n" not in msg and python in msg and "No module named 'numpy'" in msg
    assert not out.exists()


def test_model_that_cannot_load_in_the_worker_is_one_line(tmp_path):
    out = tmp_path / "out"
    cfg = config(out, {"python": PYTHON}, model__path=str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError) as err:
        Evaluator(cfg, progress=False).run()
    msg = str(err.value)
    assert "\n" not in msg and PYTHON in msg and "did not load" in msg and "no-such-model" in msg


def test_cli_exit_code_2_for_a_bad_runtime(tmp_path, capsys):
    from harness.cli.main import main

    code = main(["eval", "--config", "configs/demo.yaml", "--output", str(tmp_path / "o"), "--no-progress",
                 "--set", "model.runtime.python=/nonexistent/bin/python"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "/nonexistent/bin/python" in err[0]

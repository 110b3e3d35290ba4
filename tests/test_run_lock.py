"""One run per output directory: a second eval fails at once naming the holder; ranks share a run;
a lock left by a killed run is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.runner.config import load_config
from harness.runner.engine import Evaluator
from harness.runner.lock import RunLock, RunLockedError
from harness.runner.records import iter_records, read_run_records
from harness.runner.sharding import ShardInfo
from harness.runner.testing import FakeAdapter, FakeBenchmark, fake_components

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "configs" / "demo.yaml")

# One eval of N fake samples, each generate a little slow so that two runs overlap; a refused run
# prints its one line and exits 2, as run_eval.py eval does.
_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from harness.runner.config import load_config
    from harness.runner.engine import Evaluator
    from harness.runner.lock import RunLockedError
    from harness.runner.testing import FakeAdapter, FakeBenchmark, fake_components

    class Slow(FakeAdapter):
        def generate(self, *a, **k):
            time.sleep(float(sys.argv[3]))
            return super().generate(*a, **k)

    cfg = load_config(data={"output_dir": sys.argv[1], "model": {"name": "fake", "path": "/m"},
                            "benchmark": {"name": "fake"}, "frames": {"num_frames": 4}, "pruners": ["none"]})
    print("started", flush=True)
    while len(sys.argv) > 4 and not os.path.exists(sys.argv[4]):  # a start signal: both runs go at once
        time.sleep(0.005)
    try:
        Evaluator(cfg, fake_components(FakeBenchmark(int(sys.argv[2])), Slow()), progress=False).run()
    except RunLockedError as exc:
        print(f"run_eval.py eval: {exc}", file=sys.stderr)
        sys.exit(2)
""")


def _spawn(out: Path, n: int, delay: float, go: Path | None = None, **env: str) -> subprocess.Popen:
    args = [str(out), str(n), str(delay)] + ([str(go)] if go else [])
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), **env})


def _cfg(out: Path, **over):
    data = {"output_dir": str(out), "model": {"name": "fake", "path": "/m"}, "benchmark": {"name": "fake"},
            "frames": {"num_frames": 4}, "pruners": ["none"], **over}
    return load_config(data=data)


def test_two_runs_started_together_one_wins_records_written_once(tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    procs = [_spawn(out, 20, 0.05, go) for _ in range(2)]
    for p in procs:  # both imported and waiting: released together, they race for the directory
        assert p.stdout.readline().strip() == "started"
    go.touch()
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    line = loser[2].strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    winner_pid = next(p.pid for p, r in zip(procs, results, strict=True) if r[0] == 0)
    assert f"pid {winner_pid} on host {socket.gethostname()}, started 20" in line
    assert f"{out} is in use by another eval" in line
    ids = [r["sample_id"] for r in read_run_records(out / "fake" / "none")]
    assert Counter(ids) == Counter(f"s{i}" for i in range(20))  # every record once
    assert not list(out.glob(".eval*.lock"))  # released and removed


def test_the_cli_refuses_a_held_directory_with_exit_2_before_loading_anything(tmp_path, capsys):
    from harness.cli.main import main

    out = tmp_path / "out"
    with RunLock(out):
        rc = main(["eval", "--config", DEMO, "--output", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"run_eval.py eval: {out} is in use by another eval: pid {os.getpid()} on host ")
    assert list(out.iterdir()) == []  # nothing written by the refused run


def test_a_live_holder_is_refused_and_a_killed_ones_lock_taken_over(tmp_path, capsys):
    out = tmp_path / "out"
    proc = _spawn(out, 400, 0.02)
    records = out / "fake" / "none" / "records.jsonl"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not records.exists() or records.read_text().count("\n") < 3):
            time.sleep(0.05)
        with pytest.raises(RunLockedError, match=f"pid {proc.pid} on host"):  # alive: never taken over
            Evaluator(_cfg(out), fake_components(FakeBenchmark(400), FakeAdapter()), ShardInfo(),
                      progress=False).run()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    left = json.loads((out / ".eval.lock").read_text())
    assert left["pid"] == proc.pid  # the killed run's lock file is still there, naming it
    done = len(list(iter_records(records)))
    adapter = FakeAdapter()
    Evaluator(_cfg(out), fake_components(FakeBenchmark(400), adapter), ShardInfo(), progress=False).run()
    err = capsys.readouterr().err
    assert f"took over the lock of a run that is gone (.eval.lock: pid {proc.pid} on host" in err
    assert len(adapter.calls) == 400 - done
    assert not (out / ".eval.lock").exists()


def test_ranks_of_one_run_share_it_other_sizes_are_refused(tmp_path):
    out = tmp_path / "out"
    rank0, rank1 = RunLock(out, 0, 2).acquire(), RunLock(out, 1, 2).acquire()  # ranks never block each other
    with pytest.raises(RunLockedError, match=r"in use by another eval: pid \d+ .*\(rank 1 of 2\)"):
        RunLock(out, 1, 2).acquire()  # a second run of the same size
    with pytest.raises(RunLockedError, match=r"different number of processes \(WORLD_SIZE=2, this one 1\)"):
        RunLock(out).acquire()  # a single-process run
    with pytest.raises(RunLockedError, match=r"WORLD_SIZE=2, this one 4"):
        RunLock(out, 3, 4).acquire()  # a rank with no counterpart in the running run
    assert sorted(p.name for p in out.glob(".eval*.lock")) == [".eval.rank000-of-002.lock",
                                                               ".eval.rank001-of-002.lock"]
    rank0.release()
    rank1.release()
    single = RunLock(out).acquire()
    with pytest.raises(RunLockedError, match=r"WORLD_SIZE=1, this one 2"):
        RunLock(out, 0, 2).acquire()
    single.release()
    assert not list(out.glob(".eval*.lock"))


def test_a_dead_run_of_another_size_does_not_block(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".eval.rank001-of-002.lock").write_text(json.dumps({"pid": 1, "host": "gone", "started": "x"}))
    lock = RunLock(out).acquire()
    assert lock.taken_over == [".eval.rank001-of-002.lock: pid 1 on host gone, started x"]
    assert not (out / ".eval.rank001-of-002.lock").exists()
    lock.release()


def test_sharded_ranks_run_together_under_their_locks(tmp_path):
    """torchrun's env: both ranks of one run proceed at once; a plain run started beside them is refused."""
    out = tmp_path / "out"
    ranks = [_spawn(out, 100, 0.05, RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r)) for r in range(2)]
    for p in ranks:
        assert p.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob(".eval.rank*.lock"))) < 2:
        time.sleep(0.02)
    assert all(p.poll() is None for p in ranks)
    with pytest.raises(RunLockedError, match=r"WORLD_SIZE=2, this one 1"):
        Evaluator(_cfg(out), fake_components(FakeBenchmark(100), FakeAdapter()), ShardInfo(), progress=False).run()
    assert [p.wait(timeout=300) for p in ranks] == [0, 0]
    ids = [r["sample_id"] for r in read_run_records(out / "fake" / "none")]
    assert Counter(ids) == Counter(f"s{i}" for i in range(100))


def test_an_output_dir_that_is_a_file_is_a_config_error(tmp_path):
    from harness.runner.config import ConfigError

    (tmp_path / "out").write_text("")
    with pytest.raises(ConfigError, match=r"output_dir .*out: cannot be used or locked \(File exists\)"):
        Evaluator(_cfg(tmp_path / "out"), fake_components(FakeBenchmark(2), FakeAdapter()), ShardInfo(),
                  progress=False).run()

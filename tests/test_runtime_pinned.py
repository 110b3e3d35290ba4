"""The worker path across a real version split: transformers 4.55 in the worker, 5.x here.

``make test-runtime`` (part of ``make test``) builds ``.venv-tf455`` from
``configs/runtimes/tf455.txt`` once and points ``HARNESS_TF455_PYTHON`` at it; without it this
module skips and says how to build it. The same config (tiny Qwen2.5-VL, tiny AutoGaze, a
matched baseline) runs in-process on the main venv and through a worker on transformers 4.55;
records must be equal field by field, timers aside (``tests/test_runtime.py``'s comparison).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.runner.engine import Evaluator
from tests.test_runtime import config, differences, records

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

PINNED = os.environ.get("HARNESS_TF455_PYTHON", "")


@pytest.fixture(scope="module")
def pinned_python() -> str:
    if not PINNED or not Path(PINNED).exists():
        pytest.skip("the transformers 4.55 runtime is not built: `make test-runtime` builds .venv-tf455 "
                    "and sets HARNESS_TF455_PYTHON")
    return PINNED


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp() / "harness-cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(root))
    return root


def _transformers_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import transformers; print(transformers.__version__)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_worker_on_transformers_4_55_gives_the_in_process_records(tmp_path, pinned_python):
    import transformers

    theirs = _transformers_version(pinned_python)
    assert theirs.startswith("4.55") and transformers.__version__.split(".")[0] == "5"  # a real split
    inproc, worker = tmp_path / "inproc", tmp_path / "worker"
    Evaluator(config(inproc), progress=False).run()
    result = Evaluator(config(worker, {"python": pinned_python}), progress=False).run()
    a, b = records(inproc), records(worker)
    assert result.written == len(a) == 6 and all(r["error"] is None for r in b.values())
    assert differences(a, b) == []
    run = json.loads(next(worker.rglob("run.json")).read_text())
    assert run["model"]["runtime"]["python"] == pinned_python

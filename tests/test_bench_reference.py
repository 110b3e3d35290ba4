"""Load lmms-eval's own scoring code (the installed package) to test our benchmarks against it.

lmms-eval is installed with ``--no-deps`` (test extra), so importing its packages would pull
heavy dependencies (loguru, evaluate, sacrebleu, cv2...). We load single files by path
instead; where a file needs a dependency we are not testing, a minimal stand-in is injected.
"""

from __future__ import annotations

import ast
import collections
import importlib.util
import math
import sys
import types
from pathlib import Path
from typing import Any

import pytest


def lmms_eval_root() -> Path:
    spec = importlib.util.find_spec("lmms_eval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("lmms-eval is not installed (pip install --no-deps lmms-eval): reference tests need it")
    return Path(next(iter(spec.submodule_search_locations)))


def load_file(name: str, relpath: str) -> types.ModuleType:
    path = lmms_eval_root() / relpath
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lmms_mcq_extract():
    """lmms-eval's ``extract_mcq_answer`` (tasks/_task_utils/mcq_extract.py, a standalone module)."""
    return load_file("_lmms_mcq_extract", "tasks/_task_utils/mcq_extract.py").extract_mcq_answer


def lmms_clustered_stderr():
    """lmms-eval's ``clustered_stderr`` from api/metrics.py, compiled alone (the module imports sacrebleu)."""
    path = lmms_eval_root() / "api" / "metrics.py"
    tree = ast.parse(path.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "clustered_stderr")
    namespace: dict[str, Any] = {"math": math, "collections": collections, "List": list, "Any": Any}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["clustered_stderr"]


class _PyAVCapture:
    """Stand-in for cv2.VideoCapture: fps and frame count by decoding with PyAV."""

    def __init__(self, path: str) -> None:
        import av

        self.fps, self.count = 0.0, 0
        if Path(path).is_file():
            with av.open(path) as c:
                stream = c.streams.video[0]
                self.fps = float(stream.average_rate)
                self.count = sum(1 for _ in c.decode(video=0))

    def get(self, prop: int) -> float:
        return self.fps if prop == 5 else float(self.count)


def lmms_videomme_utils(monkeypatch: pytest.MonkeyPatch, hf_home: Path) -> types.ModuleType:
    """lmms-eval's tasks/videomme/utils.py reading its data from ``hf_home/videomme``."""
    cv2 = types.ModuleType("cv2")
    cv2.VideoCapture = _PyAVCapture
    cv2.CAP_PROP_FPS, cv2.CAP_PROP_FRAME_COUNT = 5, 7
    loguru = types.ModuleType("loguru")
    loguru.logger = types.SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None)
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    monkeypatch.setitem(sys.modules, "loguru", loguru)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    return load_file("_lmms_videomme_utils", "tasks/videomme/utils.py")


def test_reference_functions_load_and_behave():
    mcq = lmms_mcq_extract()
    assert mcq("The correct answer is (B).") == "B"
    se = lmms_clustered_stderr()
    # by hand: var/n = (1/3)/4, cross = (-0.5 - 0.5)/16
    assert math.isclose(se([1.0, 0.0, 1.0, 0.0], ["a", "a", "b", "b"]), math.sqrt(1 / 12 - 1 / 16))

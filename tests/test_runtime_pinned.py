"""The worker path across a real version split: transformers 4.55 in the worker, 5.x here.

``make test-runtime`` (part of ``make test``) builds ``.venv-tf455`` from
``configs/runtimes/tf455.txt`` once and points ``HARNESS_TF455_PYTHON`` at it; without it this
module skips and says how to build it.

The model is NVILA-8B-HD-Video's adapter on the tiny STAND-IN snapshot (tests/test_nvila_standin.py:
remote code with the model card's entry points and call signatures, loaded with
``trust_remote_code``, written by the pinned venv as the real snapshot was by 4.55.4), called as the model card calls it (``video_input: source``:
``processor(videos=<the sample's file>)``), because that is the model which needs the 4.5x line.
(Our Qwen2.5-VL adapter cannot be the one: it is written against transformers >= 5.24 APIs such as
``transformers.vision_utils``, and a 4.55 worker says so in one line, tested below.) The same
config runs in-process on the main venv and through a worker on transformers 4.55; records must
be equal field by field, timers aside (``tests/test_runtime.py``'s comparison).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.runner.config import ConfigError, from_dict
from harness.runner.engine import Evaluator
from tests.test_runtime import BASE, config, differences, records

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

REPO = Path(__file__).resolve().parents[1]
PINNED = os.environ.get("HARNESS_TF455_PYTHON", "")
NVILA_KWARGS = {"video_input": "source", "num_video_frames": 16, "num_video_frames_thumbnail": 4,
                "max_tiles_video": 2, "max_batch_size_siglip": 2, "max_batch_size_autogaze": 16}


@pytest.fixture(scope="module")
def pinned_python() -> str:
    if not PINNED or not Path(PINNED).exists():
        pytest.skip("the transformers 4.55 runtime is not built: `make test-runtime` builds .venv-tf455 "
                    "and sets HARNESS_TF455_PYTHON")
    return str(Path(PINNED).absolute())


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory, pinned_python: str) -> Path:
    """Written by transformers 4.55, as the real snapshot was (4.55.4): a 5.x-written tokenizer
    config names a class 4.55 does not have."""
    out = tmp_path_factory.mktemp("nvila") / "NVILA-standin"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = f"from pathlib import Path; from tests.test_nvila_standin import build_standin; build_standin(Path({str(out)!r}))"
    subprocess.run([pinned_python, "-c", code], env=env, cwd=REPO, check=True, capture_output=True)
    return out


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp() / "harness-cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(root))
    return root


def _transformers_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import transformers; print(transformers.__version__)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def nvila_config(out: Path, standin: Path, runtime: dict[str, Any] | None = None) -> Any:
    data = copy.deepcopy(BASE)
    data.update(output_dir=str(out), pruners=[{"name": "none"}])
    data["model"] = {"family": "nvila_hd_video", "path": str(standin), "device": "cpu", "dtype": "float32",
                     "prune_stage": "pre_vit", "kwargs": NVILA_KWARGS, "trust_remote_code": True}
    if runtime is not None:
        data["model"]["runtime"] = runtime
    return from_dict(data)


def test_nvila_standin_on_transformers_4_55_gives_the_in_process_records(tmp_path, standin, pinned_python):
    import transformers

    theirs = _transformers_version(pinned_python)
    assert theirs.startswith("4.55") and transformers.__version__.split(".")[0] == "5"  # a real split
    inproc, worker = tmp_path / "inproc", tmp_path / "worker"
    Evaluator(nvila_config(inproc, standin), progress=False).run()
    result = Evaluator(nvila_config(worker, standin, {"python": pinned_python}), progress=False).run()
    a, b = records(inproc), records(worker)
    assert result.written == len(a) == 2 and all(r["error"] is None for r in b.values())
    assert differences(a, b) == []
    extra = next(iter(b.values()))["generation_extra"]
    assert extra["video_input"] == "source" and extra["token_counts"]["vit_tokens_tiles"] > 0
    run = json.loads(next(worker.rglob("run.json")).read_text())
    assert run["model"]["runtime"]["python"] == pinned_python and run["worker"]["transformers"] == theirs


def test_an_adapter_that_needs_transformers_5_says_so_in_one_line(tmp_path, pinned_python):
    with pytest.raises(ConfigError) as err:
        Evaluator(config(tmp_path / "out", {"python": pinned_python}), progress=False).run()
    msg = str(err.value)
    assert "\n" not in msg and pinned_python in msg and "No module named 'transformers." in msg


def test_hlvid_reproduce_config_runs_nvila_end_to_end_in_the_pinned_runtime(tmp_path, standin, pinned_python):
    """configs/hlvid_reproduce.yaml's NVILA entries as they are (published gazing settings, the model
    card's call, the runtime) against the stand-in in the 4.55 worker. Swapped: the paths (snapshot,
    AutoGaze, the interpreter), CPU float32, and synthetic videos for HLVid's 150 GB."""
    import yaml

    data = yaml.safe_load((REPO / "configs" / "hlvid_reproduce.yaml").read_text())
    autogaze = tmp_path / "AutoGaze"  # the stand-in's own gazer runs when no replay file is there
    autogaze.mkdir()
    nvila = [m for m in data["models"] if m.get("family") == "nvila_hd_video"]
    assert len(nvila) == 2 and all(m["runtime"] == {"env": "nvila"} for m in nvila)
    for entry in nvila:
        entry.update(path=str(standin), runtime={"python": pinned_python})
        entry["kwargs"]["autogaze_model"] = str(autogaze)
    data.update(output_dir=str(tmp_path / "hlvid"), models=nvila, benchmark={**BASE["benchmark"], "limit": 1})
    data["model"].update(device="cpu", dtype="float32")
    result = Evaluator(from_dict(data), progress=False).run()
    recs = records(tmp_path / "hlvid")
    assert result.written == 2 and all(r["error"] is None for r in recs.values())
    by_model = {r["model"]: r for r in recs.values()}
    on, off = by_model["nvila-8b-hd-video-autogaze"], by_model["nvila-8b-hd-video-gazing-off-matched"]
    assert on["generation_extra"]["settings"]["gazing_ratio_tile"] == [0.2] + [0.06] * 15
    assert on["generation_extra"]["gazing_enabled"] and not off["generation_extra"]["gazing_enabled"]
    assert on["generation_extra"]["video_input"] == off["generation_extra"]["video_input"] == "source"
    counts = on["generation_extra"]["token_counts"]
    assert 0 < counts["vit_tokens_kept"] < counts["vit_tokens_full"]  # AutoGaze dropped patches

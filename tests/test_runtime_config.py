"""``model.runtime``: validation and interpreter resolution (no process started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runner.config import ConfigError, RuntimeConfig, from_dict
from harness.runner.engine import _fingerprint

REPO = Path(__file__).resolve().parents[1]


def test_runtime_defaults_to_in_process():
    assert from_dict({}).model.runtime is None


def test_env_names_a_venv_of_the_checkout():
    rt = from_dict({"model": {"runtime": {"env": "nvila"}}}).model.runtime
    assert rt.interpreter() == str(REPO / ".venv-nvila" / "bin" / "python")
    assert RuntimeConfig(python="/x/bin/python").interpreter() == "/x/bin/python"


@pytest.mark.parametrize("runtime, needle", [
    ({}, "exactly one of runtime.python"),
    ({"python": "/p", "env": "e"}, "exactly one of runtime.python"),
    ({"env": "../up"}, "runtime.env"),
    ({"python": "/p", "timeout_s": 0}, "timeout_s"),
    ({"pyhton": "/p"}, "unknown key 'model.runtime.pyhton'"),
])
def test_bad_runtime_is_one_line(runtime, needle):
    with pytest.raises(ConfigError) as err:
        from_dict({"model": {"runtime": runtime}})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_native_route_refused_in_a_runtime():
    with pytest.raises(ConfigError, match="native"):
        from_dict({"model": {"prune_stage": "native", "runtime": {"python": "/p"}}})


def test_models_entries_take_their_own_runtime():
    cfg = from_dict({"models": [{"name": "a"}, {"name": "b", "runtime": {"python": "/venv/bin/python"}}]})
    a, b = (p.model for p in cfg.plans())
    assert a.runtime is None and b.runtime.python == "/venv/bin/python"


def test_changing_the_runtime_is_a_different_run_but_its_timeout_is_not():
    def run(runtime):
        return {"model": from_dict({"model": {"runtime": runtime}}).model.model_dump()}

    assert _fingerprint(run({"python": "/a"})) != _fingerprint(run({"python": "/b"}))
    assert _fingerprint(run({"python": "/a"})) == _fingerprint(run({"python": "/a", "timeout_s": 60}))


def test_frames_too_large_for_shared_memory_go_to_the_temp_dir(monkeypatch):
    """A container's /dev/shm is often 64 MiB: frames that do not fit are written to the temp dir."""
    import shutil
    from collections import namedtuple

    from harness.runtime.client import WorkerAdapter

    worker = WorkerAdapter("/unused/python", {"family": "x"})
    try:
        small = worker._frames_dir(1 << 10)
        assert small == worker._dir
        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(100 << 20, 90 << 20, 10 << 20))
        big = worker._frames_dir(300 << 20)
        assert big != worker._dir and big.is_dir()
    finally:
        worker.close()
    assert not worker._dir.exists() and not big.exists()


@pytest.mark.parametrize("name", ["fastv", "dycoke", "vidcom2", "visionzip"])
def test_methods_acting_after_the_frames_are_refused_in_a_runtime(name):
    """Only the keep grid crosses to a model runtime's worker (harness/runtime/protocol.py): a
    feature-stage or in-LLM plan would be dropped and the model would run unpruned under the
    method's name. Refused at start-up, and at the wire for any caller that skips the config."""
    import numpy as np

    from harness.pruning import build_pruner
    from harness.pruning.selection import TokenGeometry
    from harness.runner.config import validate_pruner_params
    from harness.runtime.protocol import selection_to_wire

    cfg = from_dict({"model": {"runtime": {"python": "/p"}}, "pruners": [{"name": "none"}, {"name": name}]})
    with pytest.raises(ConfigError, match=f"{name} acts inside the model .* model runtime") as err:
        validate_pruner_params(cfg)
    assert "\n" not in str(err.value)
    validate_pruner_params(from_dict({"model": {"runtime": {"python": "/p"}}, "pruners": ["none", "random"]}))

    geometry = TokenGeometry(num_frames=4, height=56, width=56, patch_size=14)
    selection = build_pruner(name).select(np.zeros((4, 56, 56, 3), np.uint8), geometry, fps=2.0)
    with pytest.raises(ValueError, match=f"'{name}' .* cannot cross to a model runtime"):
        selection_to_wire(selection, Path("/nonexistent"), "keep-1")

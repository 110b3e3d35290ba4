"""The tiny random-weight AutoGaze: published layout, loaded by the real loader, deterministic."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from harness.gaze import AutoGaze
from harness.gaze.config import AutoGazeConfig
from harness.gaze.tiny import build_tiny_autogaze, resolve_gaze_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_autogaze(tmp_path_factory.mktemp("tiny-autogaze"), seed=0)


def _architecture(config: AutoGazeConfig) -> dict:
    fields = dataclasses.asdict(config)
    fields.pop("source")
    fields.pop("default_task_loss_requirement")  # the tiny one's task-loss head is random: no default
    return fields


def test_tiny_has_the_published_architecture(tiny_dir, parity_dir):
    """Same config (architecture and loop settings) and the same tensors, names and shapes, as the
    checkpoint in the published layout."""
    from safetensors.torch import load_file

    tiny = AutoGazeConfig.from_file(tiny_dir / "config.json")
    parity = AutoGazeConfig.from_file(parity_dir / "model" / "config.json")
    assert _architecture(tiny) == _architecture(parity)
    ours = {k: tuple(v.shape) for k, v in load_file(str(tiny_dir / "model.safetensors")).items()}
    theirs = {k: tuple(v.shape) for k, v in load_file(str(parity_dir / "model" / "model.safetensors")).items()}
    assert ours == theirs
    ours_pre = json.loads((tiny_dir / "preprocessor_config.json").read_text())
    theirs_pre = json.loads((parity_dir / "model" / "preprocessor_config.json").read_text())
    assert ours_pre.keys() == theirs_pre.keys()
    for key in ("size", "image_mean", "image_std", "resample", "offset"):
        assert ours_pre[key] == theirs_pre[key], key
    assert ours_pre["rescale_factor"] == pytest.approx(theirs_pre["rescale_factor"])


def test_tiny_loads_strictly_and_is_deterministic(tiny_dir, tmp_path):
    model = AutoGaze.from_pretrained(tiny_dir)
    assert sum(p.numel() for p in model.parameters()) == 3_258_240
    again = build_tiny_autogaze(tmp_path / "again", seed=0)
    assert (again / "model.safetensors").read_bytes() == (tiny_dir / "model.safetensors").read_bytes()
    other = build_tiny_autogaze(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (tiny_dir / "model.safetensors").read_bytes()


def test_tiny_gazes_depend_on_the_video(tiny_dir):
    """Random but not degenerate: the cap is met, and two videos get different gazes."""
    model = AutoGaze.from_pretrained(tiny_dir)
    g = torch.Generator().manual_seed(0)
    clips = torch.randn(2, 4, 3, 224, 224, generator=g) * 0.5
    out = model.gaze(clips, gazing_ratio=0.1)
    cap = int(0.1 * 265)
    real = (~out.if_padded_gazing).sum(dim=1)
    assert real.tolist() == [4 * cap, 4 * cap]
    assert not torch.equal(out.gazing_pos[0], out.gazing_pos[1])


def test_tiny_name_builds_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    path = resolve_gaze_checkpoint("tiny")
    assert path.startswith(str(tmp_path)) and (tmp_path / "tiny-models" / "autogaze-seed0" / ".complete").exists()
    assert resolve_gaze_checkpoint("nvidia/AutoGaze") == "nvidia/AutoGaze"
    assert AutoGaze.from_pretrained("tiny").checkpoint_dir == tmp_path / "tiny-models" / "autogaze-seed0"

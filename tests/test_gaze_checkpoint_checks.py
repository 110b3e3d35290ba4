"""A broken AutoGaze checkpoint that would load is refused at load, in one line naming the cause.

Built on the tiny random-weight AutoGaze (the real loader, the published layout), so these run
on a fresh clone without the shared fixtures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from harness.gaze import AutoGaze, CheckpointError, gaze_video
from harness.gaze.tiny import build_tiny_autogaze

POS = "gazing_model.connector.pos_embed"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_autogaze(tmp_path_factory.mktemp("tiny") / "autogaze")


def _copy(tiny: Path, tmp_path: Path, edit=None) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny, dst)
    if edit is not None:
        state = load_file(str(dst / "model.safetensors"))
        edit(state)
        save_file(state, str(dst / "model.safetensors"))
    return dst


def test_the_tiny_checkpoint_loads_with_its_processor(tiny):
    model = AutoGaze.from_pretrained(tiny)
    assert model.processor.size == {"shortest_edge": 224} and model.processor.offset is True


def test_a_nan_tensor_is_refused_naming_it(tiny, tmp_path):
    def edit(state):
        state[POS][0, 3] = float("nan")

    with pytest.raises(CheckpointError) as info:
        AutoGaze.from_pretrained(_copy(tiny, tmp_path, edit))
    msg = str(info.value)
    assert "\n" not in msg and "corrupt checkpoint: non-finite values (NaN/inf) in 1 tensor(s)" in msg
    assert f"{POS} (1 of {load_file(str(tiny / 'model.safetensors'))[POS].numel()} values)" in msg


def test_all_nan_and_inf_weights_are_refused(tiny, tmp_path):
    def edit(state):
        for name in state:
            state[name] = torch.full_like(state[name], float("nan"))
        state[POS] = torch.full_like(state[POS], float("inf"))

    with pytest.raises(CheckpointError, match=r"in 49 tensor\(s\): .*, \.\.\. \(44 more\)$"):
        AutoGaze.from_pretrained(_copy(tiny, tmp_path, edit))


def test_a_missing_or_broken_preprocessor_config_is_refused(tiny, tmp_path):
    ckpt = _copy(tiny, tmp_path)
    (ckpt / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match=r"lacks preprocessor_config\.json \(the frame resize"):
        AutoGaze.from_pretrained(ckpt)
    (ckpt / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"preprocessor_config\.json: .*not valid JSON"):
        AutoGaze.from_pretrained(ckpt)
    (ckpt / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "CLIPImageProcessor"}))
    with pytest.raises(CheckpointError, match="expected 'AutoGazeImageProcessor'"):
        AutoGaze.from_pretrained(ckpt)


def test_gazing_uses_the_checkpoints_preprocessor_config(tiny, tmp_path):
    """The file is read, not guessed: gaze_video normalises with the values in it."""
    from harness.gaze.tiling import _default_processor

    ckpt = _copy(tiny, tmp_path)
    cfg = json.loads((ckpt / "preprocessor_config.json").read_text())
    cfg["image_mean"] = [0.5, 0.5, 0.5]
    (ckpt / "preprocessor_config.json").write_text(json.dumps(cfg))
    model = AutoGaze.from_pretrained(ckpt)
    assert _default_processor(model) is model.processor and model.processor.image_mean == (0.5, 0.5, 0.5)
    del model.processor  # a checkpoint model that lost its processor never falls back silently
    with pytest.raises(ValueError, match="has no preprocessor config"):
        gaze_video(model, np.zeros((2, 32, 32, 3), np.uint8), gazing_ratio=0.1)


def test_the_autogaze_pruner_run_fails_before_any_sample(tiny, tmp_path):
    from harness.runner.config import ConfigError, load_config
    from harness.runner.engine import Evaluator
    from harness.runner.testing import FakeAdapter, FakeBenchmark, fake_components

    def edit(state):
        state[POS] = torch.full_like(state[POS], float("nan"))

    ckpt = _copy(tiny, tmp_path, edit)
    cfg = load_config(data={"output_dir": str(tmp_path / "out"), "model": {"name": "fake", "path": "/m"},
                            "benchmark": {"name": "fake"}, "frames": {"num_frames": 4},
                            "pruners": [{"name": "autogaze", "params": {"model": str(ckpt)}}]})
    comps = fake_components(FakeBenchmark(2), FakeAdapter())
    from harness.runner.components import Components

    comps.build_pruner = Components().build_pruner  # the real autogaze pruner and loader
    with pytest.raises(ConfigError, match=rf"pruner run 'autogaze': .*non-finite values .* {POS}"):
        Evaluator(cfg, comps, progress=False).run()
    assert not (tmp_path / "out").exists()

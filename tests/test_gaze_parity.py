"""AutoGaze parity with the original implementation (fixture outputs in ../shared), exact.

Every case in cases.json must reproduce gazing_pos / if_padded_gazing / num_gazing_each_frame
(and the tile448 per-scale masks) bit for bit; the processor must match to 1e-5; streaming one
frame at a time must give the whole-clip result (the fixture README checks this on ratio030).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from harness.gaze import AutoGaze, AutoGazeImageProcessor, GazeOutput

# One torch thread per module (fixture in conftest.py): the greedy loop's small ops spin-wait otherwise.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


CASE_NAMES = ["ratio075_tlr-3", "ratio030", "ratio050_tlr-4", "ratio004", "tlr-3.5", "tile448_ratio020"]


@pytest.fixture(scope="module")
def model(parity_dir):
    return AutoGaze.from_pretrained(parity_dir / "model")


@pytest.fixture(scope="module")
def data(parity_dir):
    return load_file(str(parity_dir / "cases.safetensors"))


@pytest.fixture(scope="module")
def cases(parity_dir):
    return json.loads((parity_dir / "cases.json").read_text())["cases"]


def test_fixture_lists_the_cases_we_check(cases):
    assert sorted(cases) == sorted(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_case_exact(name, model, data, cases):
    args = dict(cases[name])
    video = data[args.pop("input", "video")]
    out = model.gaze(video, **args)
    for key in ("gazing_pos", "if_padded_gazing", "num_gazing_each_frame"):
        expected, got = data[f"{name}.{key}"], getattr(out, key)
        assert got.shape == expected.shape, (
            f"{name}.{key}: shape {tuple(got.shape)} != {tuple(expected.shape)}"
        )
        assert got.dtype == expected.dtype, f"{name}.{key}: dtype {got.dtype} != {expected.dtype}"
        assert torch.equal(got, expected), f"{name}.{key}: {(got != expected).sum()} entries differ"
    scale = 0
    while f"{name}.gazing_mask.{scale}" in data:
        assert torch.equal(out.gazing_mask[scale], data[f"{name}.gazing_mask.{scale}"]), (
            f"{name} mask {scale}"
        )
        scale += 1
    # Masks always agree with the real gazes they summarise.
    assert int(sum(m.sum() for m in out.gazing_mask)) == int((~out.if_padded_gazing).sum())


def test_processor_shortest_edge_matches_reference(parity_dir, data):
    proc = AutoGazeImageProcessor.from_pretrained(parity_dir / "model")
    got = proc.preprocess(data["raw_frames"])
    expected = data["raw_frames.processed"]
    assert got.shape == expected.shape == (4, 3, 224, 398)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_processor_square_matches_reference(parity_dir, data):
    proc = AutoGazeImageProcessor.from_pretrained(parity_dir / "model")
    got = proc(data["raw_frames"], size={"height": 224, "width": 224})["pixel_values"]
    expected = data["raw_frames.processed_square224"]
    assert got.shape == (1, *expected.shape)
    assert torch.allclose(got[0], expected, atol=1e-5, rtol=0)


def test_streaming_one_frame_at_a_time_matches_fixture(model, data):
    video = data["video"]
    stream = model.stream(batch_size=video.shape[0], gazing_ratio=0.3)
    parts = [stream.gaze(video[:, t : t + 1]) for t in range(video.shape[1])]
    out = GazeOutput.concat(parts)
    assert [p.frame_offset for p in parts] == list(range(video.shape[1]))
    assert torch.equal(out.gazing_pos, data["ratio030.gazing_pos"])
    assert torch.equal(out.if_padded_gazing, data["ratio030.if_padded_gazing"])
    assert torch.equal(out.num_gazing_each_frame, data["ratio030.num_gazing_each_frame"])


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("name", ["ratio004", "tile448_ratio020"])
def test_device_selection_loop_is_exact(name, static, model, data, cases):
    """The accelerator loop (token choice in torch ops, optionally fixed-shape steps) run on CPU
    still reproduces the original bit for bit (the task-loss cases: tests/test_gaze_stream.py)."""
    args = dict(cases[name])
    video = data[args.pop("input", "video")]
    out = model.gaze(video, selection="torch", static=static, **args)
    assert torch.equal(out.gazing_pos, data[f"{name}.gazing_pos"])
    assert torch.equal(out.if_padded_gazing, data[f"{name}.if_padded_gazing"])

"""lmms-eval 0.7.3's own model classes vs our runner with ``model.preset: lmms-eval`` and pruner none.

The peer is run, not imitated: its CLI (in .venv-lmms, see tests/lmms_eval_peer.py) on a tiny
random-weight checkpoint saved to disk and a local VideoMME-layout task, next to our runner on
the same checkpoint and videos. Per-sample generated text must be identical and the VideoMME
score in lmms-eval's results file equal to ours. The tiny model answers with input-dependent
text (``favour_letters``), and each broken preset key is shown to change some answer, so the
equality can fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.cli.main import main
from harness.models.internvl3 import InternVL3Adapter
from harness.models.qwen2_5_vl import Qwen25VLAdapter
from harness.models.tiny import build_tiny_model, favour_letters
from harness.runner.components import load_frames
from harness.runner.config import load_config
from harness.runner.records import read_run_records
from tests.lmms_eval_peer import (
    QWEN3_VIDEOS,
    TASK,
    VIDEOS,
    hf_video_pixels,
    lmms_python,
    make_videomme,
    qwen_vl_utils_video,
    require_torchcodec,
    run_lmms_eval,
    write_task,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    python = lmms_python()
    root = tmp_path_factory.mktemp("lmms")
    hf_home = root / "hf_home"
    data = make_videomme(hf_home)
    task = write_task(root / "tasks" / TASK, data)
    return python, root, hf_home, data, task


def run_ours(model_dir: Path, family: str, data: Path, out: Path, overrides: tuple[str, ...] = (),
             pruner: str | dict = "none", prompt_style: str = "default") -> tuple[dict, float]:
    """Our runner (preset lmms-eval, one pruner): question_id -> output, and the score in percent."""
    config = {
        "name": "lmms_parity", "output_dir": str(out),
        "model": {"family": family, "path": str(model_dir), "preset": "lmms-eval"},
        "benchmark": {"name": "videomme", "kwargs": {"data_dir": str(data), "prompt_style": prompt_style}, "extraction": "lmms-eval-mcq"},
        "generation": {"max_new_tokens": 16},
        "pruners": [pruner],
    }
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(config))
    sets = [arg for o in overrides for arg in ("--set", o)]
    assert main(["eval", "--config", str(path), "--no-progress", *sets]) == 0
    (run_dir,) = [p.parent for p in out.rglob("run.json")]
    records = read_run_records(run_dir)
    assert all(r["error"] is None for r in records), [r["error"] for r in records]
    outputs = {r["sample_id"]: r["output"] for r in records}
    run_ours.records = {r["sample_id"]: r for r in records}  # for tests that look further
    return outputs, 100.0 * sum(bool(r["correct"]) for r in records) / len(records)


@pytest.fixture(scope="module")
def qwen2_5_vl(peer):
    python, root, hf_home, data, task = peer
    model = build_tiny_model("qwen2_5_vl", root / "qwen2_5_vl", answer_letters=True)
    # --model qwen2_5_vl resolves to lmms-eval's CHAT class (models/chat/qwen2_5_vl.py)
    theirs = run_lmms_eval(python, "qwen2_5_vl", f"pretrained={model},device_map=cpu,device=cpu",
                           task.parent, hf_home, root / "lmms_qwen2_5_vl")
    return model, theirs


def test_qwen2_5_vl_preset_equals_lmms_eval(qwen2_5_vl, peer, tmp_path):
    model, theirs = qwen2_5_vl
    ours, score = run_ours(model, "qwen2_5_vl", peer[3], tmp_path / "ours")
    assert len(theirs.outputs) == 6 and len(set(theirs.outputs.values())) > 1, theirs.outputs
    assert ours == theirs.outputs
    assert score == pytest.approx(theirs.score, abs=1e-9)


@pytest.mark.parametrize("broken", [
    "frames.index_rounding=floor",      # our generic lmms-eval load_video rule
    "model.pipeline.resize=processor",  # the processor's resize at the checkpoint's bounds
    "model.dtype=float32",              # lmms-eval hard-codes bfloat16
])
def test_qwen2_5_vl_broken_preset_differs(qwen2_5_vl, peer, tmp_path, broken):
    model, theirs = qwen2_5_vl
    ours, _ = run_ours(model, "qwen2_5_vl", peer[3], tmp_path / "ours", (broken,))
    assert set(ours) == set(theirs.outputs)
    assert ours != theirs.outputs, f"{broken} did not change any answer: the equality test could not fail"


@pytest.mark.parametrize("video", range(len(VIDEOS)))
def test_qwen2_5_vl_frames_and_fps_equal_qwen_vl_utils(qwen2_5_vl, peer, tmp_path, video):
    """What lmms-eval hands the processor, from qwen-vl-utils itself: frame indices, resized
    pixels (bit for bit) and the fps of its metadata, vs our frames loader + the adapter's resize.

    The fps convention and the even count show here rather than in the answers: on the tiny model
    the temporal positions they move (by up to 8 on the 300-frame clip) and the 25th frame do not
    flip a greedy token.
    """
    model, _ = qwen2_5_vl
    python, _, _, data, _ = peer
    path = data / "data" / f"vid{video}.mp4"
    cfg = load_config(data={"model": {"family": "qwen2_5_vl", "preset": "lmms-eval"}})
    ours = load_frames(str(path), cfg.frames)
    adapter = Qwen25VLAdapter.from_pretrained(str(model), pipeline=cfg.model.pipeline)
    pipe = cfg.model.pipeline
    frames, meta = qwen_vl_utils_video(python, path, len(ours.indices), pipe["min_pixels"], pipe["max_pixels"],
                                       tmp_path / "peer")
    assert ours.indices.tolist() == meta["indices"]
    np.testing.assert_array_equal(adapter.pre_resize(ours.frames), frames.astype(np.uint8))
    assert frames.shape[1] * frames.shape[2] >= pipe["min_pixels"]  # upscaled from 160x120, as lmms-eval does
    assert ours.fps == pytest.approx(meta["sampled_fps"], rel=1e-12)
    span = load_frames(str(path), cfg.frames.model_copy(update={"fps_convention": "span"}))
    assert span.fps != pytest.approx(meta["sampled_fps"], rel=1e-6)  # the broken convention is caught
    floor = load_frames(str(path), cfg.frames.model_copy(update={"index_rounding": "floor"}))
    odd = load_frames(str(path), cfg.frames.model_copy(update={"count_multiple": 1}))
    if video == 1:  # 25 frames: 24 taken (even), where the broken rule takes all 25
        assert len(meta["indices"]) == 24 and len(odd.indices) == 25
    else:
        assert floor.indices.tolist() != meta["indices"]


def test_plugin_in_lmms_eval_cli_equals_our_runner(qwen2_5_vl, peer, tmp_path):
    """``lmms-eval --model harness_qwen2_5_vl`` (our entry point) with a pruner: same answers as
    our runner with that pruner, and kept-token counts in lmms-eval's sample log."""
    model, unpruned = qwen2_5_vl
    python, root, hf_home, data, task = peer
    args = f"pretrained={model},preset=lmms-eval,pruner=random,ratio=0.5,seed=3"
    theirs = run_lmms_eval(python, "harness_qwen2_5_vl", args, task.parent, hf_home, tmp_path / "lmms")
    ours, score = run_ours(model, "qwen2_5_vl", data, tmp_path / "ours",
                           pruner={"name": "random", "params": {"ratio": 0.5, "seed": 3}})
    assert ours == theirs.outputs and score == pytest.approx(theirs.score, abs=1e-9)
    assert ours != unpruned.outputs  # pruning changed answers: the equality is not the unpruned one
    for sample in theirs.samples:
        qid = sample["videomme_perception_score"]["question_id"]
        counts, record = sample["token_counts"][0], run_ours.records[qid]["tokens"]
        assert counts["visual_after"] == record["visual_after"] < counts["visual_before"] == record["visual_before"]
        assert counts["timings"]["prefill"] > 0


def test_plugin_bad_model_args_name_the_valid_ones(peer, qwen2_5_vl, tmp_path):
    model, _ = qwen2_5_vl
    python, root, hf_home, data, task = peer
    for args, message in [
        (f"pretrained={model},pruner=random,gazing_ratio=0.3",
         "unknown --model_args key 'gazing_ratio' (pruner 'random'); valid keys: budget, device, dtype, "
         "num_frames, preset, pretrained, prune_stage, pruner, ratio, seed"),
        (f"pretrained={model},preset=lmms", "unknown preset 'lmms'; valid presets: lmms-eval"),
    ]:
        with pytest.raises(pytest.fail.Exception, match="wrote no samples") as failed:
            run_lmms_eval(python, "harness_qwen2_5_vl", args, task.parent, hf_home, tmp_path / "bad")
        assert message in str(failed.value)


@pytest.fixture(scope="module")
def qwen3_vl(tmp_path_factory):
    python = lmms_python()
    root = tmp_path_factory.mktemp("lmms3")
    hf_home = root / "hf_home"
    data = make_videomme(hf_home, QWEN3_VIDEOS)
    task = write_task(root / "tasks" / TASK, data)
    # seed 1 with a small letter margin: seed 0 answers "CCCC..." whatever the input
    model = build_tiny_model("qwen3_vl", root / "qwen3_vl", seed=1)
    favour_letters(model, margin=1.0)
    # --model qwen3_vl resolves to lmms-eval's CHAT class (models/chat/qwen3_vl.py); the task's
    # qwen3_vl prompt style is picked by that model name
    theirs = run_lmms_eval(python, "qwen3_vl", f"pretrained={model},device_map=cpu,device=cpu",
                           task.parent, hf_home, root / "lmms_qwen3_vl")
    return model, data, theirs


def test_qwen3_vl_preset_equals_lmms_eval(qwen3_vl, tmp_path):
    model, data, theirs = qwen3_vl
    ours, score = run_ours(model, "qwen3_vl", data, tmp_path / "ours", prompt_style="qwen3_vl")
    assert len(theirs.outputs) == 6 and len(set(theirs.outputs.values())) > 1, theirs.outputs
    assert ours == theirs.outputs
    assert score == pytest.approx(theirs.score, abs=1e-9)


@pytest.mark.parametrize("broken", [
    "frames.fps_convention=count",       # frames 0..T-1 at the sampled rate: other timestamps
    "frames.index_rounding=floor",
    "model.pipeline.min_pixels=100352",  # qwen-vl-utils' own default (128 tokens of 32 px) instead of 256*28*28
])
def test_qwen3_vl_broken_preset_differs(qwen3_vl, tmp_path, broken):
    model, data, theirs = qwen3_vl
    ours, _ = run_ours(model, "qwen3_vl", data, tmp_path / "ours", (broken,), prompt_style="qwen3_vl")
    assert set(ours) == set(theirs.outputs)
    assert ours != theirs.outputs, f"{broken} did not change any answer: the equality test could not fail"


@pytest.fixture(scope="module")
def llava_onevision(tmp_path_factory):
    python = lmms_python()
    root = tmp_path_factory.mktemp("lmms_llava")
    hf_home = root / "hf_home"
    data = make_videomme(hf_home, QWEN3_VIDEOS)  # at least 32 frames: lmms-eval would repeat frames
    task = write_task(root / "tasks" / TASK, data)
    model = build_tiny_model("llava_onevision", root / "llava_onevision", answer_letters=True)
    # `--model llava_hf --force_simple`: lmms-eval's simple HF class (models/simple/llava_hf.py)
    theirs = run_lmms_eval(python, "llava_hf", f"pretrained={model},device_map=cpu,device=cpu",
                           task.parent, hf_home, root / "lmms_llava", extra=("--force_simple",))
    return model, data, theirs


def test_llava_onevision_preset_equals_lmms_eval(llava_onevision, tmp_path):
    model, data, theirs = llava_onevision
    ours, score = run_ours(model, "llava_onevision", data, tmp_path / "ours")
    assert len(theirs.outputs) == 6 and len(set(theirs.outputs.values())) > 1, theirs.outputs
    assert ours == theirs.outputs
    assert score == pytest.approx(theirs.score, abs=1e-9)


@pytest.mark.parametrize("broken", [
    "frames.index_rounding=nearest",
    "model.pipeline.prompt=processor",  # [video, text] through the processor's template
])
def test_llava_onevision_broken_preset_differs(llava_onevision, tmp_path, broken):
    model, data, theirs = llava_onevision
    ours, _ = run_ours(model, "llava_onevision", data, tmp_path / "ours", (broken,))
    assert set(ours) == set(theirs.outputs)
    assert ours != theirs.outputs, f"{broken} did not change any answer: the equality test could not fail"


@pytest.fixture(scope="module")
def internvl3(tmp_path_factory):
    python = lmms_python()
    root = tmp_path_factory.mktemp("lmms_internvl")
    hf_home = root / "hf_home"
    data = make_videomme(hf_home, QWEN3_VIDEOS)  # at least 32 frames: transformers' sampler refuses fewer
    require_torchcodec(python, data / "data" / "vid0.mp4")
    task = write_task(root / "tasks" / TASK, data)
    model = build_tiny_model("internvl3", root / "internvl3", answer_letters=True)
    # `--model internvl_hf`: lmms-eval's chat class (models/chat/internvl_hf.py), the only internvl_hf;
    # transformers decodes the video path itself (torchcodec + the system FFmpeg libraries)
    theirs = run_lmms_eval(python, "internvl_hf", f"pretrained={model},device_map=cpu,device=cpu",
                           task.parent, hf_home, root / "lmms_internvl")
    return model, data, theirs


def test_internvl3_preset_equals_lmms_eval(internvl3, tmp_path):
    model, data, theirs = internvl3
    ours, score = run_ours(model, "internvl3", data, tmp_path / "ours")
    # the chat class answers "" when generate raises (it logs "Error ... in generating")
    assert all(theirs.outputs.values()), theirs.log[-3000:]
    assert len(theirs.outputs) == 6 and len(set(theirs.outputs.values())) > 1, theirs.outputs
    assert ours == theirs.outputs
    assert score == pytest.approx(theirs.score, abs=1e-9)


@pytest.mark.parametrize("broken", [
    "frames.num_frames=16",             # another frame count than the class's num_frames=32
    "frames.index_rounding=floor",      # lmms-eval's generic load_video rule instead of segment centres
    "model.dtype=float32",              # the class hard-codes bfloat16
])
def test_internvl3_broken_preset_differs(internvl3, tmp_path, broken):
    model, data, theirs = internvl3
    ours, _ = run_ours(model, "internvl3", data, tmp_path / "ours", (broken,))
    assert set(ours) == set(theirs.outputs)
    assert ours != theirs.outputs, f"{broken} did not change any answer: the equality test could not fail"


@pytest.mark.parametrize("video", range(len(QWEN3_VIDEOS)))
def test_internvl3_frames_equal_transformers_video_loader(internvl3, tmp_path, video):
    """What the chat class's processor makes of the video PATH (torchcodec decode, InternVL's
    segment-centre sampler, its resize), from transformers itself in .venv-lmms: the same frame
    indices and bit-identical pixel_values as our frames loader (PyAV) + the adapter's processor.
    (``pipeline.stop`` is not caught by answers: the tiny model never emits the second eos id.)"""
    model, data, _ = internvl3
    path = data / "data" / f"vid{video}.mp4"
    cfg = load_config(data={"model": {"family": "internvl3", "preset": "lmms-eval"}})
    ours = load_frames(str(path), cfg.frames)
    adapter = InternVL3Adapter.from_pretrained(str(model), pipeline=cfg.model.pipeline)
    pixels, indices = hf_video_pixels(lmms_python(), model, path, cfg.frames.num_frames, tmp_path / "peer")
    assert ours.indices.tolist() == indices
    ours_pixels = adapter.preprocess(ours.frames, "q")["pixel_values"].numpy()
    np.testing.assert_array_equal(ours_pixels, pixels)
    floor = load_frames(str(path), cfg.frames.model_copy(update={"index_rounding": "floor"}))
    assert floor.indices.tolist() != indices  # the broken rule is caught

"""``model.preset`` / ``model.pipeline`` and the frame knobs they set: merging, bad input, effects.

The equality with lmms-eval itself is tests/test_lmms_eval_parity.py (needs .venv-lmms); these
run everywhere, in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.models.internvl3 import InternVLPipeline
from harness.models.llava_onevision import LlavaPipeline
from harness.models.pipeline import parse_pipeline
from harness.models.qwen2_5_vl import QwenPipeline
from harness.models.qwen3_vl import Qwen3VLAdapter
from harness.runner.components import count_fps
from harness.runner.config import ConfigError, load_config
from harness.runner.presets import preset_families, preset_names, preset_settings
from harness.video.sampling import sample_indices
from harness.video.types import VideoMeta


def meta(n: int, fps: float = 30.0) -> VideoMeta:
    return VideoMeta(path="v.mp4", num_frames=n, fps=fps, duration_s=n / fps, width=64, height=48, codec="h264",
                     decoder="pyav")


def test_preset_fills_keys_the_config_does_not_set():
    cfg = load_config(data={"model": {"family": "qwen2_5_vl", "preset": "lmms-eval",
                                      "pipeline": {"max_pixels": 1000000}},
                            "frames": {"num_frames": 64}})
    assert cfg.model.dtype == "bfloat16"
    assert cfg.model.pipeline["resize"] == "qwen_vl_utils" and cfg.model.pipeline["max_pixels"] == 1000000
    assert cfg.frames.num_frames == 64  # set by the config: kept
    assert (cfg.frames.index_rounding, cfg.frames.count_multiple, cfg.frames.fps_convention) == ("nearest", 2, "count")
    assert cfg.frames.resolution is None


def test_models_entries_take_the_preset_of_their_own_family():
    cfg = load_config(data={"model": {"family": "qwen2_5_vl", "preset": "lmms-eval"},
                            "models": [{"name": "a"}, {"name": "b", "family": "llava_onevision", "preset": None}]})
    a, b = cfg.plans()
    assert a.model.pipeline["resize"] == "qwen_vl_utils" and a.frames.index_rounding == "nearest"
    assert b.model.pipeline == {}  # a pipeline is per family: not inherited across families


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"model.preset: unknown preset 'lmms'; valid presets: lmms-eval"):
        load_config(data={"model": {"preset": "lmms"}})


def test_preset_without_the_family_says_so():
    with pytest.raises(ConfigError, match=r"preset 'lmms-eval' has no settings for model family 'nvila_hd_video'; "
                                          r"it has: .*qwen2_5_vl"):
        load_config(data={"model": {"family": "nvila_hd_video", "preset": "lmms-eval"}})
    with pytest.raises(ConfigError, match=r"models.0.preset: .*no settings for model family 'nvila_hd_video'"):
        load_config(data={"model": {"preset": "lmms-eval"}, "models": [{"family": "nvila_hd_video"}]})


@pytest.mark.parametrize(("key", "value", "message"), [
    ("index_rounding", "round", r"frames\.index_rounding: valid choices: floor, nearest, centers \(got 'round'\)"),
    ("fps_convention", "frames", r"frames\.fps_convention: valid choices: span, count, source \(got 'frames'\)"),
    ("count_multiple", 0, r"frames\.count_multiple: Input should be greater than or equal to 1 \(got 0\)"),
])
def test_bad_frame_knobs_name_the_valid_values(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(data={"frames": {key: value}})


def test_unknown_pipeline_key_lists_the_valid_keys():
    with pytest.raises(ValueError, match=r"unknown model.pipeline key 'resise' for qwen2_5_vl; valid keys: "
                                         r"frame_max_pixels, max_pixels, min_pixels, processor_resize, resize, stop, "
                                         r"system_prompt, text_positions, total_pixels"):
        parse_pipeline(QwenPipeline, {"resise": "x"}, "qwen2_5_vl")
    with pytest.raises(ValueError, match=r"model.pipeline.resize 'area' for qwen2_5_vl; valid choices: processor, "):
        parse_pipeline(QwenPipeline, {"resize": "area"}, "qwen2_5_vl")
    with pytest.raises(ValueError, match="resize qwen_vl_utils needs min_pixels, frame_max_pixels, total_pixels"):
        parse_pipeline(QwenPipeline, {"resize": "qwen_vl_utils"}, "qwen2_5_vl")


def test_every_preset_entry_parses():
    for name in preset_names():
        for family in preset_families(name):
            settings = preset_settings(name, family)
            cls = {"llava_onevision": LlavaPipeline, "internvl3": InternVLPipeline}.get(family, QwenPipeline)
            parse_pipeline(cls, settings["model"]["pipeline"], family)
            load_config(data={"model": {"family": family, "preset": name}})


def test_the_lmms_eval_preset_and_the_family_specs_name_the_same_families():
    """``FamilySpec.lmms_eval_model`` says which lmms-eval model the ``lmms-eval`` preset reproduces:
    a family with a preset entry names it, and a family that names one has a preset entry."""
    from harness.models.registry import all_specs

    named = {family for family, spec in all_specs().items() if spec.lmms_eval_model}
    assert named == set(preset_families("lmms-eval"))


def test_nearest_rounding_and_even_count():
    # 1,800 frames, 32 wanted: the example, 15 of 32 indices differ between the two rules
    floor = sample_indices(meta(1800), num_frames=32)
    near = sample_indices(meta(1800), num_frames=32, rounding="nearest")
    assert int((floor != near).sum()) == 15 and np.abs(floor - near).max() == 1
    assert near[0] == 0 and near[-1] == 1799
    # float32 linspace, halves to even: 0..63 in 32 steps -> 63/31 * k
    expected = [int(np.round(np.float32(63 / 31) * np.float32(k))) for k in range(32)]
    assert sample_indices(meta(64), num_frames=32, rounding="nearest").tolist()[:3] == expected[:3]
    assert len(sample_indices(meta(25), num_frames=32, count_multiple=2)) == 24
    assert len(sample_indices(meta(25), num_frames=32)) == 25
    with pytest.raises(ValueError, match="fewer than count_multiple=2"):
        sample_indices(meta(1), num_frames=32, count_multiple=2)


def test_centers_rounding_is_transformers_internvl_sampler():
    """``index_rounding: centers`` = InternVLVideoProcessor.sample_frames (lmms-eval's internvl_hf)."""
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor
    from transformers.video_utils import VideoMetadata

    processor = InternVLVideoProcessor()
    for total in (32, 33, 64, 100, 300, 1800, 2999):
        for n in (1, 16, 32):
            theirs = processor.sample_frames(VideoMetadata(total_num_frames=total, fps=30.0), num_frames=n)
            assert sample_indices(meta(total), num_frames=n, rounding="centers").tolist() == theirs.tolist()
    # never the first frame: 64 frames, 32 wanted -> 1, 3, 5, ... where floor takes 0, 2, 4, ...
    assert sample_indices(meta(64), num_frames=32, rounding="centers").tolist()[:3] == [1, 3, 5]
    assert sample_indices(meta(64), num_frames=32).tolist()[:3] == [0, 2, 4]


def test_count_fps_is_qwen_vl_utils_sample_fps():
    assert count_fps(32, 1800, 30.0) == pytest.approx(32 / 60)
    assert count_fps(32, 64, 25.0) == 12.5


def test_system_prompt_and_processor_resize_knobs(tmp_path):
    from harness.models.tiny import build_tiny_model

    model_dir = build_tiny_model("qwen3_vl", tmp_path / "m")
    adapter = Qwen3VLAdapter.from_pretrained(str(model_dir), pipeline={"system_prompt": "Be brief.",
                                                                      "processor_resize": False})
    text = adapter.chat_text("Q?")
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>") and "helpful assistant" not in text
    assert adapter.token_geometry(4, 96, 128).height == 96  # the processor keeps the size it is given
    with pytest.raises(Exception, match="processor_resize false needs frame sides that are multiples of 32 px, got 128x100"):  # ... so it must fit the patch grid
        adapter.generate(np.zeros((4, 100, 128, 3), np.uint8), None, "Q?", fps=1.0, max_new_tokens=1)


def test_vllm_backend_refuses_presets_and_pipeline_keys_in_one_line():
    """The vLLM backend preprocesses with vLLM's own processors: a preset cannot hold there, so it is
    refused before anything loads; ``text_positions`` is the one pipeline key it follows."""
    from harness.runner.components import load_adapter

    cfg = load_config(data={"model": {"family": "qwen2_5_vl", "path": "/models/q", "preset": "lmms-eval"},
                            "backend": "vllm"})
    with pytest.raises(ConfigError, match=r"^model.preset 'lmms-eval' is not supported by the vllm backend "
                                          r"\(its preprocessing is vLLM's own\); use backend: transformers$"):
        load_adapter(cfg.model, "vllm", "cpu")
    cfg = load_config(data={"model": {"family": "qwen2_5_vl", "path": "/models/q",
                                      "pipeline": {"stop": "tokenizer_eos", "text_positions": "transformers"}}})
    with pytest.raises(ConfigError, match=r"^model.pipeline keys stop are not supported by the vllm backend; "
                                          r"it takes only text_positions$"):
        load_adapter(cfg.model, "vllm", "cpu")

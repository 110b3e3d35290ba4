"""NvilaHDVideoAdapter plumbing, tested on a tiny STAND-IN model directory the tests write.

The stand-in (tests/test_nvila_standin.py) is NOT NVIDIA's code: it is a ``trust_remote_code``
module with the snapshot's entry points (configuration_nvila.py / modeling_nvila.py /
processing_nvila.py + config.json auto_map) and the documented processor/model behaviour, with
random tiny weights. What is tested here is the adapter: snapshot checks and the download
message, config -> processor/model settings, token accounting (kept gazes per tile/thumbnail,
LLM visual tokens), stage timings, equality with driving the stand-in by hand, and that our
AutoGaze swapped into the processor gives the reference AutoGaze's gazes (parity fixture).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from harness.models.common import StageTimer
from harness.models.nvila_hd_video import (
    HarnessAutoGazeShim,
    NvilaHDVideoAdapter,
    NvilaSettings,
    NvilaSnapshotError,
    install_gaze_model,
)
from harness.models.registry import get_adapter_class
from harness.pruning.selection import Selection
from tests.test_nvila_standin import build_standin

PER_FRAME = 4 + 16 + 49 + 196  # stand-in scales 32+64+112+224, patch 16
SMALL = {
    "trust_remote_code": True,
    "num_video_frames": 16,
    "num_video_frames_thumbnail": 4,
    "max_tiles_video": 2,
    "max_batch_size_siglip": 1,
    "max_batch_size_autogaze": 16,
}


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_standin(tmp_path_factory.mktemp("nvila") / "NVILA-standin")


def _frames(t: int = 16, h: int = 224, w: int = 448, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(t, h // 16, w // 16, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, 16, axis=1), 16, axis=2)  # blocky, so patch variances differ


def test_registry_and_missing_snapshot_message(tmp_path: Path) -> None:
    assert get_adapter_class("nvila_hd_video") is NvilaHDVideoAdapter
    with pytest.raises(NvilaSnapshotError, match=r"nvidia/NVILA-8B-HD-Video.*hf download"):
        NvilaHDVideoAdapter.from_pretrained(str(tmp_path / "nowhere"), trust_remote_code=True)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "modeling_nvila.X"}}))
    with pytest.raises(NvilaSnapshotError, match=r"missing \['configuration_nvila.py', 'modeling_nvila.py'"):
        NvilaHDVideoAdapter.from_pretrained(str(partial), trust_remote_code=True)


def test_settings_map_onto_the_model_card_names() -> None:
    s = NvilaSettings.from_kwargs({"num_video_frames": 256, "max_tiles_video": 12, "gazing_ratio_tile": 0.1})
    kw = s.processor_kwargs()
    assert kw["num_video_frames"] == 256 and kw["max_tiles_video"] == 12 and kw["gazing_ratio_tile"] == 0.1
    assert kw["num_video_frames_thumbnail"] == 64 and kw["task_loss_requirement_tile"] == 0.6
    assert kw["gazing_ratio_thumbnail"] == 1 and kw["task_loss_requirement_thumbnail"] is None
    assert kw["max_batch_size_autogaze"] == 16 and "autogaze_model_id" not in kw
    assert s.model_kwargs() == {"max_batch_size_siglip": 32}
    assert NvilaSettings().gazing_ratio_tile == [0.2] + [0.06] * 15 and NvilaSettings().gazing_enabled()
    off = NvilaSettings.from_kwargs({"gazing": "off"})
    assert off.gazing_ratio_tile == 1 and off.task_loss_requirement_tile is None and not off.gazing_enabled()
    with pytest.raises(ValueError, match="unknown model.kwargs.*gazing_ratio_tile"):
        NvilaSettings.from_kwargs({"gazing_ratio": 0.3})
    with pytest.raises(ValueError, match="gaze_backend"):
        NvilaSettings.from_kwargs({"gaze_backend": "fast"})


def test_generate_records_kept_tokens_and_stage_timings(standin: Path) -> None:
    adapter = NvilaHDVideoAdapter.from_pretrained(str(standin), **SMALL)
    proc = adapter.processor
    assert (
        proc.num_video_frames == 16 and proc.max_tiles_video == 2 and adapter.model.max_batch_size_siglip == 1
    )
    assert proc.gazing_ratio_tile == [0.2] + [0.06] * 15 and proc.task_loss_requirement_tile == 0.6
    frames = _frames()
    gen = adapter.generate(frames, None, "Question: what?\nA. x\nB. y", fps=4.0, max_new_tokens=3)

    # the stand-in's gazer keeps exactly its per-frame cap: int(0.2*265) then int(0.06*265)
    first, rest = int(0.2 * PER_FRAME), int(0.06 * PER_FRAME)
    counts = gen.extra["token_counts"]
    assert gen.extra["num_tiles"] == [2]  # 224 x 448 -> 1 x 2 tiles of 224, one 16-frame clip
    assert gen.extra["vit_kept_per_tile"] == [first + 15 * rest] * 2
    assert gen.extra["vit_kept_per_tile_stats"] == {"n": 2, "min": 278.0, "mean": 278.0, "max": 278.0}
    assert "vit_kept_per_thumbnail" not in gen.extra  # thumbnails not gazed (ratio 1)
    assert counts["vit_tokens_tiles"] == 2 * (first + 15 * rest)
    assert counts["vit_tokens_thumbnails"] == counts["vit_tokens_thumbnails_full"] == 4 * PER_FRAME  # ratio 1
    assert counts["vit_tokens_tiles_full"] == 2 * 16 * PER_FRAME
    llm = 2 * (math.ceil(first / 9) + 15 * math.ceil(rest / 9)) + 4 * math.ceil(PER_FRAME / 9)
    assert gen.tokens.visual_after == counts["llm_visual_tokens"] == llm
    assert gen.tokens.visual_before > gen.tokens.visual_after and gen.extra["visual_before_estimated"]
    assert gen.tokens.generated == len(gen.extra["output_ids"]) <= 3

    # every stage measured; the ViT ran once per tile / thumbnail batch (max_batch_size_siglip=1)
    assert set(gen.timings) == {"gaze", "vision", "prefill", "generate"}
    assert all(v > 0 for v in gen.timings.values())
    assert gen.extra["gaze_calls"] == 1 and gen.extra["vision_calls"] == 2 + 4
    assert proc.calls[-1][0] == "tiles" and proc.calls[-1][1] == (2, 16, 3, 224, 224)

    # the adapter only measures: driving the stand-in by hand gives the same prompt and answer
    from PIL import Image

    inputs = proc(
        text="<vila/video>\n\nQuestion: what?\nA. x\nB. y", videos=[[Image.fromarray(f) for f in frames]]
    )
    assert int(inputs["input_ids"].shape[1]) == gen.tokens.prompt
    with torch.inference_mode():
        ids = adapter.model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert ids[0, inputs["input_ids"].shape[1] :].tolist() == gen.extra["output_ids"]


def test_gazing_off_encodes_every_patch_and_never_calls_autogaze(standin: Path) -> None:
    adapter = NvilaHDVideoAdapter.from_pretrained(str(standin), gazing="off", **SMALL)
    gen = adapter.generate(
        _frames(), Selection.keep_all(adapter.token_geometry(16, 224, 448)), "Q", fps=4.0, max_new_tokens=2
    )
    c = gen.extra["token_counts"]
    assert c["vit_tokens_kept"] == c["vit_tokens_full"] == (2 * 16 + 4) * PER_FRAME
    assert gen.tokens.visual_after == gen.tokens.visual_before == (2 * 16 + 4) * math.ceil(PER_FRAME / 9)
    assert "gaze" not in gen.timings and gen.extra["gaze_calls"] == 0 and not gen.extra["gazing_enabled"]


def test_pruned_selections_are_refused_with_the_reason(standin: Path) -> None:
    adapter = NvilaHDVideoAdapter.from_pretrained(str(standin), **SMALL)
    sel = Selection.keep_all(adapter.token_geometry(16, 224, 448), pruner="random")
    sel.keep[0] = False
    with pytest.raises(ValueError, match="gazing happens inside NVILA's own processor"):
        adapter.generate(_frames(), sel, "Q", fps=4.0)


def test_video_input_path_hands_the_processor_a_lossless_file(standin: Path) -> None:
    adapter = NvilaHDVideoAdapter.from_pretrained(str(standin), video_input="path", **SMALL)
    frames = _frames(seed=3)
    a = adapter.generate(frames, None, "Q", fps=4.0, max_new_tokens=2)
    b = NvilaHDVideoAdapter.from_pretrained(str(standin), **SMALL).generate(
        frames, None, "Q", fps=4.0, max_new_tokens=2
    )
    assert (
        a.extra["token_counts"] == b.extra["token_counts"] and a.extra["output_ids"] == b.extra["output_ids"]
    )


def test_video_input_source_makes_the_model_card_call(standin: Path, tmp_path: Path) -> None:
    """``source``: the processor gets the sample's own file as one path string (the model card's
    ``videos=video_path``) and samples it itself; a lossless file of the same frames gives what the
    decoded frames give. Without the path it refuses in one line."""
    from harness.video.writer import write_video

    frames = _frames(seed=4)
    video = tmp_path / "sample.mkv"
    write_video(video, frames, fps=4.0, codec="ffv1", pix_fmt="bgr0")
    adapter = NvilaHDVideoAdapter.from_pretrained(str(standin), video_input="source", **SMALL)
    assert adapter.wants_video_path
    seen: list = []
    call = adapter.processor.__class__.__call__

    def spy(self, text=None, videos=None, **kw):
        seen.append(videos)
        return call(self, text=text, videos=videos, **kw)

    adapter.processor.__class__.__call__ = spy
    try:
        a = adapter.generate(frames[:2], None, "Q", fps=4.0, max_new_tokens=2, video_path=str(video))
    finally:
        adapter.processor.__class__.__call__ = call
    assert seen == [str(video)] and a.extra["video_input"] == "source"
    b = NvilaHDVideoAdapter.from_pretrained(str(standin), **SMALL).generate(frames, None, "Q", fps=4.0,
                                                                            max_new_tokens=2)
    assert a.extra["token_counts"] == b.extra["token_counts"] and a.extra["output_ids"] == b.extra["output_ids"]
    with pytest.raises(ValueError, match="needs the sample's video file"):
        adapter.generate(frames, None, "Q", fps=4.0, max_new_tokens=2)


def test_our_autogaze_in_the_processor_gives_the_reference_gazes(
    standin: Path, parity_dir: Path, tmp_path: Path
) -> None:
    """The stand-in's own gaze step replays the REFERENCE AutoGaze's recorded outputs (parity case
    ratio004, clip 0: no padding, so one clip's gazes equal its row of the batch); with our AutoGaze
    swapped in through the processor's ``_autogaze_model`` hook, the processor builds the same
    gazing_info and the same prompt."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoProcessor

    cases = load_file(str(parity_dir / "cases.safetensors"))
    clip = cases["video"][:1].contiguous()
    replay = tmp_path / "replay-gaze"
    replay.mkdir()
    assert not bool(cases["ratio004.if_padded_gazing"].any())
    save_file(
        {
            "video": clip,
            "gazing_pos": cases["ratio004.gazing_pos"][:1].contiguous(),
            "if_padded_gazing": cases["ratio004.if_padded_gazing"][:1].contiguous(),
            "num_gazing_each_frame": cases["ratio004.num_gazing_each_frame"],
        },
        str(replay / "replay.safetensors"),
    )
    (replay / "replay.json").write_text(json.dumps({"gazing_ratio": 0.04, "task_loss_requirement": None}))
    kwargs = {
        "autogaze_model_id": str(replay),
        "gazing_ratio_tile": 0.04,
        "task_loss_requirement_tile": None,
        "num_video_frames_thumbnail": 4,
    }
    proc = AutoProcessor.from_pretrained(standin, trust_remote_code=True, local_files_only=True, **kwargs)
    text = "<vila/video>\n\nQ"
    ref = proc(text=text, videos=[clip])

    shim = HarnessAutoGazeShim.from_pretrained(parity_dir / "model")
    assert shim.config.max_num_frames == 16 and shim.config.scales == "32+64+112+224"
    clock = StageTimer("cpu")
    install_gaze_model(proc, shim, clock)
    ours = proc(text=text, videos=[clip])
    assert clock.calls["gaze"] == 1 and clock.seconds["gaze"] > 0
    for key in ("gazing_pos_tiles", "if_padded_gazing_tiles", "num_gazing_each_frame_tiles"):
        assert torch.equal(ours["gazing_info"][key][0], ref["gazing_info"][key][0]), key
    assert torch.equal(ours["input_ids"], ref["input_ids"])


def test_hlvid_configs_are_valid_and_run_nvila_in_its_runtime() -> None:
    """configs/hlvid_reproduce.yaml and hlvid_defaults.yaml load with the runner's validator, every
    NVILA entry's kwargs are accepted by NvilaSettings, runs in the ``nvila`` runtime and makes the
    model card's call (``video_input: source``)."""
    from harness.runner.config import load_config, validate_names

    root = Path(__file__).resolve().parents[1] / "configs"
    names = []
    for name in ("hlvid_reproduce", "hlvid_defaults"):
        cfg = load_config(data=yaml.safe_load((root / f"{name}.yaml").read_text()))
        validate_names(cfg)
        names.append(cfg.name)
        for plan in cfg.plans():
            if plan.model.family == "nvila_hd_video":
                assert [p.name for p in plan.pruners] == ["none"]
                assert plan.model.runtime is not None and plan.model.runtime.env == "nvila"
                s = NvilaSettings.from_kwargs(plan.model.kwargs)
                assert s.video_input == "source"
                if "gazing-off" in plan.model.label:
                    assert not s.gazing_enabled()
                else:
                    assert s.gazing_ratio_tile == [0.2] + [0.06] * 15 and s.task_loss_requirement_tile == 0.6
            else:
                assert plan.model.runtime is None
    assert names == ["hlvid_reproduce", "hlvid_defaults"]


def test_harness_gaze_backend_installs_our_autogaze_in_the_processor(standin: Path, parity_dir: Path) -> None:
    adapter = NvilaHDVideoAdapter.from_pretrained(
        str(standin), gaze_backend="harness", autogaze_model=str(parity_dir / "model"), **SMALL
    )
    gaze = adapter.processor._autogaze_model
    assert isinstance(gaze.inner, HarnessAutoGazeShim)
    assert gaze.config.max_num_frames == 16  # attribute reads fall through the timing wrapper
    assert adapter.processor.autogaze_model_id == str(parity_dir / "model")

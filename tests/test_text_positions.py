"""``model.pipeline.text_positions``: where M-RoPE text resumes after a video (Qwen2.5-VL, Qwen3-VL).

transformers 5.3.0 changed ``get_rope_index``: text after a video now resumes at the video's
start + max(h, w) / merge; Qwen's reference rule (training, transformers <= 5.2.0) resumes after
the video's largest position. On a long clip at a low frame rate the temporal positions run far
past the spatial ones, so the two rules put the question hundreds of positions apart.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.models.qwen2_5_vl import Qwen25VLAdapter, reference_text_positions
from harness.models.qwen3_vl import Qwen3VLAdapter
from harness.models.tiny import build_tiny_model

ADAPTERS = {"qwen2_5_vl": Qwen25VLAdapter, "qwen3_vl": Qwen3VLAdapter}


@pytest.fixture(scope="module", params=sorted(ADAPTERS))
def family_dir(request, tmp_path_factory):
    return request.param, build_tiny_model(request.param, tmp_path_factory.mktemp(request.param))


def positions(family: str, model_dir, rule: str, frames: np.ndarray, fps: float):
    adapter = ADAPTERS[family].from_pretrained(str(model_dir), pipeline={"text_positions": rule})
    batch = adapter.prepare(frames, "What happens?", fps=fps).batch
    return adapter, batch, adapter.rope_index(batch)[:, 0]


def test_both_rules_on_a_long_video(family_dir):
    family, model_dir = family_dir
    frames = np.random.default_rng(0).integers(0, 256, (64, 112, 112, 3), dtype=np.uint8)
    fps = 0.25  # 64 frames over 252 s: Qwen2.5-VL's temporal step is 2 s / frame x 2 tokens/s x 2 = 16
    _, batch, stock = positions(family, model_dir, "transformers", frames, fps)
    adapter, _, ref = positions(family, model_dir, "reference", frames, fps)
    video = batch["input_ids"][0] == adapter.video_token_id
    last = int(video.nonzero().max())  # the last video token; the question text follows
    first_text = last + 1
    # video tokens: the same positions under both rules
    torch.testing.assert_close(stock[:, video], ref[:, video], rtol=0, atol=0)
    # reference: text resumes right after the largest position used so far
    assert int(ref[0, first_text]) == int(ref[:, :first_text].max()) + 1
    assert (ref[:, first_text:] - ref[0, first_text] == torch.arange(ref.shape[1] - first_text)).all()
    if family == "qwen2_5_vl":
        # transformers >= 5.3: start of the video + max(h, w) / merge = start + 4 on 112 px frames
        start = int(stock[0, video.nonzero().min()])
        assert int(stock[0, first_text]) == start + 4
        assert int(ref[0, first_text]) - int(stock[0, first_text]) > 200  # 249 vs 4 after the start
    else:
        # Qwen3-VL gives each temporal group its own grid of t = 1 (timestamps between them), so
        # the largest position is the spatial one and both rules coincide
        torch.testing.assert_close(stock, ref, rtol=0, atol=0)


def test_the_rule_reaches_generation_and_the_record(family_dir):
    family, model_dir = family_dir
    frames = np.random.default_rng(1).integers(0, 256, (16, 112, 112, 3), dtype=np.uint8)
    adapter = ADAPTERS[family].from_pretrained(str(model_dir), pipeline={"text_positions": "reference"})
    gen = adapter.generate(frames, None, "What happens?", fps=0.25, max_new_tokens=2)
    assert gen.extra["text_positions"] == "reference"
    default = ADAPTERS[family].from_pretrained(str(model_dir))
    # the default is the rule the checkpoints were trained with
    assert default.generate(frames, None, "x", fps=0.25, max_new_tokens=1).extra["text_positions"] == "reference"


def test_reference_shift_applies_to_every_later_segment():
    # text(2) video(3) text(2) video(2) text(1): positions as transformers lays them out
    types = torch.tensor([[0, 0, 2, 2, 2, 0, 0, 2, 2, 0]])
    stock = torch.tensor([[0, 1, 2, 9, 20, 4, 5, 6, 7, 8]]).expand(3, 1, -1).clone()
    ref = reference_text_positions(stock, types)[0, 0].tolist()
    assert ref == [0, 1, 2, 9, 20, 21, 22, 23, 24, 25]


def test_run_json_records_the_rule_and_resume_refuses_the_other(tmp_path):
    """Every run says which rule made its numbers (run.json ``model.pipeline.text_positions``), also
    when the config leaves it at the default; a run made under the old default (absent from run.json:
    the installed transformers' rule) is not silently resumed under the new one."""
    import json

    from harness.runner.config import ConfigError, load_config
    from harness.runner.engine import Evaluator
    from harness.runner.sharding import ShardInfo
    from harness.runner.testing import FakeAdapter, FakeBenchmark, fake_components

    def run(pipeline=None, limit=1):
        model = {"family": "qwen2_5_vl", "path": "/m", "name": "fake", **({"pipeline": pipeline} if pipeline else {})}
        cfg = load_config(data={"name": "t", "output_dir": str(tmp_path / "out"), "model": model,
                                "benchmark": {"name": "fake", "limit": limit}, "frames": {"num_frames": 4},
                                "pruners": ["none"]})
        return Evaluator(cfg, fake_components(FakeBenchmark(2), FakeAdapter()), ShardInfo(), progress=False).run()

    run_file = tmp_path / "out" / "fake" / "none" / "run.json"
    run()
    assert json.loads(run_file.read_text())["model"]["pipeline"] == {"text_positions": "reference"}
    old = json.loads(run_file.read_text())
    old["model"]["pipeline"] = {}  # as written before the default changed
    run_file.write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="pipeline"):
        run(limit=2)
    run_file.unlink()
    run({"text_positions": "transformers"})
    assert json.loads(run_file.read_text())["model"]["pipeline"] == {"text_positions": "transformers"}

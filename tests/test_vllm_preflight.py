"""What the vLLM backend cannot run stops ``run_eval.py eval`` at start-up: one line naming the
key, exit 2, before any model loads (vLLM need not be installed for these refusals)."""

from __future__ import annotations

import pytest
import yaml

from harness.cli.main import main
from harness.runner.config import ConfigError, load_config, validate_vllm


def _cfg(family: str = "qwen2_5_vl", pruners: list | None = None, **model) -> dict:
    return {"name": "v", "backend": "vllm",
            "model": {"family": family, "path": "tiny", **model},
            "benchmark": {"name": "synthetic_needle", "limit": 1},
            "pruners": pruners or ["none"]}


def _refusal(data: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_vllm(load_config(data=data))
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("family", ["llava_onevision", "internvl3"])
def test_text_positions_on_a_1d_family_is_refused(family):
    message = _refusal(_cfg(family, pipeline={"text_positions": "reference"}))
    assert f"model.pipeline.text_positions is not a key for {family}" in message


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_text_positions_on_an_mrope_family_passes(family):
    validate_vllm(load_config(data=_cfg(family, pipeline={"text_positions": "transformers"})))


def test_the_cli_exits_2_before_loading(tmp_path, capsys):
    data = {**_cfg("llava_onevision", pipeline={"text_positions": "reference"}), "output_dir": str(tmp_path / "out")}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["eval", "--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.pipeline.text_positions" in err
    assert not (tmp_path / "out").exists()


def test_a_family_without_a_vllm_route_is_refused():
    message = _refusal(_cfg("nvila_hd_video", trust_remote_code=True))
    assert "backend 'vllm' cannot serve nvila_hd_video" in message


@pytest.mark.parametrize("stage", ["pre_vit", "native"])
def test_a_prune_stage_other_than_post_vit_is_refused(stage):
    family = "qwen2_5_vl"
    from harness.models.registry import get_spec

    if stage not in get_spec(family).prune_stages:
        pytest.skip(f"{family} has no prune_stage {stage!r} (validate_names refuses it first)")
    assert f"model.prune_stage {stage!r} is not available on the vllm backend" in _refusal(_cfg(family, prune_stage=stage))


@pytest.mark.parametrize(("family", "pruner", "where"), [
    ("qwen2_5_vl", {"name": "fastv"}, "inside the LLM"),
    ("llava_onevision", {"name": "fastv"}, "inside the LLM"),
    ("internvl3", {"name": "dycoke"}, "inside the LLM"),  # DyCoke's KV stage (p set, the default)
    ("qwen2_5_vl", {"name": "dycoke", "params": {"p": None}}, "on the projector features"),
    ("qwen3_vl", {"name": "vidcom2"}, "on the projector features"),
    ("qwen2_5_vl", {"name": "visionzip"}, "on the projector features"),
])
def test_methods_the_vllm_route_cannot_run_are_refused(family, pruner, where):
    message = _refusal(_cfg(family, pruners=[pruner]))
    assert f"the vllm backend cannot run {pruner['name']} on {family} (it acts {where}" in message
    assert message.startswith("pruner run ")


@pytest.mark.parametrize(("family", "pruner"), [
    ("llava_onevision", {"name": "dycoke", "params": {"p": None}}),  # feature stage on prompt_embeds: served
    ("internvl3", {"name": "vidcom2"}),
    ("qwen2_5_vl", {"name": "random", "budget": 0.5}),
    ("qwen3_vl", {"name": "autogaze", "params": {"model": "m"}}),
])
def test_what_the_vllm_routes_serve_passes(family, pruner):
    validate_vllm(load_config(data=_cfg(family, pruners=[pruner])))


def test_the_transformers_backend_is_not_checked():
    validate_vllm(load_config(data={**_cfg(pruners=[{"name": "fastv"}]), "backend": "transformers"}))

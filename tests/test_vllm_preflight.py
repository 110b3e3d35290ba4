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

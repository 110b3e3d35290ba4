"""Config parsing, --set overrides, sweep expansion and validation errors."""

from __future__ import annotations

import pytest
import yaml

from harness.runner.config import ConfigError, load_config, parse_override, validate_names
from harness.runner.sweep import Budget, expand, resolve_budget

BASE = {
    "name": "t",
    "output_dir": "runs/t",
    "model": {"family": "qwen2_5_vl", "path": "tiny"},
    "benchmark": {"name": "synthetic_needle", "limit": 3},
    "frames": {"num_frames": 8},
    "pruners": [
        {"name": "none"},
        {"name": "autogaze", "params": {"model": "m"},
         "grid": {"task_loss_requirement": [0.5, 0.7], "gazing_ratio": [0.1, 0.3, 0.75]}},
        {"name": "random", "budget": "matched", "params": {"seed": 1}},
        {"name": "downsample", "budget": 0.25},
    ],
}


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    cfg = load_config(path, ["benchmark.limit=5", "model.path=/models/q", "frames.resolution=640x360",
                             "pruners.autogaze.grid.gazing_ratio=[0.5]", "generation.max_new_tokens=4",
                             "benchmark.kwargs.seed=3"])
    assert cfg.benchmark.limit == 5 and cfg.model.path == "/models/q"
    assert cfg.frames.resolution == [640, 360]
    assert cfg.pruners[1].grid["gazing_ratio"] == [0.5]
    assert cfg.generation.max_new_tokens == 4 and cfg.benchmark.kwargs == {"seed": 3}
    assert cfg.source == str(path)


def test_override_values_are_yaml_typed():
    assert parse_override("a.b=0.5") == (["a", "b"], 0.5)
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=text") == (["a"], "text")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("benchmark.limit")


def test_override_list_index_out_of_range():
    with pytest.raises(ConfigError, match="out of range"):
        load_config(data=BASE, overrides=["pruners.9.name=x"])


def test_unknown_keys_list_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown key 'generation.max_new_token'.*max_new_tokens"):
        load_config(data=BASE, overrides=["generation.max_new_token=3"])
    with pytest.raises(ConfigError, match=r"unknown key 'modle'.*valid keys: .*model"):
        load_config(data={**BASE, "modle": {}})
    with pytest.raises(ConfigError, match=r"unknown key .pruners.0.ratio.; valid keys of pruners.0: budget"):
        load_config(data={**BASE, "pruners": [{"name": "none", "ratio": 0.3}]})


def test_unknown_names_list_valid_choices():
    cfg = load_config(data=BASE, overrides=["model.family=qwen9"])
    with pytest.raises(ConfigError, match=r"unknown model family 'qwen9'; valid choices: .*qwen2_5_vl"):
        validate_names(cfg)
    cfg = load_config(data=BASE, overrides=["pruners.0.name=gazer"])
    with pytest.raises(ConfigError, match=r"unknown pruner 'gazer'; valid choices: .*autogaze.*uniform_frames"):
        validate_names(cfg)


def test_bad_values_are_refused():
    with pytest.raises(ConfigError, match="backend"):
        load_config(data={**BASE, "backend": "onnx"})
    with pytest.raises(ConfigError, match="prune_stage"):
        load_config(data=BASE, overrides=["model.prune_stage=mid_vit"])
    with pytest.raises(ConfigError, match="budget"):
        load_config(data=BASE, overrides=["pruners.3.budget=lots"])
    with pytest.raises(ConfigError, match="resolution"):
        load_config(data=BASE, overrides=["frames.resolution=wide"])
    with pytest.raises(ConfigError, match="non-empty list"):
        load_config(data=BASE, overrides=["pruners.1.grid.gazing_ratio=0.3"])


def test_sweep_expands_grid_and_matched_baselines():
    cfg = load_config(data=BASE)
    settings = expand(cfg.pruners)
    labels = [s.label for s in settings]
    autogaze = [s for s in settings if s.name == "autogaze"]
    assert len(autogaze) == 6
    assert "autogaze_tlr0.5_gr0.1" in labels and "autogaze_tlr0.7_gr0.75" in labels
    assert {s.params["gazing_ratio"] for s in autogaze} == {0.1, 0.3, 0.75}
    assert all(s.params["model"] == "m" for s in autogaze)
    random = [s for s in settings if s.name == "random"]
    assert len(random) == 6  # one matched run per autogaze setting
    assert {s.budget.match for s in random} == {s.label for s in autogaze}
    assert random[0].label == "random_match-autogaze_tlr0.5_gr0.1"
    # every autogaze run comes before any matched baseline (its kept count is needed first)
    assert max(labels.index(s.label) for s in autogaze) < min(labels.index(s.label) for s in random)
    assert "downsample_r0.25" in labels
    assert len(labels) == len(set(labels)) == 1 + 6 + 6 + 1


def test_matched_with_explicit_target_and_errors():
    data = {**BASE, "pruners": [BASE["pruners"][1], {"name": "random", "budget": "matched",
                                                     "match": "autogaze_tlr0.5_gr0.3"}]}
    settings = expand(load_config(data=data).pruners)
    assert [s.label for s in settings if s.name == "random"] == ["random_match-autogaze_tlr0.5_gr0.3"]
    data["pruners"][1]["match"] = "autogaze_nope"
    with pytest.raises(ConfigError, match="valid choices: autogaze_tlr0.5_gr0.1"):
        expand(load_config(data=data).pruners)
    with pytest.raises(ConfigError, match=r"no pruner whose kept counts define a budget \(autogaze\)"):
        expand(load_config(data={**BASE, "pruners": [{"name": "random", "budget": "matched"}]}).pruners)
    with pytest.raises(ConfigError, match="share the run label"):
        expand(load_config(data={**BASE, "pruners": ["none", "none"]}).pruners)


def test_resolve_budget():
    assert resolve_budget(Budget(), 100, None) is None
    assert resolve_budget(Budget("ratio", 0.25), 100, None) == 25
    assert resolve_budget(Budget("tokens", 500), 100, None) == 100
    assert resolve_budget(Budget("matched", match="a"), 100, 37) == 37
    with pytest.raises(RuntimeError, match="matched budget unavailable"):
        resolve_budget(Budget("matched", match="a"), 100, None)


def test_models_list_overrides_sections():
    data = {**BASE, "models": [{"family": "qwen2_5_vl", "path": "/a", "name": "qa", "frames": {"num_frames": 4}},
                               {"family": "qwen3_vl", "path": "/b", "pruners": ["none"]}]}
    plans = load_config(data=data).plans()
    assert [p.model.label for p in plans] == ["qa", "qwen3_vl-b"]
    assert plans[0].frames.num_frames == 4 and plans[1].frames.num_frames == 8
    assert len(plans[0].pruners) == 4 and [p.name for p in plans[1].pruners] == ["none"]


@pytest.mark.parametrize(
    "name", ["demo", "videomme_qwen2_5_vl_autogaze", "hlvid_reproduce", "hlvid_defaults", "ci_regression",
             "compare_pruning_methods", "compare_pruning_methods_videomme"]
)
def test_shipped_configs_parse_and_expand(name):
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    validate_names(cfg)
    for plan in cfg.plans():
        assert expand(plan.pruners)


def test_methods_acting_inside_the_model_need_generation():
    from harness.runner.config import validate_pruner_params

    data = {**BASE, "pruners": [{"name": "fastv"}], "generation": {"enabled": False}}
    with pytest.raises(ConfigError, match="fastv acts inside the model .llm stage.*generation.enabled"):
        validate_pruner_params(load_config(data=data))
    data["pruners"] = [{"name": "dycoke"}]
    with pytest.raises(ConfigError, match="features stage"):
        validate_pruner_params(load_config(data=data))
    data["generation"] = {"enabled": True}
    validate_pruner_params(load_config(data=data))
    data["pruners"], data["generation"] = [{"name": "random", "budget": 0.5}], {"enabled": False}
    validate_pruner_params(load_config(data=data))


@pytest.mark.parametrize("where", ["top", "per_model"])
def test_models_list_resolution_string_gives_frames_of_that_size(tmp_path, where):
    """issue 21: with a ``models:`` list, ``resolution: "448x256"`` once reached the frame sizing as
    the raw string (frames of 4x4 px, every sample failed). The plan must carry [W, H] and the
    decoded frames must be 448 wide, 256 high."""
    import numpy as np

    from harness.runner.components import load_frames
    from harness.video.writer import write_video

    frames = {"num_frames": 3, "resolution": "448x256", "keep_aspect": False}
    entry = {"family": "qwen2_5_vl", "path": "tiny", "name": "q"}
    data = {k: v for k, v in BASE.items() if k != "model"}
    if where == "top":
        data = {**data, "frames": frames, "models": [entry]}
    else:
        data = {**data, "models": [{**entry, "frames": frames}]}
    plan = load_config(data=data).plans()[0]
    assert plan.frames.resolution == [448, 256]
    video = write_video(tmp_path / "v.mp4", [np.full((120, 160, 3), 40 * i, np.uint8) for i in range(6)], fps=6)
    assert load_frames(str(video), plan.frames).frames.shape == (3, 256, 448, 3)


@pytest.mark.parametrize(("family", "stage"), [("qwen3_vl", "native"), ("nvila_hd_video", "native")])
def test_a_prune_stage_the_familys_spec_lacks_stops_the_run_at_start_up(family, stage):
    """``FamilySpec.prune_stages`` lists what a family's adapter takes; another stage used to fail
    every sample of the run (after the model loaded) instead of once, before anything loads."""
    cfg = load_config(data={"model": {"family": family, "path": "tiny", "prune_stage": stage,
                                      "trust_remote_code": True}, "pruners": ["none"]})
    with pytest.raises(ConfigError, match=f"prune_stage {stage!r} is not available for {family}; valid choices") as err:
        validate_names(cfg)
    assert "\n" not in str(err.value)
    validate_names(load_config(data={"model": {"family": "qwen2_5_vl", "path": "tiny", "prune_stage": "native"},
                                     "pruners": ["none"]}))


def _pruner_cfg(family: str, pruner: dict) -> dict:
    return {"name": "t", "model": {"family": family, "path": "tiny"},
            "benchmark": {"name": "synthetic_needle", "limit": 1}, "pruners": [pruner]}


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "internvl3"])
def test_a_pruner_needing_tower_signals_the_family_lacks_is_refused_before_loading(family):
    from harness.runner.config import validate_pruner_params

    with pytest.raises(ConfigError) as err:
        validate_pruner_params(load_config(data=_pruner_cfg(family, {"name": "visionzip"})))
    message = str(err.value)
    assert "\n" not in message
    assert f"visionzip needs tower_attention from the vision tower, which the {family} adapter" in message
    assert message.endswith("families that do: llava_onevision")


def test_a_pruner_needing_tower_signals_passes_where_the_spec_lists_them():
    from harness.runner.config import validate_pruner_params

    validate_pruner_params(load_config(data=_pruner_cfg("llava_onevision", {"name": "visionzip"})))

"""A new user's mistakes: each is one line on stderr naming the key/value/cause, exit code 2, no traceback,
found before any model loads (``--dry-run``), and a run that fails before its first sample leaves
nothing that blocks the corrected rerun."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.main import main
from harness.runner.config import ConfigError, load_config
from harness.runner.engine import Evaluator
from harness.runner.testing import FakeAdapter, FakeBenchmark, fake_components

DEMO = str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")


def _one_line_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "benchmark.limit=abc"], r"benchmark\.limit: .*valid integer.*'abc'"),
        (["--set", "generation.max_new_tokens=0"], r"generation\.max_new_tokens: .*greater than or equal to 1"),
        (["--set", "model.prune_stage=mid"], r"model\.prune_stage: valid choices: post_vit, pre_vit, native"),
        (["--set", "frames=3"], r"frames: .*\(got 3\)"),
        (["--set", "benchmark.limt=3"], r"unknown key 'benchmark\.limt'; valid keys of benchmark: .*limit"),
        (["--set", "benchmark.limit"], r"override 'benchmark\.limit': expected KEY=VALUE"),
        (["--set", "pruners.nosuch.grid.x=[1]"], r"'nosuch' is neither a list index nor a unique entry name"),
        (["--set", "frames.resolution=[1"], r"not valid YAML"),
        (["--set", "pruners.autogaze.params.gazing_ration=0.3"],
         r"pruner run 'autogaze_gr0\.1': .*unknown parameter\(s\) gazing_ration; valid: .*gazing_ratio"),
        (["--set", "pruners.autogaze.grid.gazing_ratio=[3]"], r"gazing_ratio must be in \(0, 1\], got 3"),
        (["--model-path", "/no/such/model"], r"model 'qwen2_5_vl-model': /no/such/model: no such model directory"),
        (["--model-path", "noorg/nomodel"], r"noorg/nomodel: not a local directory and not found in"),
        (["--benchmark", "videomme"],
         r"benchmark\.kwargs: fps, height, .* not accepted by benchmark 'videomme'; valid keys: .*data_dir"),
        (["--benchmark", "nosuch"], r"unknown benchmark 'nosuch'; valid choices: .*synthetic_needle"),
    ],
)
def test_config_mistakes_are_one_line_before_any_model_loads(capsys, tmp_path, monkeypatch, args, expected):
    import re

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    err = _one_line_error(capsys, ["eval", "--config", DEMO, "--dry-run", *args])
    assert err.startswith("run_eval.py eval: config error: ")
    assert re.search(expected, err), err


def test_a_data_directory_without_the_dataset_is_one_line(capsys, tmp_path):
    err = _one_line_error(capsys, ["eval", "--config", DEMO, "--dry-run", "--benchmark", "hlvid",
                                   "--set", f"benchmark.kwargs={{data_dir: {tmp_path}}}"])
    assert "benchmark 'hlvid'" in err and "annotation file not found" in err and str(tmp_path) in err


def test_config_file_mistakes_are_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: [1, 2\n")
    err = _one_line_error(capsys, ["eval", "--config", str(bad), "--dry-run"])
    assert str(bad) in err and "not valid YAML" in err
    err = _one_line_error(capsys, ["eval", "--config", str(tmp_path / "missing.yaml"), "--dry-run"])
    assert "config file not found" in err


def test_models_entries_are_validated_after_merging(tmp_path):
    """The resolution of a ``models:`` entry is normalised like the top level's (it used to reach the
    frame sizing as the string '448x256')."""
    data = {"benchmark": {"name": "synthetic_needle"}, "frames": {"resolution": "448x256"},
            "models": [{"family": "qwen2_5_vl", "name": "a"},
                       {"family": "qwen3_vl", "name": "b", "frames": {"resolution": "320x240"}}]}
    plans = load_config(data=data).plans()
    assert [p.frames.resolution for p in plans] == [[448, 256], [320, 240]]
    with pytest.raises(ConfigError, match=r"unknown key 'models\.1\.frames\.num_frame'; valid keys of models\.1\.frames: .*num_frames"):
        load_config(data={**data, "models": [{"name": "a"}, {"name": "b", "frames": {"num_frame": 3}}]})


def _fake_cfg(tmp_path, **over):
    data = {"name": "t", "output_dir": str(tmp_path / "out"),
            "model": {"family": "qwen2_5_vl", "path": "/m", "name": "fake"},
            "benchmark": {"name": "fake"}, "frames": {"num_frames": 4}, "pruners": ["none"]}
    data.update(over)
    return load_config(data=data)


def test_a_model_that_fails_to_load_leaves_nothing_behind(tmp_path):
    """The corrected rerun is not refused as 'a different configuration' by a stub of the failed one."""
    components = fake_components(FakeBenchmark(2), FakeAdapter())

    def broken(*_):
        raise OSError("weights file truncated\nsecond line of a long cause")

    components.load_adapter = broken
    with pytest.raises(ConfigError, match=r"^model 'fake' \(/m\) did not load: OSError: weights file truncated$"):
        Evaluator(_fake_cfg(tmp_path), components, progress=False).run()
    assert not (tmp_path / "out").exists()
    fixed = fake_components(FakeBenchmark(2), FakeAdapter())
    other = _fake_cfg(tmp_path, model={"family": "qwen2_5_vl", "path": "/m2", "name": "fake"})
    result = Evaluator(other, fixed, progress=False).run()
    assert result.written == 2 and result.errors == 0


def test_a_benchmark_that_fails_to_load_is_a_config_error(tmp_path):
    components = fake_components(FakeBenchmark(2), FakeAdapter())

    def missing(_):
        raise FileNotFoundError("/data/videomme: annotation file not found")

    components.load_benchmark = missing
    with pytest.raises(ConfigError, match=r"benchmark 'fake': /data/videomme: annotation file not found"):
        Evaluator(_fake_cfg(tmp_path), components, progress=False).run()
    assert not (tmp_path / "out").exists()


def test_list_names_what_a_config_may_use(capsys):
    from harness.models.registry import ADAPTERS
    from harness.pruning.registry import PRUNERS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*ADAPTERS, *PRUNERS, "synthetic_needle", "videomme", "lmms-eval-mcq", "configs/demo.yaml"]:
        assert name in out, name
    assert "gazing_ratio=0.75" in out and "model='nvidia/AutoGaze'" in out
    assert main(["list", "extractions"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "lmms-eval-regex (default)"


def test_usage_names_the_installed_command(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["/venv/bin/harness-eval"])
    assert main([]) == 0
    assert capsys.readouterr().out.startswith("usage: harness-eval {")


def test_remote_code_needs_an_explicit_opt_in(capsys, tmp_path):
    """NVILA runs its snapshot's own code: refused before anything loads unless the config opts in."""
    snapshot = tmp_path / "nvila"
    snapshot.mkdir()
    (snapshot / "config.json").write_text("{}")
    args = ["eval", "--config", DEMO, "--dry-run", "--model-family", "nvila_hd_video",
            "--model-path", str(snapshot), "--set", "pruners=[none]"]
    err = _one_line_error(capsys, args)
    assert "runs Python code shipped in its snapshot; set model.trust_remote_code: true" in err
    assert main([*args, "--set", "model.trust_remote_code=true"]) == 0
    from harness.models.nvila_hd_video import NvilaHDVideoAdapter

    with pytest.raises(ValueError, match="trust_remote_code=True"):
        NvilaHDVideoAdapter.from_pretrained(str(snapshot))

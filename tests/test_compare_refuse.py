"""``compare`` refuses runs that are not comparable with the baseline: one line per difference, exit 4."""

from __future__ import annotations

import json

import pytest

from harness.cli.main import main
from harness.report.comparable import setting_differences
from tests.test_report import write_run

SETTINGS = {
    "run_id": "m/autogaze", "experiment": "x",
    "model": {"family": "qwen2_5_vl", "path": "tiny", "dtype": "float32", "device": "cpu", "name": "m"},
    "benchmark": {"name": "synthetic_needle", "kwargs": {"num_videos": 12, "seed": 1}, "limit": 12,
                  "extraction": None},
    "frames": {"num_frames": 16, "resolution": 224, "chunk_size": 16},
    "generation": {"max_new_tokens": 4},
    "pruner": {"name": "autogaze", "label": "autogaze", "params": {"policy": "drop", "gazing_ratio": 0.1}},
}


def _run(root, settings=SETTINGS, n=12, extraction="lmms-eval-regex"):
    rows = [{"id": f"s{i}", "correct": i % 2 == 0, "duration": "short"} for i in range(n)]
    run_dir = write_run(root, "autogaze", "autogaze", rows)
    (run_dir / "run.json").write_text(json.dumps(settings))
    if extraction:  # write_run leaves the convention out; set it on every record
        path = run_dir / "records.jsonl"
        recs = [{**json.loads(line), "extraction": extraction} for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return root


def _changed(**changes):
    out = json.loads(json.dumps(SETTINGS))
    for dotted, value in changes.items():
        section = out
        *head, last = dotted.split("__")
        for key in head:
            section = section[key]
        section[last] = value
    return out


def _compare(capsys, base, new, *extra):
    code = main(["compare", "--baseline", str(base), str(new), "--tolerance", "100", *extra])
    return code, capsys.readouterr().err


def test_same_settings_are_compared(tmp_path, capsys):
    base, new = _run(tmp_path / "b"), _run(tmp_path / "n", _changed(model__device="cuda", model__name="other"))
    code, err = _compare(capsys, base, new)
    assert code in (0, 3) and "NOT COMPARABLE" not in err  # device and names never decide a number


@pytest.mark.parametrize(("change", "line"), [
    ({"pruner__params__policy": "keep"}, "pruner.params.policy: baseline 'drop', new 'keep'"),
    ({"benchmark__kwargs__seed": 2}, "benchmark.kwargs.seed: baseline 1, new 2"),
    ({"benchmark__name": "videomme"}, "benchmark.name: baseline 'synthetic_needle', new 'videomme'"),
    ({"benchmark__extraction": "lmms-eval-mcq"}, "benchmark.extraction: baseline None, new 'lmms-eval-mcq'"),
    ({"frames__num_frames": 32}, "frames.num_frames: baseline 16, new 32"),
    ({"model__path": "Qwen/Qwen2.5-VL-7B-Instruct"}, "model.path: baseline 'tiny', new 'Qwen/Qwen2.5-VL-7B-Instruct'"),
])
def test_a_different_setting_is_refused_naming_it(tmp_path, capsys, change, line):
    base, new = _run(tmp_path / "b"), _run(tmp_path / "n", _changed(**change))
    code, err = _compare(capsys, base, new)
    assert code == 4
    assert f"NOT COMPARABLE: run m/autogaze: {line}" in err
    assert sum(e.startswith("NOT COMPARABLE") for e in err.splitlines()) == 1  # one line per difference
    key = line.split(":")[0]
    code, err = _compare(capsys, base, new, "--allow-mismatch", key)
    assert code in (0, 3) and "NOT COMPARABLE" not in err
    # a prefix allows everything under it
    code, _ = _compare(capsys, base, new, "--allow-mismatch", key.split(".")[0])
    assert code in (0, 3)


def test_every_difference_gets_its_line(tmp_path, capsys):
    base = _run(tmp_path / "b")
    new = _run(tmp_path / "n", _changed(pruner__params__policy="keep", frames__resolution=448), extraction="lmms-eval-mcq")
    code, err = _compare(capsys, base, new)
    lines = [e for e in err.splitlines() if e.startswith("NOT COMPARABLE")]
    assert code == 4 and len(lines) == 3
    assert any("records.extraction: baseline ['lmms-eval-regex'], new ['lmms-eval-mcq']" in e for e in lines)


def test_absent_baseline_samples_are_refused_beyond_the_stated_share(tmp_path, capsys):
    base, new = _run(tmp_path / "b"), _run(tmp_path / "n", n=4)
    code, err = _compare(capsys, base, new)
    assert code == 4 and "8 of 12 baseline samples absent (s10, s11, s4, s5, s6 ...)" in err
    code, err = _compare(capsys, base, new, "--max-absent", "0.7")
    assert code in (0, 3) and "NOT COMPARABLE" not in err


def test_a_key_added_to_the_schema_at_its_default_is_no_difference():
    from harness.runner.config import FramesConfig

    old = {"frames.num_frames": 16}
    new = {"frames.num_frames": 16, "frames.keep_aspect": FramesConfig().keep_aspect}
    assert setting_differences(old, new) == []
    assert setting_differences(old, {**new, "frames.keep_aspect": not FramesConfig().keep_aspect}) != []

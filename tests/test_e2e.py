"""End to end with the real pieces: the demo config on 2 samples -> records -> report (and resume).

Real video decoding, the real synthetic needle benchmark, the tiny random-weight Qwen2.5-VL with
its stock processor, the AutoGaze parity checkpoint (skipped with the reason when ../shared is
absent) and a real baseline at AutoGaze's matched budget.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.cli.main import main
from harness.runner.records import read_run_records

pytestmark = pytest.mark.slow

SMALL = [  # the demo, shrunk: 2 short videos, 8 frames, one AutoGaze setting, one matched baseline
    "--limit", "2", "--num-frames", "8", "--max-new-tokens", "4",
    "--set", "benchmark.kwargs.num_videos=2", "--set", "benchmark.kwargs.num_frames=24",
    "--set", "benchmark.kwargs.width=256", "--set", "benchmark.kwargs.height=192",
    "--set", "pruners.autogaze.grid.gazing_ratio=[0.1]",
    "--pruners", "none,autogaze,random", "--no-progress",
]


@pytest.fixture
def cache(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp() / "harness-cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(root))
    return root


def test_demo_config_end_to_end(tmp_path, cache, parity_dir, capsys):
    out = tmp_path / "demo"
    args = ["eval", "--config", "configs/demo.yaml", "--output", str(out),
            "--set", f"pruners.autogaze.params.model={parity_dir / 'model'}", *SMALL]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "tiny random-weight model: numbers are plumbing checks, not accuracy" in printed

    runs = {p.parent.name: p.parent for p in out.rglob("run.json")}
    assert set(runs) == {"none", "autogaze_gr0.1", "random_match-autogaze_gr0.1"}
    recs = {label: read_run_records(d) for label, d in runs.items()}
    for label, rr in recs.items():
        assert len(rr) == 2, label
        for r in rr:
            assert r["error"] is None, (label, r["error"])
            assert r["output"] is not None and r["prompt"].startswith("Select the best answer")
            assert r["extracted"] in (None, "A", "B", "C", "D") and isinstance(r["correct"], bool)
            assert r["tokens"]["visual_after"] <= r["tokens"]["visual_before"]
            assert r["latency"]["decode"] > 0 and r["latency"]["prefill"] > 0
            assert r["evidence"]["recall"] is None or 0 <= r["evidence"]["recall"] <= 1
            assert r["frames"]["num"] == 8 and r["splits"]["kind"] in ("code", "shape")
    by_id = {label: {r["sample_id"]: r for r in rr} for label, rr in recs.items()}
    for sid, rec in by_id["autogaze_gr0.1"].items():
        kept = rec["selection"]["kept"]
        assert rec["tokens"]["visual_after"] == kept < rec["tokens"]["visual_before"]
        assert rec["latency"]["gaze"] > 0
        # the baseline saw exactly as many tokens as AutoGaze kept on the same sample
        assert by_id["random_match-autogaze_gr0.1"][sid]["tokens"]["visual_after"] == kept
        assert by_id["none"][sid]["tokens"]["visual_after"] == rec["tokens"]["visual_before"]
        # a few frames' masks for the report's thumbnail strips (harness.runner.masks)
        masks = rec["selection"]["masks"]
        assert masks["kind"] == "gaze" and len(masks["frames"]) == 8 and masks["scales"] == [32, 64, 112, 224]
        assert by_id["random_match-autogaze_gr0.1"][sid]["selection"]["masks"]["kind"] == "tokens"
        assert "masks" not in by_id["none"][sid]["selection"]  # keeps everything: nothing to draw
    meta = json.loads((out / "run_meta.json").read_text())
    assert meta["git"]["commit"] and meta["notice"].startswith("tiny random-weight")

    # rerunning the same command resumes: nothing is redone
    assert main(args) == 0
    assert "0 records written (0 failed), 6 already done" in capsys.readouterr().out

    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report)]) == 0
    summary = pd.read_csv(report / "summary.csv").set_index("pruner_label")
    assert summary.loc["none", "token_reduction_pct"] == 0
    assert summary.loc["autogaze_gr0.1", "token_reduction_pct"] > 0
    assert summary.loc["none", "speedup_total"] == pytest.approx(1.0)
    assert (report / "pareto.png").stat().st_size > 0 and (report / "latency.png").stat().st_size > 0
    md = (report / "report.md").read_text()
    assert "tiny random-weight" in md
    assert "Provenance" in md and meta["git"]["commit"][:12] in md  # the commit the numbers came from
    # report.html: one row per record, and strips drawn from the recorded masks on re-decoded frames
    page = (report / "report.html").read_text()
    assert page.count("<tr class=") == 6 and "thumbnail unavailable" not in page
    strips = list((report / "thumbs").rglob("*.png"))
    assert len(strips) == 4  # AutoGaze and the matched random baseline, 2 samples each; `none`: nothing kept out


def test_eval_cli_bad_input_lists_choices(tmp_path, capsys):
    base = ["eval", "--config", "configs/demo.yaml", "--output", str(tmp_path / "x"), "--dry-run"]
    assert main(base + ["--model-family", "gpt9"]) == 2
    assert "unknown model family 'gpt9'; valid choices: " in capsys.readouterr().err
    assert main(base + ["--benchmark", "mmlu"]) == 2
    assert "unknown benchmark 'mmlu'; valid choices: " in capsys.readouterr().err
    assert main(base + ["--set", "generation.temperature=0"]) == 2
    assert "valid keys of generation: batch_size, enabled, max_new_tokens" in capsys.readouterr().err
    assert main(base + ["--pruners", "gazer"]) == 2
    assert "valid choices: autogaze" in capsys.readouterr().err
    assert main(base) == 0
    assert "run random_match-autogaze_gr0.3" in capsys.readouterr().out


def test_bad_pruner_param_fails_before_any_sample(tmp_path, cache, capsys):
    out = tmp_path / "bad"
    rc = main(["eval", "--config", "configs/demo.yaml", "--output", str(out), *SMALL,
               "--set", "pruners.random.params={radius: 3}"])
    assert rc == 2
    assert "unknown parameter(s) radius" in capsys.readouterr().err
    assert not list(out.rglob("records*.jsonl"))

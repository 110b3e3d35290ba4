"""configs/compare_pruning_methods*.yaml end to end on the tiny models: every method runs, at its
published setting and at AutoGaze's matched budget, and the report shows every one of them.

Shrunk for speed (one sample, 8 frames, two model families); the runner code is the same.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.cli.main import main
from harness.runner.records import read_run_records
from tests.test_bench_data import make_videomme

pytestmark = pytest.mark.slow

METHODS = ("fastv", "dycoke", "vidcom2")
SMALL = ["--limit", "1", "--num-frames", "8", "--max-new-tokens", "2", "--no-progress"]


def _config(path: str, tmp_path, **bench_kwargs) -> str:
    cfg = yaml.safe_load(Path(path).read_text())
    cfg["models"] = [m for m in cfg["models"] if m["family"] in ("llava_onevision", "qwen2_5_vl")]
    cfg["benchmark"]["kwargs"].update(bench_kwargs)
    out = tmp_path / "cfg.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return str(out)


def _check(out, capsys, evidence: bool = False) -> None:
    capsys.readouterr()
    for model_dir in [p for p in out.iterdir() if p.is_dir() and p.name != "report"]:
        runs = {p.parent.name: read_run_records(p.parent) for p in model_dir.rglob("run.json")}
        methods = (*METHODS, "visionzip") if model_dir.name.startswith("llava") else METHODS
        for method in methods:
            labels = [k for k in runs if k.startswith(method)]
            assert any("match-autogaze" in k for k in labels) and any("match" not in k for k in labels), labels
        for label, recs in runs.items():
            for rec in recs:
                assert rec["error"] is None, (model_dir.name, label, rec["error"])
                extra = rec["generation_extra"]
                if label.startswith("fastv"):
                    facts = extra["llm_pruning"]
                    assert rec["tokens"]["visual_after"] == facts["visual_after"] <= facts["visual_before"]
                    assert facts["visual_after"] <= facts["avg_visual_tokens"] <= facts["visual_before"]
                    if "match" not in label:  # the published r drops tokens
                        assert facts["visual_after"] < facts["avg_visual_tokens"] < facts["visual_before"]
                    assert rec["evidence"] is None
                if label.startswith("dycoke"):
                    assert extra["kv_pruning"]["steps"] == rec["tokens"]["generated"] - 1
                if label.startswith(("dycoke", "vidcom2", "visionzip")) and evidence:
                    # scored after the model ran, on the tokens the method kept from the features
                    assert rec["evidence"] is not None and 0 <= rec["evidence"]["recall"] <= 1, label
                if label.startswith(("dycoke", "vidcom2", "visionzip")):
                    newline = 1 if model_dir.name.startswith("llava") else 0
                    assert rec["tokens"]["visual_after"] == extra["reduction"]["kept"] + newline
                if "match-autogaze" in label and label.startswith(("fastv", "vidcom2", "visionzip")):
                    source = label.split("match-")[1]
                    ref = {r["sample_id"]: r for r in runs[source]}[rec["sample_id"]]
                    gap = abs(rec["tokens"]["visual_after"] - ref["tokens"]["visual_after"])
                    assert gap == 0 if label.startswith(("fastv", "visionzip")) else gap <= 2, (label, gap)
    summary = pd.read_csv(out / "report" / "summary.csv")
    fastv = summary["pruner_label"].str.startswith("fastv")
    assert summary.loc[fastv, "visual_tokens_avg_layers"].notna().all()
    assert summary.loc[~fastv, "visual_tokens_avg_layers"].isna().all()
    shown = " ".join(str(v) for v in summary.values.flatten())
    for method in (*METHODS, "visionzip", "autogaze", "random"):
        assert method in shown
    assert all(m in (out / "report" / "report.html").read_text() for m in (*METHODS, "visionzip"))


def test_needle_comparison_runs_and_reports_every_method(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    cfg = _config("configs/compare_pruning_methods.yaml", tmp_path, num_videos=1, num_frames=24, width=256,
                  height=192)
    out = tmp_path / "needle"
    assert main(["eval", "--config", cfg, "--output", str(out), *SMALL]) == 0
    _check(out, capsys, evidence=True)


def test_videomme_comparison_runs_and_reports_every_method(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    data = make_videomme(tmp_path / "Video-MME")
    cfg = _config("configs/compare_pruning_methods_videomme.yaml", tmp_path, data_dir=str(data))
    out = tmp_path / "videomme"
    assert main(["eval", "--config", cfg, "--output", str(out), *SMALL]) == 0
    _check(out, capsys)

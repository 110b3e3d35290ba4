"""End to end: configs/native_routes.yaml (native vs expand/drop at equal AutoGaze settings) -> report.

The tiny LLaVA-OneVision and Qwen2.5-VL, the real synthetic needle benchmark and the AutoGaze
parity checkpoint (skipped with the reason when ../shared is absent). Checks that every AutoGaze
record carries AutoGaze's own gaze count beside the LLM's tokens, that the native route gives the
LLM exactly that count (+ LLaVA-OV's newline), that the mapped routes do not, and that the
report shows both columns and the route.
"""

from __future__ import annotations

import pandas as pd
import pytest

from harness.cli.main import main
from harness.runner.records import read_run_records

pytestmark = pytest.mark.slow

SMALL = [
    "--limit", "1", "--num-frames", "8", "--max-new-tokens", "2", "--no-progress",
    "--set", "benchmark.kwargs.num_videos=1", "--set", "benchmark.kwargs.num_frames=16",
    "--set", "benchmark.kwargs.width=192", "--set", "benchmark.kwargs.height=192",
]  # fmt: skip


def _with_model(entries: list[dict], model: str) -> list[dict]:
    return [
        {**e, "params": {**e["params"], "model": model}} if e.get("name") == "autogaze" else e
        for e in entries
    ]


def test_native_routes_config_end_to_end(tmp_path, parity_dir, monkeypatch, capsys):
    import yaml

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    with open("configs/native_routes.yaml") as fh:
        cfg = yaml.safe_load(fh)
    # keep it quick: two native models and one mapped one (InternVL3's native route and the other
    # mapped models run the same runner code; tests/test_native_internvl3.py covers that family)
    keep = ("llava_ov-native", "llava_ov-mapped", "qwen2_5_vl-native")
    cfg["models"] = [m for m in cfg["models"] if m["name"] in keep]
    model = str(parity_dir / "model")
    cfg["pruners"] = _with_model(cfg["pruners"], model)
    for entry in cfg["models"]:
        if "pruners" in entry:
            entry["pruners"] = _with_model(entry["pruners"], model)
    path = tmp_path / "native_routes.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "runs"
    assert main(["eval", "--config", str(path), "--output", str(out), *SMALL]) == 0
    capsys.readouterr()

    runs = {(p.parent.parent.name, p.parent.name): p.parent for p in out.rglob("run.json")}
    for (model_label, run), run_dir in runs.items():
        for rec in read_run_records(run_dir):
            assert rec["error"] is None, (model_label, run, rec["error"])
            tokens = rec["tokens"]
            if not run.startswith("autogaze"):
                assert tokens["gazes"] is None
                continue
            assert tokens["gazes"] == rec["selection"]["info"]["gazed_total"] > 0
            newline = 1 if model_label.startswith("llava_ov") else 0
            if model_label.endswith("native"):
                assert tokens["visual_after"] == tokens["gazes"] + newline
                assert rec["generation_extra"]["prune_stage"] == "native"
            else:  # a mapping: the LLM's count is the grid's, not the gazes'
                assert tokens["visual_after"] != tokens["gazes"] + newline

    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report)]) == 0
    summary = pd.read_csv(report / "summary.csv")
    native = summary[summary["route"] == "native"]
    assert len(native) == 2 and set(summary["route"]) >= {"native", "post_vit/expand", "post_vit/drop"}
    llava = native[native["model"] == "llava_ov-native"].iloc[0]
    assert llava["visual_tokens"] == pytest.approx(llava["autogaze_gazes"] + 1)
    qwen = native[native["model"] == "qwen2_5_vl-native"].iloc[0]
    assert qwen["visual_tokens"] == pytest.approx(qwen["autogaze_gazes"])
    assert "autogaze_gazes" in (report / "report.md").read_text()

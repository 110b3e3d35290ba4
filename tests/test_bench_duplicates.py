"""Two questions under one id: the benchmark loader fails naming the ids and rows, in eval and score."""

from __future__ import annotations

import json

import pytest
import yaml

from benchmarks.data import DatasetError
from benchmarks.hlvid import HLVid
from benchmarks.videomme import VideoMME
from harness.cli.main import main
from tests.test_bench_data import hlvid_rows, make_hlvid, make_videomme, videomme_rows


@pytest.fixture
def hlvid_dup(tmp_path):
    rows = hlvid_rows()
    rows[4]["question_id"] = rows[1]["question_id"]  # 101 twice: rows 1 and 4
    rows[5]["question_id"] = rows[2]["question_id"]  # 102 twice: rows 2 and 5
    return make_hlvid(tmp_path / "hl", rows, videos=False)


def test_loaders_name_the_duplicated_ids_and_rows(tmp_path, hlvid_dup):
    with pytest.raises(DatasetError, match=r"2 duplicate question_id\(s\), rows counted from 0: "
                                           r"101 \(rows 1, 4\); 102 \(rows 2, 5\)"):
        HLVid(data_dir=hlvid_dup)
    rows = videomme_rows()
    rows[8]["question_id"] = rows[0]["question_id"]
    root = make_videomme(tmp_path / "vm", rows, videos=False, subtitles=False)
    with pytest.raises(DatasetError, match=r"001-1 \(rows 0, 8\)"):
        VideoMME(data_dir=root)
    HLVid(data_dir=make_hlvid(tmp_path / "ok", videos=False))  # unique ids load


def test_score_refuses_a_dataset_with_duplicate_ids(tmp_path, hlvid_dup, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"question_id": "100", "output": "A"}) + "\n")
    code = main(["score", "--benchmark", "hlvid", "--data-dir", str(hlvid_dup), "--predictions", str(preds)])
    err = capsys.readouterr().err
    assert code == 2 and "101 (rows 1, 4); 102 (rows 2, 5)" in err and len(err.strip().splitlines()) == 1


def test_eval_refuses_a_dataset_with_duplicate_ids(tmp_path, hlvid_dup, capsys):
    cfg = {"name": "dup", "output_dir": str(tmp_path / "runs"), "backend": "transformers",
           "model": {"family": "qwen2_5_vl", "path": "tiny", "device": "cpu", "dtype": "float32"},
           "benchmark": {"name": "hlvid", "kwargs": {"data_dir": str(hlvid_dup)}},
           "frames": {"num_frames": 4, "resolution": 112}, "pruners": [{"name": "none"}]}
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = main(["eval", "--config", str(path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("run_eval.py eval: ") and len(err.strip().splitlines()) == 1
    assert "2 duplicate question_id(s), rows counted from 0: 101 (rows 1, 4); 102 (rows 2, 5)" in err
    assert not list((tmp_path / "runs").rglob("records*.jsonl"))

"""``score`` on lmms-eval logs written by lmms-eval's own code: same numbers as lmms-eval's aggregation,
the extractor read from the log, partial logs scored on what they contain; our runs on their sample set."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmarks.extraction import regex_extract
from harness.cli.main import main
from tests.lmms_log import inject_mcq, write_samples_log
from tests.test_bench_data import make_videomme, videomme_rows
from tests.test_bench_reference import lmms_videomme_utils

# answers B C D | C D A | D A B. "Answer: C." is C for the mcq extractor, A for the regex one.
OUTPUTS = ["The answer is (B).", "Answer: C.", "Answer: A", "(C)", "", "A and D", "Answer: D.", "B.", "no idea"]


@pytest.fixture
def lmms(monkeypatch, tmp_path):
    home = tmp_path / "hf_home"
    make_videomme(home / "videomme", videos=False, subtitles=False)
    inject_mcq(monkeypatch)
    return lmms_videomme_utils(monkeypatch, home)


def _overall(log):
    """Full-precision overall accuracy from the written table (the JSON line rounds to 4 places)."""
    table = pd.read_csv(log.with_name(log.name.removesuffix(".jsonl") + ".score.csv"))
    return float(table[table["split"] == "overall"].iloc[0]["accuracy"])


def _score(capsys, data_dir, log, *extra):
    code = main(["score", "--benchmark", "videomme", "--data-dir", str(data_dir), "--predictions", str(log),
                 "--json", *extra])
    cap = capsys.readouterr()
    return code, cap.out, json.loads(cap.out.strip().splitlines()[-1]) if code == 0 else cap.err


def test_full_log_scores_equal_to_lmms_eval(tmp_path, lmms, capsys):
    docs = videomme_rows()
    log, metrics = write_samples_log(tmp_path / "logs", lmms, docs, OUTPUTS)
    expected = lmms.videomme_aggregate_results(metrics)
    code, out, summary = _score(capsys, tmp_path / "hf_home" / "videomme", log)
    assert code == 0
    assert _overall(log) == pytest.approx(expected, abs=1e-9) and summary["extraction"] == "lmms-eval-mcq"
    assert "extraction: lmms-eval-mcq (the extractor that wrote this lmms-eval log (lmms-eval >= 0.7.2))" in out
    assert summary["coverage"] == {"predicted": 9, "total": 9, "complete": False}
    # the regex convention gives another number on this log: the choice matters
    code, _, regex = _score(capsys, tmp_path / "hf_home" / "videomme", log, "--extraction", "lmms-eval-regex")
    assert regex["overall"] != pytest.approx(expected)


def test_partial_log_scores_on_its_questions_like_lmms_eval(tmp_path, lmms, capsys):
    docs = videomme_rows()[:5]  # lmms-eval --limit 5
    log, metrics = write_samples_log(tmp_path / "logs", lmms, docs, OUTPUTS[:5])
    expected = lmms.videomme_aggregate_results(metrics)
    data = tmp_path / "hf_home" / "videomme"
    code, out, summary = _score(capsys, data, log)
    assert code == 0 and _overall(log) == pytest.approx(expected, abs=1e-9)
    assert summary["n"] == 5 and "coverage: 5 of 9 questions have a prediction; scored on those 5" in out
    code, out, complete = _score(capsys, data, log, "--complete")
    correct = sum(m["score"] for m in metrics)
    assert _overall(log) == pytest.approx(100 * correct / 9) and complete["no_prediction"] == 4


def test_a_log_written_by_the_regex_release_is_scored_with_regex(tmp_path, lmms, capsys, monkeypatch):
    # lmms-eval <= 0.7.1's videomme task extracted with its regex; ours is tested equal to it elsewhere
    monkeypatch.setattr(lmms, "extract_characters_regex", regex_extract)
    log, metrics = write_samples_log(tmp_path / "logs", lmms, videomme_rows(), OUTPUTS)
    code, out, summary = _score(capsys, tmp_path / "hf_home" / "videomme", log)
    assert code == 0 and summary["extraction"] == "lmms-eval-regex"
    assert _overall(log) == pytest.approx(lmms.videomme_aggregate_results(metrics), abs=1e-9)
    assert "(lmms-eval <= 0.7.1)" in out


def test_a_log_no_extractor_reproduces_is_refused(tmp_path, lmms, capsys):
    log, _ = write_samples_log(tmp_path / "logs", lmms, videomme_rows(), OUTPUTS)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    lines[1]["videomme_perception_score"]["pred_answer"] = "D"  # neither extractor reads D in "Answer: C."
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    code, _, err = _score(capsys, tmp_path / "hf_home" / "videomme", log)
    assert code == 2 and "no known extractor reproduces the log's pred_answer letters" in err
    code, _, summary = _score(capsys, tmp_path / "hf_home" / "videomme", log, "--extraction", "lmms-eval-mcq")
    assert code == 0


def test_our_run_is_scored_on_its_own_sample_set(tmp_path, capsys):
    """A run of 5 synthetic-needle samples out of 7 generated, scored from its directory."""
    from harness.runner.records import RecordWriter

    run_dir = tmp_path / "run" / "m" / "none"
    run_dir.mkdir(parents=True)
    kwargs = {"num_videos": 7, "width": 64, "height": 48, "num_frames": 8, "fps": 4.0, "needle_frames": 2, "seed": 3}
    (run_dir / "run.json").write_text(json.dumps({
        "run_id": "m/none", "benchmark": {"name": "synthetic_needle", "kwargs": kwargs, "limit": 5,
                                          "extraction": "lmms-eval-mcq"}}))
    from benchmarks.registry import get_benchmark

    samples = list(get_benchmark("synthetic_needle", **kwargs).samples(5))
    with RecordWriter(run_dir / "records.jsonl") as w:
        for i, s in enumerate(samples):
            w.write({"sample_id": s.id, "output": f"Answer: {s.answer}." if i < 3 else "Z",
                     "extraction": "lmms-eval-mcq", "error": None})
    code = main(["score", "--benchmark", "synthetic_needle", "--predictions", str(run_dir), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["n"] == 5 and summary["overall"] == pytest.approx(60.0)
    assert summary["extraction"] == "lmms-eval-mcq" and "the convention the run scored with" in out
    assert "limit 5; 5 questions" in out and summary["coverage"] == {"predicted": 5, "total": 5, "complete": False}
    code = main(["score", "--benchmark", "videomme", "--predictions", str(run_dir / "records.jsonl")])
    assert code == 2 and "the run is of benchmark 'synthetic_needle', not 'videomme'" in capsys.readouterr().err

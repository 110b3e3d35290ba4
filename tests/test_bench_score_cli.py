"""``run_eval.py score``: our predictions and lmms-eval logs, tables written, JSON last line, bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.cli.main import main
from tests.test_bench_data import make_videomme, videomme_rows


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_videomme(tmp_path_factory.mktemp("vm"), videos=False, subtitles=False)


def _write_jsonl(path, objs):
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def _outputs():
    rows = videomme_rows()
    # answers B C D | C D A | D A B ; regex reads "Answer: x" as A
    texts = ["B", "Answer: C.", "The answer is (D).", "c", "", "A", "D", "Answer: A", "(B)"]
    return [(r["question_id"], t) for r, t in zip(rows, texts)]


def _score(capsys, *args):
    code = main(["score", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_scores_our_jsonl_and_writes_tables(tmp_path, data_dir, capsys):
    preds = _write_jsonl(tmp_path / "preds.jsonl", [{"question_id": q, "output": o} for q, o in _outputs()])
    code, out, err = _score(
        capsys, "--benchmark", "videomme", "--data-dir", data_dir, "--predictions", preds, "--json"
    )
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    # lmms-eval-regex: B ok, "Answer: C." -> A wrong, D ok, c none, "" none, A ok, D ok, "Answer: A" -> A ok
    # (by luck), B ok
    assert summary["extraction"] == "lmms-eval-regex" and summary["overall"] == pytest.approx(
        100 * 6 / 9, abs=1e-3
    )
    short, medium = pytest.approx(200 / 3, abs=1e-3), pytest.approx(100 / 3, abs=1e-3)
    assert summary["by"]["duration"] == {"long": 100.0, "medium": medium, "short": short}
    assert set(summary["by"]) == {"duration", "domain", "sub_category", "task_type"}
    assert summary["unanswered"] == 2 and summary["n"] == 9
    csv = pd.read_csv(tmp_path / "preds.score.csv")
    assert csv.iloc[0]["split"] == "overall" and csv.iloc[0]["correct"] == 6
    assert "extraction `lmms-eval-regex`" in (tmp_path / "preds.score.md").read_text()


def test_all_conventions_side_by_side(tmp_path, data_dir, capsys):
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": q, "output": o} for q, o in _outputs()])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, _ = _score(capsys, "--benchmark", "videomme", "--data-dir", data_dir, "--predictions", preds,
                          "--extraction", "all", "--out", out_dir, "--json")  # fmt: skip
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    conv = summary["conventions"]
    assert summary["overall"] == conv["lmms-eval-regex"]["overall"]
    # mcq: "Answer: C." -> C is now right: 7 of 9 ("c" is still nothing: it is case-sensitive)
    assert conv["lmms-eval-mcq"]["overall"] == pytest.approx(100 * 7 / 9, abs=1e-3)
    # official: same letters as regex, the two empty extractions leave the denominator: 6 of 7
    assert conv["videomme-official"]["overall"] == pytest.approx(100 * 6 / 7, abs=1e-3)
    assert conv["videomme-official"]["scored"] == 7
    table = pd.read_csv(out_dir / "p.score.csv")
    assert set(table["extraction"]) == {"lmms-eval-regex", "lmms-eval-mcq", "videomme-official"}


def test_lmms_eval_sample_logs(tmp_path, data_dir, capsys):
    new, old = [], []
    for i, (qid, text) in enumerate(_outputs()):
        # 0.7.x: doc dropped, the metric dict keeps question_id; filtered_resps flattened
        new.append({"doc_id": i, "target": "B", "filtered_resps": text, "doc_hash": "h",
                    "videomme_perception_score": {"question_id": qid, "pred_answer": "X", "score": 0.0}})  # fmt: skip
        # older releases: the doc is kept, responses nested
        old.append({"doc_id": i, "doc": {"question_id": qid}, "resps": [[text]], "filtered_resps": [text]})
    results = []
    for name, objs in (("new", new), ("old", old)):
        log = _write_jsonl(tmp_path / f"20250101_samples_videomme_{name}.jsonl", objs)
        code, out, err = _score(capsys, "--benchmark", "videomme", "--data-dir", data_dir, "--predictions", log,
                                "--extraction", "lmms-eval-mcq", "--json")  # fmt: skip
        assert code == 0, err
        results.append(json.loads(out.strip().splitlines()[-1])["overall"])
    assert results == [pytest.approx(100 * 7 / 9, abs=1e-3)] * 2


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            [{"question_id": "001-1", "output": "A"}, {"question_id": "777-1", "output": "B"}],
            "does not have: 777-1",
        ),
        (
            [{"question_id": "001-1", "output": "A"}, {"question_id": "001-1", "output": "B"}],
            "duplicate predictions",
        ),
        ([{"question": "001-1", "output": "A"}], "no question id"),
        ([{"question_id": "001-1", "output": 3}], "must be a string or null"),
    ],
)
def test_bad_predictions_exit_2_with_a_reason(tmp_path, data_dir, capsys, lines, message):
    preds = _write_jsonl(tmp_path / "bad.jsonl", lines)
    code, _, err = _score(capsys, "--benchmark", "videomme", "--data-dir", data_dir, "--predictions", preds)
    assert code == 2 and message in err
    assert not (tmp_path / "bad.score.csv").exists()


def test_partial_predictions_are_scored_on_what_they_contain(tmp_path, data_dir, capsys):
    preds = _write_jsonl(
        tmp_path / "few.jsonl",
        [{"question_id": "001-1", "output": "B"}, {"question_id": "001-2", "output": None}],
    )
    args = ["--benchmark", "videomme", "--data-dir", data_dir, "--predictions", preds, "--json"]
    code, out, err = _score(capsys, *args)
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    # 001-1 right; 001-2 is in the file with a null output (the sample failed): wrong
    assert summary["n"] == 2 and summary["no_prediction"] == 1 and summary["overall"] == pytest.approx(50.0)
    assert summary["coverage"] == {"predicted": 2, "total": 9, "complete": False}
    assert "coverage: 2 of 9 questions have a prediction; scored on those 2 (--complete" in out
    code, out, err = _score(capsys, *args, "--complete")
    summary = json.loads(out.strip().splitlines()[-1])
    assert (
        summary["no_prediction"] == 8
        and summary["scored"] == 9
        and summary["overall"] == pytest.approx(100 / 9, abs=1e-3)
    )
    assert "8 of 9 questions had no prediction" in err and "the 7 others count as wrong" in out


def test_missing_data_and_file_errors(tmp_path, capsys):
    code, _, err = _score(
        capsys, "--benchmark", "hlvid", "--data-dir", tmp_path / "nope", "--predictions", tmp_path / "x.jsonl"
    )
    assert code == 2 and "not a directory" in err
    code, _, err = _score(
        capsys, "--benchmark", "videomme", "--data-dir", tmp_path, "--predictions", tmp_path / "x.jsonl"
    )
    assert code == 2 and "annotation file not found" in err

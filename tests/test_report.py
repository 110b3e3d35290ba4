"""Report tables and plots from synthetic records: numbers computed by hand, files loadable with pandas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from harness.cli.main import main
from harness.report.build import build_report
from harness.report.load import ReportError, load_records
from harness.report.plots import pareto_front
from harness.report.tables import split_table, summary_table, wilson_interval
from harness.runner.records import RecordWriter, write_json


def write_run(root: Path, label: str, pruner: str, rows: list[dict], model: str = "m", shards: int = 1,
              tiny: bool = False) -> Path:
    run_dir = root / model / label
    write_json(run_dir / "run.json", {"run_id": f"{model}/{label}", "experiment": "x"})
    for i, row in enumerate(rows):
        rank = i % shards
        name = "records.jsonl" if shards == 1 else f"records.rank{rank:03d}-of-{shards:03d}.jsonl"
        with RecordWriter(run_dir / name) as w:
            w.write({
                "sample_id": row["id"], "run_id": f"{model}/{label}", "model": model, "benchmark": "b",
                "pruner": pruner, "pruner_label": label, "tiny_model": tiny,
                "correct": row.get("correct"), "counted": row.get("counted", True),
                "question": f"Which shape is in {row['id']}?", "options": ["red | square", "blue, circle"],
                "prompt": f"Question about {row['id']}\nA. red | square\nB. blue, circle", "answer": "A",
                "output": None if row.get("error") else ("A" if row.get("correct") else "B"),
                "extracted": None if row.get("error") else ("A" if row.get("correct") else "B"),
                "error": row.get("error"), "splits": {"duration": row.get("duration", "short")},
                "tokens": {"visual_before": 100, "visual_after": row.get("tokens", 100), "prompt": 120,
                           "generated": 2},
                "latency": {"decode": 0.1, "gaze": row.get("gaze", 0.0), "vision": 0.2,
                            "prefill": row.get("prefill", 0.4), "generate": 0.3,
                            "total": 0.1 + row.get("gaze", 0.0) + 0.2 + row.get("prefill", 0.4) + 0.3},
                "evidence": {"recall": row.get("recall", 1.0), "hit": row.get("recall", 1.0) > 0},
                "peak_memory_mb": 10.0 + i,
                **({"latency_batched": row["batched"]} if "batched" in row else {}),
            })
    return run_dir


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "exp"
    none_rows = [{"id": f"s{i}", "correct": i < 6, "duration": "short" if i < 5 else "long"} for i in range(10)]
    gaze_rows = [{"id": f"s{i}", "correct": i < 3, "duration": "short" if i < 5 else "long", "tokens": 25,
                  "prefill": 0.1, "gaze": 0.05, "recall": 0.5} for i in range(10)]
    gaze_rows[9] = {"id": "s9", "error": {"stage": "generate", "type": "RuntimeError", "message": "OOM"}}
    write_run(root, "none", "none", none_rows, shards=2)
    write_run(root, "autogaze_gr0.25", "autogaze", gaze_rows)
    return root


def test_summary_numbers(runs):
    df = load_records([runs])
    assert len(df) == 20 and set(df.run_id) == {"m/none", "m/autogaze_gr0.25"}
    summary = summary_table(df).set_index("pruner_label")
    none, gaze = summary.loc["none"], summary.loc["autogaze_gr0.25"]
    assert none["n"] == 10 and none["errors"] == 0 and none["accuracy"] == pytest.approx(60.0)
    lo, hi = wilson_interval(6, 10)
    assert none["wilson95_low"] == pytest.approx(100 * lo) and none["wilson95_high"] == pytest.approx(100 * hi)
    # the failed sample is not scored: 3 of 9
    assert gaze["errors"] == 1 and gaze["n_scored"] == 9 and gaze["accuracy"] == pytest.approx(100 * 3 / 9)
    assert gaze["visual_tokens"] == 25 and gaze["token_reduction_pct"] == pytest.approx(75.0)
    assert none["token_reduction_pct"] == 0
    assert gaze["lat_prefill_s"] == pytest.approx(0.1) and gaze["lat_gaze_s"] == pytest.approx(0.05)
    assert gaze["speedup_prefill"] == pytest.approx(4.0)
    assert gaze["speedup_total"] == pytest.approx(1.0 / 0.75)
    assert none["speedup_total"] == pytest.approx(1.0)
    assert gaze["evidence_recall"] == pytest.approx(0.5) and gaze["evidence_hit"] == pytest.approx(1.0)


def test_split_accuracy(runs):
    splits = split_table(load_records([runs]))
    row = splits[(splits.pruner_label == "none") & (splits.split == "duration")].set_index("value")
    assert row.loc["short", "accuracy"] == pytest.approx(100.0) and row.loc["long", "accuracy"] == pytest.approx(20.0)
    assert row.loc["short", "n_scored"] == 5


def test_wilson_interval_edges():
    # published values for 0/10 and 10/10 (Wilson 1927; e.g. Newcombe 1998, table I): 0-27.75%
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)
    lo, hi = wilson_interval(6, 10)
    assert (lo, hi) == (pytest.approx(0.3127, abs=1e-4), pytest.approx(0.8318, abs=1e-4))
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_pareto_front():
    pts = [(100, 60), (25, 30), (50, 55), (60, 50), (25, 20)]
    assert pareto_front(pts) == [(25, 30), (50, 55), (100, 60)]


def test_report_files_loadable(runs, tmp_path):
    out = tmp_path / "rep"
    report = build_report([runs], out)
    for name in ["summary.csv", "splits.csv", "splits_pivot.csv", "latency.csv", "records.csv", "errors.csv",
                 "report.md", "report.html", "pareto.png", "evidence.png", "latency.png"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.pruner_label) == {"none", "autogaze_gr0.25"}
    pd.testing.assert_frame_equal(summary, pd.read_csv(out / "summary.csv"))
    recs = pd.read_csv(out / "records.csv")
    assert recs.shape[0] == 20
    row = recs.set_index(["run_id", "sample_id"]).loc[("m/none", "s3")]
    assert row["question"] == "Which shape is in s3?" and row["prompt"].startswith("Question about s3\nA.")
    assert json.loads(row["options"]) == ["red | square", "blue, circle"]
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "| m | b | autogaze_gr0.25 |" in md and "Failed samples" in md and "OOM" in md
    assert "tiny random-weight" not in md and not report.tiny
    pivot = pd.read_csv(out / "splits_pivot.csv").set_index("pruner_label")
    assert pivot.loc["none", "duration=long"] == pytest.approx(20.0)


def test_tiny_model_is_labelled(tmp_path):
    write_run(tmp_path / "e", "none", "none", [{"id": "a", "correct": True}], tiny=True)
    report = build_report([tmp_path / "e"], tmp_path / "r")
    assert "tiny random-weight model: numbers are plumbing checks, not accuracy" in (tmp_path / "r" / "report.md").read_text()
    assert report.tiny


def test_report_cli_and_errors(runs, tmp_path, capsys):
    assert main(["report", str(runs), "--out", str(tmp_path / "o")]) == 0
    assert "autogaze_gr0.25" in capsys.readouterr().out
    assert main(["report", str(runs), "--out", str(tmp_path / "o0"), "--max-thumbnails", "0"]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no run directories"):
        load_records([tmp_path / "empty"])


def test_latest_record_wins_and_shards_merge(tmp_path):
    run_dir = write_run(tmp_path / "e", "none", "none", [{"id": "a", "correct": False}], shards=1)
    with RecordWriter(run_dir / "records.rank001-of-002.jsonl") as w:  # a retry on another rank
        w.write({"sample_id": "b", "run_id": "m/none", "correct": True, "error": None, "pruner": "none",
                 "pruner_label": "none", "model": "m", "benchmark": "b"})
    df = load_records([tmp_path / "e"])
    assert sorted(df.sample_id) == ["a", "b"]
    assert json.loads((run_dir / "run.json").read_text())["run_id"] == "m/none"


def test_extraction_conventions_side_by_side_and_published(tmp_path):
    from benchmarks.extraction import extract
    from harness.report.extras import extraction_table, published_table

    run_dir = tmp_path / "e" / "m" / "none"
    write_json(run_dir / "run.json", {"run_id": "m/none"})
    outputs = ["Answer: C.", "C", "no idea", "B"]
    with RecordWriter(run_dir / "records.jsonl") as w:
        for i, out in enumerate(outputs):
            w.write({"sample_id": f"s{i}", "run_id": "m/none", "model": "m", "benchmark": "hlvid", "pruner": "none",
                     "pruner_label": "none", "answer": "C", "output": out, "error": None, "counted": True,
                     "correct": extract(out, "lmms-eval-regex") == "C"})
    df = load_records([tmp_path / "e"])
    table = extraction_table(df).iloc[0]
    # each column re-derived from the benchmarks package's own extractor
    for conv in ["lmms-eval-regex", "lmms-eval-mcq", "videomme-official"]:
        letters = [extract(o, conv) for o in outputs]
        kept = [x for x in letters if x is not None] if conv == "videomme-official" else letters
        assert table[conv] == pytest.approx(100 * sum(x == "C" for x in kept) / len(kept)), conv
    assert table["lmms-eval-regex"] != table["lmms-eval-mcq"]  # "Answer: C." is read differently
    assert table["videomme-official n"] == 3  # no letter -> out of the denominator
    pub = published_table(df).set_index("model")
    assert pub.loc["NVILA-8B-HD-Video", "published_accuracy"] == 52.6


def test_scorer_view_counts_failures_as_wrong(runs):
    from harness.report.extras import scorer_table

    table = scorer_table(load_records([runs]))
    overall = table[table.split == "overall"].set_index("pruner_label")
    assert overall.loc["autogaze_gr0.25", "accuracy"] == pytest.approx(30.0)  # 3 of 10: the failure is wrong
    assert overall.loc["autogaze_gr0.25", "no_prediction"] == 1
    assert overall.loc["none", "accuracy"] == pytest.approx(60.0)
    assert set(table.split) == {"overall", "duration"}


def test_batched_latency_is_flagged_in_the_summary(tmp_path):
    """Runs whose LLM time is a batch's time shared out must say so beside their latency."""
    root = tmp_path / "exp"
    write_run(root, "none", "none", [{"id": f"s{i}", "correct": True} for i in range(3)])
    write_run(root, "batched", "none", [{"id": f"s{i}", "correct": True, "batched": 4} for i in range(3)])
    summary = summary_table(load_records([root])).set_index("pruner_label")
    assert summary.loc["none", "latency_batched"] == 1
    assert summary.loc["batched", "latency_batched"] == 4


def test_dodge_spreads_coincident_points_only():
    from harness.report.plots import dodge

    xs = [100.0, 100.0, 100.0, 300.0, 101.0]
    out = dodge(xs, step=4.0)
    assert out[3] == 300.0  # alone: its true x
    cluster = sorted(out[i] for i in (0, 1, 2, 4))
    assert all(b - a == pytest.approx(4.0) for a, b in zip(cluster, cluster[1:]))  # all visible, step apart
    assert sum(cluster) / 4 == pytest.approx(sum(xs[i] for i in (0, 1, 2, 4)) / 4)  # centred on the cluster
    assert dodge([1.0, 50.0], step=4.0) == [1.0, 50.0]


def test_intervals_name_their_method(runs, tmp_path):
    """Wilson (summary, splits), clustered (scorer view), Student t (evidence recall): never a bare 'ci'."""
    report = build_report([runs], tmp_path / "rep")
    for name in ["summary.csv", "splits.csv", "scorer.csv"]:
        cols = pd.read_csv(tmp_path / "rep" / name).columns
        assert not [c for c in cols if c.startswith("ci")], (name, list(cols))
    assert {"wilson95_low", "wilson95_high", "evidence_recall_t95_low"} <= set(report.summary.columns)
    assert {"clustered95_low", "clustered95_high"} <= set(pd.read_csv(tmp_path / "rep" / "scorer.csv").columns)
    gaze = report.summary.set_index("pruner_label").loc["autogaze_gr0.25"]
    # every recall is 0.5 -> zero-width t interval
    assert gaze["evidence_recall_t95_low"] == pytest.approx(0.5) == gaze["evidence_recall_t95_high"]
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "<th>column</th>" not in page  # the split pivot's axis name used to show as a blank column
    assert "Wilson" in page and "clustered" in page


def test_t_interval_matches_scipy():
    from scipy import stats

    from harness.report.tables import t_interval

    x = [0.2, 0.5, 0.9, 1.0]
    lo, hi = t_interval(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=sum(x) / 4, scale=stats.sem(x))
    assert (lo, hi) == (pytest.approx(ref[0]), pytest.approx(ref[1]))
    assert all(math.isnan(v) for v in t_interval([0.3]))


def test_html_per_sample_rows_thumbnails_and_failures(tmp_path):
    from tests.report_fixtures import write_runs

    exp = write_runs(tmp_path)
    out = tmp_path / "rep"
    report = build_report([exp], out)
    page = (out / "report.html").read_text()
    assert page.count("<tr class=") == 9  # 3 runs x 3 samples
    assert 'data-status="failed"' in page and "generate: RuntimeError: out of memory" in page
    assert "A. red &lt;b&gt;" in page and "B. green &amp; blue" in page  # options lettered and escaped
    assert "http" not in page.split("<body>")[1]  # nothing fetched from the network
    # strips for the 2 pruned runs x 2 readable videos; none for `none`; the moved video says why
    strips = sorted(p.relative_to(out).as_posix() for p in (out / "thumbs").rglob("*.png"))
    assert len(strips) == 4 and all(f'src="{s}"' in page for s in strips)
    assert page.count("thumbnail unavailable: VideoError") == 2
    from PIL import Image

    strip = Image.open(out / strips[0])
    assert strip.size[1] > 80 and strip.size[0] > 8 * 100  # 8 frames of 96x64 scaled to 80 px high
    assert set(report.files) >= {f"thumbs/{s.removeprefix('thumbs/')}" for s in strips}
    recs = pd.read_csv(out / "records.csv")
    assert "sel_masks" not in recs.columns and recs.shape[0] == 9


def test_thumbnail_limit_keeps_autogaze_first(tmp_path):
    from tests.report_fixtures import write_runs

    out = tmp_path / "rep"
    build_report([write_runs(tmp_path)], out, max_thumbnails=2)
    drawn = [p.parent.name for p in (out / "thumbs").rglob("*.png")]
    # AutoGaze's s0 and s1 (failed in generation, but its gaze was recorded) before any baseline
    assert len(drawn) == 2 and all(d.startswith("m_autogaze") for d in drawn)
    assert (out / "report.html").read_text().count("over the report&#x27;s limit of 2 strips") == 4
    build_report([tmp_path / "exp"], tmp_path / "none", max_thumbnails=0)
    assert not (tmp_path / "none" / "thumbs").exists()

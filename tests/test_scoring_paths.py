"""One scorer for ``eval``, ``score`` and ``report``: the same output scores the same three ways.

The run: HLVid (options parsed per question, so five options give the letters A-E) with
``reasoning_tags: true``, fake model outputs chosen so that each path's old shortcuts would
differ: a ``<think>`` block mentioning other letters (must be stripped), an answer ``E`` (outside
A-D), an output with no letter (``videomme-official`` leaves it out of the denominator).
"""

from __future__ import annotations

import json
import re

import pytest

from benchmarks import scoring
from benchmarks.extraction import CONVENTIONS
from benchmarks.hlvid import HLVid
from harness.cli.main import main
from harness.models.base import Generation, TokenCounts
from harness.report.extras import extraction_table, rescore
from harness.report.load import load_records
from harness.runner.config import load_config
from harness.runner.engine import Evaluator
from harness.runner.records import read_run_records
from harness.runner.sharding import ShardInfo
from harness.runner.testing import FakeAdapter, fake_components
from tests.test_bench_data import hlvid_question, make_hlvid

OPTIONS = ["red", "green", "blue", "white", "black"]
# (answer, model output)
CASES = [
    ("E", "E"),  # a letter outside A-D
    ("B", "<think>Maybe A, or C?</think> B"),  # the reasoning mentions other letters first
    ("C", "no idea"),  # no letter at all
    ("A", "Answer: (D)"),
    ("E", "<think>D looks close.</think>The answer is (E)."),
]


class ScriptedAdapter(FakeAdapter):
    """Answers question ``i`` with ``CASES[i]``'s output."""

    def generate(self, frames, selection, prompt, *, fps, max_new_tokens=16, prune_stage="post_vit"):
        if prompt == "warm-up":
            return super().generate(frames, selection, prompt, fps=fps)
        i = int(re.search(r"sign (\d+)", prompt).group(1))
        n = selection.num_kept
        return Generation(text=CASES[i][1], tokens=TokenCounts(n, n, n + 5, 3), timings={"prefill": 0.01})


def _dataset(tmp_path):
    rows = [{"question_id": 200 + i, "question": hlvid_question(f"What colour is sign {i}?", OPTIONS),
             "category": "av", "video_path": f"clip_av_video_{i}_000.mp4", "answer": answer}
            for i, (answer, _) in enumerate(CASES)]
    return make_hlvid(tmp_path / "hlvid", rows, videos=False)


def _eval(tmp_path, convention: str):
    root = _dataset(tmp_path)
    settings = {"data_dir": str(root), "reasoning_tags": True}
    out = tmp_path / f"out-{convention}"
    cfg = load_config(data={"output_dir": str(out), "model": {"name": "fake", "path": "/m"},
                            "benchmark": {"name": "hlvid", "kwargs": settings, "extraction": convention},
                            "frames": {"num_frames": 4}, "pruners": ["none"]})
    bench = HLVid(**settings)
    Evaluator(cfg, fake_components(bench, ScriptedAdapter()), ShardInfo(), progress=False).run()
    return bench, out / "fake" / "none"


def _letter(value):
    """A frame cell's letter: pandas holds a missing one as NaN."""
    return value if isinstance(value, str) else None


def _three_ways(tmp_path, convention: str, capsys):
    """Per sample (pred, correct, counted) as eval recorded, as ``score`` computes, as the report re-scores;
    and the overall accuracy from each command."""
    bench, run_dir = _eval(tmp_path, convention)
    records = {r["sample_id"]: r for r in read_run_records(run_dir)}
    assert all(r["error"] is None for r in records.values())
    by_eval = {sid: (r["extracted"], r["correct"], r["counted"]) for sid, r in records.items()}
    counted = [r for r in records.values() if r["counted"]]
    eval_acc = 100 * sum(r["correct"] for r in counted) / len(counted)

    # score: the function the command scores with, then the command itself on the run directory
    samples = list(bench.samples())
    frame = scoring.score_samples(bench, samples, {sid: r["output"] for sid, r in records.items()}, convention)
    by_score = {row.sample_id: (_letter(row.pred), row.correct, row.counted) for row in frame.itertuples()}
    assert main(["score", "--benchmark", "hlvid", "--predictions", str(run_dir), "--json"]) == 0
    score_acc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["overall"]

    # report: the extraction table's re-scoring from the flat records
    df = load_records([run_dir])
    again = rescore(df, convention)
    by_report = {df.loc[i, "sample_id"]: (_letter(row.pred), bool(row.correct), bool(row.counted))
                 for i, row in again.iterrows()}
    report_acc = extraction_table(df).iloc[0][convention]
    return by_eval, by_score, by_report, (eval_acc, score_acc, report_acc)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_an_output_scores_the_same_in_eval_score_and_report(tmp_path, capsys, convention):
    by_eval, by_score, by_report, (eval_acc, score_acc, report_acc) = _three_ways(tmp_path, convention, capsys)
    assert by_eval == by_score == by_report
    assert eval_acc == pytest.approx(score_acc, abs=1e-3) and eval_acc == pytest.approx(report_acc)
    # the reasoning block is stripped (B, not the A it mentions) and E is a letter (not A-D only)
    assert by_eval["200"][:2] == ("E", True) and by_eval["201"][:2] == ("B", True)
    assert by_eval["202"] == (None, False, convention != "videomme-official")


def test_breaking_the_shared_scorer_changes_all_three(tmp_path, capsys, monkeypatch):
    honest = scoring.score_answer

    def broken(*args, **kwargs):  # every verdict flipped
        s = honest(*args, **kwargs)
        return scoring.Score(s.pred, s.status, s.counted, not s.correct, s.reason)

    _, _, _, good = _three_ways(tmp_path / "good", "lmms-eval-regex", capsys)
    monkeypatch.setattr(scoring, "score_answer", broken)
    by_eval, by_score, by_report, bad = _three_ways(tmp_path / "bad", "lmms-eval-regex", capsys)
    assert by_eval == by_score == by_report
    for before, after in zip(good, bad, strict=True):  # eval, score, report: each moved
        assert after == pytest.approx(100 - before, abs=1e-3)

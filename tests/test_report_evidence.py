"""Report: budget-aware evidence columns and the recall-vs-kept-share curve, numbers worked by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.report.evidence_curve import evidence_auc_table, plot_evidence_curve
from harness.report.load import load_records
from harness.report.tables import split_pivot, split_table, summary_table
from harness.runner.records import RecordWriter, write_json


def _run(root, label, pruner, evidence):
    run_dir = root / label
    write_json(run_dir / "run.json", {"run_id": label, "experiment": "x"})
    with RecordWriter(run_dir / "records.jsonl") as w:
        for i, ev in enumerate(evidence):
            w.write({"sample_id": f"s{i}", "run_id": label, "model": "m", "benchmark": "b", "pruner": pruner,
                     "pruner_label": label, "correct": None, "error": None, "splits": {"kind": "code"},
                     "selection": {"kept": 10, "total": 100}, "latency": {"decode": 0.1, "gaze": 0.01},
                     "evidence": ev})


def test_summary_counts_unfindable_and_averages_skill_over_findable(tmp_path):
    ev = [{"recall": 1.0, "hit": True, "chance": 0.2, "skill": 1.0, "kept_share": 0.1, "findable": True},
          {"recall": 0.2, "hit": False, "chance": 0.2, "skill": 0.0, "kept_share": 0.1, "findable": True},
          {"recall": 1.0, "hit": True, "chance": 0.99, "skill": 1.0, "kept_share": 0.1, "findable": True},
          {"recall": 0.0, "hit": False, "chance": 0.0, "skill": None, "kept_share": 0.1, "findable": False,
           "reason": "missed"}]
    _run(tmp_path, "r", "random", ev)
    df = load_records([tmp_path])
    row = summary_table(df).iloc[0]
    assert row["evidence_recall"] == pytest.approx(2.2 / 4)  # the miss counts as 0
    # pooled over the three findable samples: (0.8 + 0 + 0.01) / (0.8 + 0.8 + 0.01)
    assert row["evidence_skill"] == pytest.approx(0.81 / 1.61)
    assert row["evidence_unfindable"] == 1 and row["evidence_kept_share"] == pytest.approx(0.1)
    # a pruner-only run has no accuracy: the split pivot still has its row
    pivot = split_pivot(split_table(df))
    assert len(pivot) == 1 and math.isnan(pivot["overall"].iloc[0])


def test_auc_by_hand_and_plot(tmp_path):
    summary = pd.DataFrame({
        "model": "m", "benchmark": "b",
        "pruner": ["none", "random", "random", "oracle"],
        "evidence_kept_share": [1.0, 0.2, 0.6, 0.05],
        "evidence_recall": [0.9, 0.2, 0.6, 0.9],
    })
    auc = evidence_auc_table(summary).set_index("pruner")
    # random: (0,0) (0.2,0.2) (0.6,0.6) (1,0.9): 0.02 + 0.16 + 0.3 = 0.48
    assert auc.loc["random", "recall_auc"] == pytest.approx(0.02 + 0.16 + 0.3)
    assert auc.loc["random", "budgets"] == 2 and auc.loc["random", "max_kept_share"] == pytest.approx(0.6)
    # oracle: (0,0) (0.05,0.9) (1,0.9): 0.0225 + 0.855
    assert auc.loc["oracle", "recall_auc"] == pytest.approx(0.0225 + 0.855)
    assert "none" not in auc.index
    assert plot_evidence_curve(summary, tmp_path / "c.png").stat().st_size > 0
    assert math.isnan(evidence_auc_table(summary[summary.pruner != "none"])["recall_auc"].iloc[0])
    assert plot_evidence_curve(summary.drop(columns="evidence_kept_share"), tmp_path / "d.png") is None

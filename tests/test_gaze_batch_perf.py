"""``python -m harness.perf.gaze_batch`` runs (tiny model, small batch) and reports agreement shares."""

from __future__ import annotations

import json

import pytest

from harness.perf import gaze_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_agreement_counts_length_differences():
    assert gaze_batch.agreement([1, 2, 3], [1, 2, 3]) == (3, 3)
    assert gaze_batch.agreement([1, 2], [1, 5, 6]) == (1, 3)
    assert gaze_batch.share([(1, 3), (3, 3)]) == pytest.approx(4 / 6)


def test_benchmark_runs_on_tiny(capsys):
    assert gaze_batch.main(["--model", "tiny", "--threads", "1", "--batch", "2", "--ratio", "0.05"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["deterministic"] for r in result["rows"]] == [False, True]
    for row in result["rows"]:
        assert row["share_equal_batch1"] == 1.0 and row["ids_compared"] > 0
        assert row["share_equal_original"] is None  # tiny is not the fixture's checkpoint

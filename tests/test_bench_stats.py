"""Clustered standard errors and CIs against lmms-eval's implementation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.stats import Z95, accuracy_ci, accuracy_table, clustered_stderr
from tests.test_bench_reference import lmms_clustered_stderr


@pytest.mark.parametrize("seed", range(5))
def test_clustered_stderr_equals_lmms_eval(seed):
    rng = np.random.default_rng(seed)
    n_videos = int(rng.integers(2, 30))
    clusters = [f"v{int(c)}" for c in rng.integers(0, n_videos, size=int(rng.integers(5, 90)))]
    if len(set(clusters)) < 2:
        clusters[0], clusters[1] = "x", "y"
    scores = rng.integers(0, 2, size=len(clusters)).astype(float).tolist()
    assert math.isclose(
        clustered_stderr(scores, clusters), lmms_clustered_stderr()(scores, clusters), rel_tol=1e-12
    )


def test_clustering_widens_the_interval_for_correlated_questions():
    # three questions per video, all right or all wrong: clustered SE > naive SE
    scores = [1.0] * 6 + [0.0] * 6
    clusters = [i // 3 for i in range(12)]
    naive = math.sqrt(np.var(scores, ddof=1) / 12)
    assert clustered_stderr(scores, clusters) > naive
    # one question per video: clustered == naive
    assert math.isclose(clustered_stderr(scores, list(range(12))), naive)


def test_undefined_cases_are_nan_like_lmms_eval_na():
    assert math.isnan(clustered_stderr([1.0], ["a"]))
    assert math.isnan(clustered_stderr([1.0, 0.0], ["a", "a"]))  # one cluster: lmms-eval reports N/A
    acc, se, lo, hi = accuracy_ci([], [])
    assert all(math.isnan(x) for x in (acc, se, lo, hi))
    with pytest.raises(ValueError, match="3 scores but 2 cluster ids"):
        clustered_stderr([1, 0, 1], ["a", "b"])


def test_ci_is_clipped_and_centered():
    acc, se, lo, hi = accuracy_ci([True] * 9 + [False], list(range(10)))
    assert acc == 90.0 and hi == 100.0 and math.isclose(lo, 90.0 - Z95 * se)


def test_accuracy_table_counts():
    df = pd.DataFrame(
        {
            "sample_id": list("abcdef"),
            "video_id": ["v1", "v1", "v2", "v2", "v3", "v3"],
            "kind": ["x", "x", "x", "y", "y", "y"],
            "correct": [True, False, True, False, False, False],
            "counted": [True, True, True, True, False, False],
            "status": ["ok", "ok", "ok", "no_prediction", "unanswered", "invalid_sample"],
        }
    )
    t = accuracy_table(df, ["kind"], "video_id")
    overall = t.iloc[0]
    assert (overall["n"], overall["scored"], overall["correct"]) == (6, 4, 2) and overall["accuracy"] == 50.0
    assert (overall["unanswered"], overall["no_prediction"], overall["invalid_sample"]) == (1, 1, 1)
    y = t[(t["split"] == "kind") & (t["group"] == "y")].iloc[0]
    assert y["scored"] == 1 and y["accuracy"] == 0.0 and math.isnan(y["stderr"])
    with pytest.raises(ValueError, match="lacks columns \\['counted'\\]"):
        accuracy_table(df.drop(columns="counted"), ["kind"], "video_id")

"""Accuracy with 95% confidence intervals clustered by video.

Why clustered: a benchmark's questions come in groups that share a video (3 per video in
Video-MME), so they are not independent and the naive binomial interval is too narrow.
lmms-eval (>= 0.6, ``api/metrics.py: clustered_stderr``, task key ``cluster_key: videoID``)
uses Eq. 4 of Miller, "Adding Error Bars to Evals" (arXiv:2411.00640):

    SE^2 = var(s, ddof=1) / n + (1 / n^2) * sum_c sum_{i != j in c} (s_i - mean)(s_j - mean)

and reports "N/A" when there are fewer than two samples or fewer than two clusters; we
return NaN then. The 95% interval is ``accuracy +- 1.96 * SE`` (normal approximation, as the
CLT standard error implies), in percent, clipped to [0, 100].
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence

import pandas as pd

Z95 = 1.959963984540054


def clustered_stderr(scores: Sequence[float], clusters: Sequence[Hashable]) -> float:
    """Clustered standard error of the mean of ``scores`` (same formula as lmms-eval's)."""
    n = len(scores)
    if n != len(clusters):
        raise ValueError(f"clustered_stderr: {n} scores but {len(clusters)} cluster ids")
    if n < 2 or len(set(clusters)) < 2:
        return float("nan")
    mean = sum(scores) / n
    deviations = [float(s) - mean for s in scores]
    var = sum(d * d for d in deviations) / (n - 1)
    by_cluster: dict[Hashable, float] = defaultdict(float)
    by_cluster_sq: dict[Hashable, float] = defaultdict(float)
    for d, c in zip(deviations, clusters):
        by_cluster[c] += d
        by_cluster_sq[c] += d * d
    # sum over i != j within a cluster = (sum d)^2 - sum d^2
    cross = sum(by_cluster[c] ** 2 - by_cluster_sq[c] for c in by_cluster) / (n * n)
    # The cross term can be negative (anti-correlated questions); never take a negative root.
    return math.sqrt(max(var / n + cross, 0.0))


def accuracy_ci(correct: Sequence[bool], clusters: Sequence[Hashable]) -> tuple[float, float, float, float]:
    """(accuracy %, stderr in %, CI low %, CI high %); NaNs where undefined (no samples / one cluster)."""
    n = len(correct)
    if n == 0:
        nan = float("nan")
        return nan, nan, nan, nan
    scores = [1.0 if c else 0.0 for c in correct]
    acc = 100.0 * sum(scores) / n
    se = 100.0 * clustered_stderr(scores, clusters)
    if math.isnan(se):
        return acc, se, float("nan"), float("nan")
    return acc, se, max(0.0, acc - Z95 * se), min(100.0, acc + Z95 * se)


# Columns of a per-sample score frame that accuracy_table reads (see benchmarks/scoring.py).
SCORE_COLUMNS = ("sample_id", "correct", "counted", "status")


def accuracy_table(scores: pd.DataFrame, group_columns: Sequence[str], cluster_column: str) -> pd.DataFrame:
    """Accuracy overall and per value of each group column.

    ``scores`` has one row per question with ``correct`` (bool), ``counted`` (bool: in the
    denominator), ``status`` (ok / unanswered / no_prediction / invalid_sample), the cluster
    column and the group columns. Rows: split ("overall" or a group column), group (its value).
    Columns: n (questions), scored (denominator), correct, accuracy, stderr, ci95_low,
    ci95_high (all in %), unanswered, no_prediction, invalid_sample (counts).
    """
    missing = [c for c in (*SCORE_COLUMNS, cluster_column, *group_columns) if c not in scores.columns]
    if missing:
        raise ValueError(f"accuracy_table: score frame lacks columns {missing}; has {list(scores.columns)}")
    rows = [_row("overall", "all", scores, cluster_column)]
    for col in group_columns:
        for value, part in scores.groupby(col, sort=True, dropna=False):
            rows.append(_row(col, str(value), part, cluster_column))
    return pd.DataFrame(rows)


def _row(split: str, group: str, part: pd.DataFrame, cluster_column: str) -> dict[str, object]:
    counted = part[part["counted"].astype(bool)]
    acc, se, lo, hi = accuracy_ci(counted["correct"].astype(bool).tolist(), counted[cluster_column].tolist())
    status = part["status"]
    return {
        "split": split,
        "group": group,
        "n": len(part),
        "scored": len(counted),
        "correct": int(counted["correct"].astype(bool).sum()),
        "accuracy": acc,
        "stderr": se,
        "ci95_low": lo,
        "ci95_high": hi,
        "unanswered": int((status == "unanswered").sum()),
        "no_prediction": int((status == "no_prediction").sum()),
        "invalid_sample": int((status == "invalid_sample").sum()),
    }

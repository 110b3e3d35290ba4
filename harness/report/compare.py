"""Regression gate: a run vs a committed baseline, paired over the same samples, per split.

Why paired: two runs on the same samples differ only where their answers differ, so the exact
McNemar test on the discordant pairs (b = right before/wrong now, c = wrong before/right now)
separates a real drop from noise far better than comparing two accuracies with a threshold.
A split is a regression when its accuracy fell by more than ``tolerance`` points AND McNemar's
exact two-sided p-value is below ``alpha``. The paired bootstrap 95% interval of the difference
is reported beside it so a reader sees the uncertainty.

A sample the baseline scored but the new run failed on (error) counts as wrong in the new run:
a crash is a regression too. Samples the baseline does not have are ignored (and counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from harness.report.load import split_columns


@dataclass
class CompareResult:
    table: pd.DataFrame  # one row per (run, split, value)
    regressions: pd.DataFrame  # the rows that failed the gate
    missing_runs: list[str]  # baseline runs absent from the new results

    @property
    def passed(self) -> bool:
        return self.regressions.empty and not self.missing_runs


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none)."""
    n = b + c
    if n == 0:
        return 1.0
    return float(binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue)


def paired_bootstrap_ci(base: np.ndarray, new: np.ndarray, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of mean(new - base) over samples resampled in pairs (in accuracy points)."""
    if len(base) == 0:
        return (math.nan, math.nan)
    diff = new.astype(float) - base.astype(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    means = diff[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (100 * float(lo), 100 * float(hi))


def _verdicts(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (run, sample): the binary verdict (NaN when not scored) and split labels."""
    out = df.copy()
    scored = out["ok"] & out[metric].notna() & out["counted"].fillna(True).astype(bool)
    out["verdict"] = np.where(scored, out[metric].astype("Float64").fillna(0).astype(float), np.nan)
    return out


def _pair_keys(base: pd.DataFrame, new: pd.DataFrame) -> dict[str, str]:
    """Baseline run id -> new run id: same ids; or, with one run on each side, those two."""
    b_ids, n_ids = list(dict.fromkeys(base["run_id"])), list(dict.fromkeys(new["run_id"]))
    if len(b_ids) == 1 and len(n_ids) == 1:
        return {b_ids[0]: n_ids[0]}
    return {r: r for r in b_ids if r in n_ids}


def compare(base_df: pd.DataFrame, new_df: pd.DataFrame, tolerance: float = 2.0, alpha: float = 0.05,
            metric: str = "correct", n_boot: int = 2000, seed: int = 0) -> CompareResult:
    """Paired comparison per run and split; ``tolerance`` in accuracy points (2.0 = 2 points)."""
    if metric not in base_df.columns:
        raise ValueError(f"metric {metric!r} is not a records column; valid: correct, evidence_hit")
    base, new = _verdicts(base_df, metric), _verdicts(new_df, metric)
    pairs = _pair_keys(base, new)
    missing = [r for r in dict.fromkeys(base["run_id"]) if r not in pairs]
    splits = split_columns(base)
    rows = []
    for b_run, n_run in pairs.items():
        b = base[(base["run_id"] == b_run) & base["verdict"].notna()]
        n = new[new["run_id"] == n_run][["sample_id", "verdict", "ok"]]
        merged = b.merge(n, on="sample_id", how="left", suffixes=("_base", "_new"))
        absent = int(merged["ok_new"].isna().sum())
        merged = merged[merged["ok_new"].notna()]
        # a failure (or unscored answer) in the new run counts as wrong
        merged["verdict_new"] = merged["verdict_new"].fillna(0.0)
        groups = [("overall", "all", merged)]
        for col in splits:
            if col in merged.columns:
                groups += [(col.removeprefix("split_"), str(v), g) for v, g in merged.groupby(col, dropna=True)]
        for split, value, g in groups:
            vb, vn = g["verdict_base"].to_numpy(), g["verdict_new"].to_numpy()
            k = len(g)
            bad = int(((vb == 1) & (vn == 0)).sum())
            good = int(((vb == 0) & (vn == 1)).sum())
            acc_b = 100 * vb.mean() if k else math.nan
            acc_n = 100 * vn.mean() if k else math.nan
            diff = acc_n - acc_b if k else math.nan
            p = mcnemar_exact(bad, good)
            lo, hi = paired_bootstrap_ci(vb, vn, n_boot=n_boot, seed=seed)
            regressed = bool(k and diff < -tolerance and p < alpha)
            rows.append({"run_id": n_run, "baseline_run_id": b_run, "split": split, "value": value, "n": k,
                         "acc_baseline": acc_b, "acc_new": acc_n, "diff_pts": diff, "ci_low_pts": lo,
                         "ci_high_pts": hi, "worse": bad, "better": good, "mcnemar_p": p,
                         "regressed": regressed, "absent_in_new": absent if split == "overall" else 0})
    table = pd.DataFrame(rows)
    regressions = table[table["regressed"]] if not table.empty else table
    return CompareResult(table=table, regressions=regressions, missing_runs=missing)

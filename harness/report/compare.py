"""Regression gate: a run vs a committed baseline, paired over the same samples, per split.

Why paired: two runs on the same samples differ only where their answers differ, so the exact
McNemar test on the discordant pairs (worse = right before/wrong now, better = wrong before/right
now) separates a real drop from noise far better than comparing two accuracies. The decision
rule (one-sided test of "drop > 0", Holm across every judged split, a power check that turns a
too-small comparison into UNDERPOWERED) lives in :mod:`harness.report.gate`; this module builds
the paired tables it judges. The paired bootstrap 95% interval of the difference is reported
beside each test so a reader sees the uncertainty.

A sample the baseline scored but the new run failed on (error) counts as wrong in the new run:
a crash is a regression too. Baseline samples absent from the new run are counted
(``absent_in_new``); :mod:`harness.report.comparable` refuses a run missing too many.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.report import gate
from harness.report.load import split_columns


@dataclass
class CompareResult:
    table: pd.DataFrame  # one row per (run, split, value)
    regressions: pd.DataFrame  # the gated rows that failed (Holm-adjusted p < alpha)
    underpowered: pd.DataFrame  # power-required rows that cannot detect a drop of the tolerance
    missing_runs: list[str]  # baseline runs absent from the new results
    changes: list[str] = field(default_factory=list)  # exact-check differences, one line each

    @property
    def verdict(self) -> str:
        """OK | REGRESSION | UNDERPOWERED (see harness.report.gate.verdict)."""
        failed = self.regressions["regressed"].to_numpy() if not self.regressions.empty else np.array([])
        weak = self.underpowered["underpowered"].to_numpy() if not self.underpowered.empty else np.array([])
        return gate.verdict(failed, weak, missing_runs=bool(self.missing_runs) or bool(self.changes))

    @property
    def passed(self) -> bool:
        return self.verdict == "OK"


def paired_bootstrap_ci(base: np.ndarray, new: np.ndarray, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of mean(new - base) over samples resampled in pairs (in accuracy points)."""
    if len(base) == 0:
        return (math.nan, math.nan)
    diff = new.astype(float) - base.astype(float)
    if not diff.any():
        return (0.0, 0.0)
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


def pair_runs(base: pd.DataFrame, new: pd.DataFrame) -> dict[str, str]:
    """Baseline run id -> new run id: same ids; or, with one run on each side, those two."""
    b_ids, n_ids = list(dict.fromkeys(base["run_id"])), list(dict.fromkeys(new["run_id"]))
    if len(b_ids) == 1 and len(n_ids) == 1:
        return {b_ids[0]: n_ids[0]}
    return {r: r for r in b_ids if r in n_ids}


def _select(columns: list[str], wanted: Sequence[str] | None) -> list[str]:
    """Split columns named by ``wanted`` (None = all; names with or without the ``split_`` prefix)."""
    if wanted is None:
        return columns
    names = {w.removeprefix("split_") for w in wanted}
    unknown = names - {c.removeprefix("split_") for c in columns}
    if unknown:
        valid = ", ".join(c.removeprefix("split_") for c in columns) or "none"
        raise ValueError(f"unknown split(s) {', '.join(sorted(unknown))}; this baseline has: {valid}")
    return [c for c in columns if c.removeprefix("split_") in names]


def compare(base_df: pd.DataFrame, new_df: pd.DataFrame, tolerance: float = 2.0, alpha: float = 0.05,
            metric: str = "correct", n_boot: int = 2000, seed: int = 0, power: float = 0.8,
            gate_splits: Sequence[str] | None = None, require_power: Sequence[str] = ()) -> CompareResult:
    """Paired comparison per run and split, judged by :func:`harness.report.gate.decide`.

    ``tolerance`` (accuracy points) is the drop the comparison must be able to detect with
    probability ``power``; ``gate_splits`` names the split columns whose tests join the Holm
    family (None = all; the others are reported, never gated); ``require_power`` names split
    columns whose every value, like each run's overall test, must reach that power.
    """
    if metric not in base_df.columns:
        raise ValueError(f"metric {metric!r} is not a records column; valid: correct, evidence_hit")
    base, new = _verdicts(base_df, metric), _verdicts(new_df, metric)
    pairs = pair_runs(base, new)
    missing = [r for r in dict.fromkeys(base["run_id"]) if r not in pairs]
    splits = split_columns(base)
    powered = set(_select(splits, list(require_power)))
    gated = set(_select(splits, gate_splits)) | powered  # a split that must be powered is gated too
    rows = []
    for b_run, n_run in pairs.items():
        b = base[(base["run_id"] == b_run) & base["verdict"].notna()]
        n = new[new["run_id"] == n_run][["sample_id", "verdict", "ok"]]
        merged = b.merge(n, on="sample_id", how="left", suffixes=("_base", "_new"))
        absent = int(merged["ok_new"].isna().sum())
        merged = merged[merged["ok_new"].notna()]
        # a failure (or unscored answer) in the new run counts as wrong
        merged["verdict_new"] = merged["verdict_new"].fillna(0.0)
        groups = [("overall", "all", merged, True, True)]
        for col in splits:
            if col in merged.columns:
                groups += [(col.removeprefix("split_"), str(v), g, col in gated, col in powered)
                           for v, g in merged.groupby(col, dropna=True)]
        for split, value, g, is_gated, needs_power in groups:
            vb, vn = g["verdict_base"].to_numpy(), g["verdict_new"].to_numpy()
            k = len(g)
            acc_b = 100 * vb.mean() if k else math.nan
            acc_n = 100 * vn.mean() if k else math.nan
            lo, hi = paired_bootstrap_ci(vb, vn, n_boot=n_boot, seed=seed)
            rows.append({"run_id": n_run, "baseline_run_id": b_run, "split": split, "value": value, "n": k,
                         "acc_baseline": acc_b, "acc_new": acc_n, "diff_pts": acc_n - acc_b if k else math.nan,
                         "ci_low_pts": lo, "ci_high_pts": hi,
                         "worse": int(((vb == 1) & (vn == 0)).sum()), "better": int(((vb == 0) & (vn == 1)).sum()),
                         "gated": is_gated, "power_required": needs_power,
                         "absent_in_new": absent if split == "overall" else 0})
    table = pd.DataFrame(rows)
    if table.empty:
        empty = table.assign(regressed=[], underpowered=[])
        return CompareResult(table=empty, regressions=empty, underpowered=empty, missing_runs=missing)
    family = table["gated"].to_numpy()
    judged = gate.decide(table["worse"][family], table["better"][family], table["n"][family],
                         table["power_required"][family], tolerance, alpha, power)
    level = alpha / max(int(family.sum()), 1)
    table["p"] = [gate.one_sided_p(w, b) for w, b in zip(table["worse"], table["better"])]
    table["p_holm"] = math.nan
    table.loc[family, "p_holm"] = judged["p_holm"]
    table["regressed"] = False
    table.loc[family, "regressed"] = judged["regressed"]
    table["mde_pts"] = [gate.min_detectable_drop(int(k), int(w), int(b), level, power)
                        for k, w, b in zip(table["n"], table["worse"], table["better"])]
    table["underpowered"] = False
    table.loc[family, "underpowered"] = judged["underpowered"]
    table["regressed"] = table["regressed"].astype(bool)
    table["underpowered"] = table["underpowered"].astype(bool)
    return CompareResult(table=table, regressions=table[table["regressed"]],
                         underpowered=table[table["underpowered"]], missing_runs=missing)


# Per-sample fields the exact check requires unchanged: what the model said and what reached it.
# ``sel_masks`` (the kept tokens / gazes on a few frames) is compared where the baseline has it
# (records made before masks were recorded lack it).
EXACT_FIELDS = ("ok", "output", "tok_visual_after", "sel_kept", "sel_kept_per_group", "sel_masks")
OPTIONAL_FIELDS = frozenset({"sel_masks"})


def _comparable_value(value: object) -> object:
    """Dicts/lists as canonical JSON so pandas compares them as values; NaN/None as None."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _short(value: object, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def exact_changes(base_df: pd.DataFrame, new_df: pd.DataFrame, pairs: dict[str, str],
                  fields: Sequence[str] = EXACT_FIELDS, limit: int = 20) -> list[str]:
    """One line per (run, sample, field) whose value changed; at most ``limit`` lines plus a count.

    Why: a deterministic pipeline (the CI subset: tiny seeded model, seeded pruners, CPU) gives
    the same outputs and kept tokens on every rerun, so any change is a change of code and far
    more sensitive than an accuracy test on a few samples.
    """
    lines: list[str] = []
    total = 0
    for b_run, n_run in pairs.items():
        cols = ["sample_id", *[f for f in fields if f in base_df.columns and f in new_df.columns]]
        b = base_df[base_df["run_id"] == b_run][cols]
        n = new_df[new_df["run_id"] == n_run][cols]
        merged = b.merge(n, on="sample_id", how="inner", suffixes=("_base", "_new"))
        for f in cols[1:]:
            before = merged[f"{f}_base"].map(_comparable_value)
            after = merged[f"{f}_new"].map(_comparable_value)
            changed = [i for i, (x, y) in enumerate(zip(before, after))
                       if x != y and not (f in OPTIONAL_FIELDS and x is None)]
            for i in changed:
                total += 1
                if len(lines) < limit:
                    lines.append(f"run {n_run} sample {merged['sample_id'].iloc[i]}: {f} "
                                 f"{_short(before.iloc[i])} -> {_short(after.iloc[i])}")
    if total > len(lines):
        lines.append(f"... and {total - len(lines)} more changed values")
    return lines

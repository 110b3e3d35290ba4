"""Comparison tables from the flat records frame: accuracy, tokens, latency, speed-up vs unpruned.

Conventions (stated in every report's header, because readers compare numbers across papers):
- accuracy is over samples that completed without error and that the extraction convention
  counts (``counted``); failed samples are listed as ``errors``, never silently scored;
- the 95% interval of an accuracy is Wilson's score interval for a proportion (columns
  ``wilson95_low``/``wilson95_high``); that of a mean over samples (evidence recall) is Student's t
  interval (``*_t95_low``/``*_t95_high``). Every interval column names its method, because the
  report also shows the benchmark scorer's video-clustered interval for the same accuracy;
- token reduction is ``1 - mean(visual_after) / mean(visual_before)``; speed-up is the unpruned
  (``none``) run's mean latency over this run's, for the same model and benchmark;
- ``autogaze_gazes`` is AutoGaze's own mean gaze count (all scales) of an AutoGaze run, beside
  ``visual_tokens`` (what the LLM got): equal (+ fixed tokens) for the ``native`` route, larger
  than the gazes' share under ``expand``; ``route`` says which mapping made the tokens.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.report.load import STAGES, split_columns

RUN_KEYS = ["model", "benchmark", "pruner", "pruner_label"]


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (good at small n and at 0% / 100%)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _scored(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that count towards accuracy: no error, a verdict, and counted by the convention."""
    mask = df["ok"] & df["correct"].notna() & df["counted"].fillna(True).astype(bool)
    return df[mask]


def _accuracy(group: pd.DataFrame) -> dict[str, float]:
    scored = _scored(group)
    n = len(scored)
    k = int(scored["correct"].astype(bool).sum()) if n else 0
    lo, hi = wilson_interval(k, n)
    return {"n_scored": n, "accuracy": 100 * k / n if n else math.nan,
            "wilson95_low": 100 * lo if n else math.nan, "wilson95_high": 100 * hi if n else math.nan}


def t_interval(values: pd.Series | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student's t interval of a mean over samples (NaN below 2 values; zero width when all agree)."""
    from scipy.stats import t

    x = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(dtype=float)
    if len(x) < 2:
        return (math.nan, math.nan)
    half = float(t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return (float(x.mean()) - half, float(x.mean()) + half)


def _mean(series: pd.Series) -> float:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: accuracy (+CI), tokens, reduction, latency per stage, speed-up, memory, evidence."""
    rows = []
    for keys, group in df.groupby(RUN_KEYS, sort=False, dropna=False):
        ok = group[group["ok"]]
        row = dict(zip(RUN_KEYS, keys))
        row["run_id"] = group["run_id"].iloc[0]
        row["n"] = len(group)
        row["errors"] = int((~group["ok"]).sum())
        row.update(_accuracy(group))
        before, after = _mean(ok["tok_visual_before"]), _mean(ok["tok_visual_after"])
        if math.isnan(after):  # pruner-only runs: the selection's counts
            before, after = _mean(ok["sel_total"]), _mean(ok["sel_kept"])
        row["visual_tokens_before"] = before
        row["visual_tokens"] = after
        # in-LLM pruning: what the layers saw on average (the others: every layer sees visual_tokens)
        avg = pd.to_numeric(ok.get("tok_visual_avg_layers", pd.Series(dtype=float)), errors="coerce")
        row["visual_tokens_avg_layers"] = float(avg.mean()) if avg.notna().any() else math.nan
        # AutoGaze's own gaze count beside what the LLM got: a mapping's inflation shows here
        row["autogaze_gazes"] = _mean(ok["tok_gazes"]) if "tok_gazes" in ok else math.nan
        routes = ok["route"].dropna().unique().tolist() if "route" in ok else []
        row["route"] = "+".join(map(str, routes)) if routes else None
        row["token_reduction_pct"] = 100 * (1 - after / before) if before and not math.isnan(before) else math.nan
        for stage in STAGES:
            row[f"lat_{stage}_s"] = _mean(ok[f"lat_{stage}"])
        row["lat_total_s"] = _mean(ok["lat_total"])
        row["latency_batched"] = int(pd.to_numeric(ok["latency_batched"], errors="coerce").max()) \
            if "latency_batched" in ok and ok["latency_batched"].notna().any() else 1
        row["peak_memory_mb"] = float(pd.to_numeric(ok["peak_memory_mb"], errors="coerce").max()) \
            if ok["peak_memory_mb"].notna().any() else math.nan
        row["evidence_recall"] = _mean(ok["evidence_recall"])
        lo, hi = t_interval(ok["evidence_recall"])
        # recall lies in [0, 1]; clip keeps NaN (fewer than 2 samples) as NaN
        row["evidence_recall_t95_low"], row["evidence_recall_t95_high"] = np.clip([lo, hi], 0.0, 1.0)
        row["evidence_hit"] = _mean(ok["evidence_hit"].astype("Float64")) if ok["evidence_hit"].notna().any() \
            else math.nan
        row.update(_evidence_budget(ok))
        row["tiny_model"] = bool(group["tiny_model"].any())
        rows.append(row)
    table = pd.DataFrame(rows)
    return _add_speedups(order_runs(table))


def _evidence_budget(ok: pd.DataFrame) -> dict[str, float]:
    """Pooled skill over findable samples, mean kept share, and how many samples nothing could find.

    ``evidence_skill`` = sum(recall - chance) / sum(1 - chance) over findable samples: 0 for
    random masks in expectation, 1 when every needle was kept, 0 for keep-everything. Pooled
    rather than a mean of per-sample skills, which explode when a sample's chance is near 1 (a
    large budget on a needle spread over many frame groups). Samples no pruner could find (missed
    by the sampled frames, illegible at the model's resolution) are counted in
    ``evidence_unfindable``, not dropped silently (their recall, 0, is in ``evidence_recall``).
    """
    if "evidence_skill" not in ok:
        return {}
    findable = ok["evidence_findable"].astype("boolean").fillna(False).astype(bool)
    scored = ok[findable]
    recall = pd.to_numeric(scored["evidence_recall"], errors="coerce")
    chance = pd.to_numeric(scored["evidence_chance"], errors="coerce")
    both = recall.notna() & chance.notna()
    room = float((1.0 - chance[both]).sum())
    skill = math.nan if not both.any() else (float((recall[both] - chance[both]).sum()) / room if room > 1e-12
                                              else 0.0)
    known = ok["evidence_findable"].notna()
    return {"evidence_skill": skill,
            "evidence_kept_share": _mean(ok["evidence_kept_share"]),
            "evidence_unfindable": int((~findable[known]).sum()) if known.any() else math.nan}


def order_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Reading order: per model and benchmark, the unpruned run, then AutoGaze, then baselines."""
    rank = table["pruner"].map({"none": 0, "autogaze": 1}).fillna(2)
    return (table.assign(_rank=rank).sort_values(["model", "benchmark", "_rank", "pruner_label"], kind="stable")
            .drop(columns="_rank").reset_index(drop=True))


def _add_speedups(table: pd.DataFrame) -> pd.DataFrame:
    """Speed-up vs the unpruned run of the same model and benchmark (NaN when there is none)."""
    table["speedup_total"] = math.nan
    table["speedup_prefill"] = math.nan
    for (_model, _bench), idx in table.groupby(["model", "benchmark"], dropna=False).groups.items():
        sub = table.loc[idx]
        base = sub[sub["pruner"] == "none"]
        if base.empty:
            continue
        ref = base.iloc[0]
        for col, src in [("speedup_total", "lat_total_s"), ("speedup_prefill", "lat_prefill_s")]:
            with np.errstate(divide="ignore", invalid="ignore"):
                table.loc[idx, col] = ref[src] / table.loc[idx, src]
    return table


def split_table(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per run and benchmark split (``overall`` first, then each split key's values)."""
    rows = []
    for keys, group in df.groupby(RUN_KEYS, sort=False, dropna=False):
        base = dict(zip(RUN_KEYS, keys))
        rows.append({**base, "split": "overall", "value": "all", **_accuracy(group)})
        for col in split_columns(df):
            for value, sub in group.groupby(col, sort=True, dropna=True):
                rows.append({**base, "split": col.removeprefix("split_"), "value": str(value), **_accuracy(sub)})
    return pd.DataFrame(rows)


def split_pivot(splits: pd.DataFrame) -> pd.DataFrame:
    """Runs as rows, ``split=value`` as columns, accuracy (%) as cells: the per-split comparison view."""
    if splits.empty:
        return splits
    view = splits.assign(column=np.where(splits["split"] == "overall", "overall",
                                         splits["split"] + "=" + splits["value"]))
    pivot = view.pivot_table(index=RUN_KEYS, columns="column", values="accuracy", aggfunc="first", sort=False)
    if "overall" not in pivot.columns:  # pruner-only runs (generation disabled): no accuracy anywhere
        return view[RUN_KEYS].drop_duplicates().assign(overall=math.nan).reset_index(drop=True)
    cols = ["overall"] + [c for c in pivot.columns if c != "overall"]
    out = pivot[cols].reset_index()
    out.columns.name = None  # else to_html prints the pivot's axis name as a stray blank column
    return out


def latency_table(summary: pd.DataFrame) -> pd.DataFrame:
    cols = RUN_KEYS + [f"lat_{s}_s" for s in STAGES] + ["lat_total_s", "speedup_total", "speedup_prefill"]
    return summary[cols].copy()


def errors_table(df: pd.DataFrame) -> pd.DataFrame:
    failed = df[~df["ok"]]
    return failed[["run_id", "sample_id", "error"]].reset_index(drop=True)


def to_markdown(table: pd.DataFrame, floatfmt: str = "{:.2f}") -> str:
    """A GitHub-markdown table (no extra dependency); NaN shows as an empty cell."""
    if table.empty:
        return "_(no rows)_\n"

    def cell(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return ""
        if isinstance(v, float | np.floating):
            return floatfmt.format(float(v))
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    sep = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, sep, *body]) + "\n"

"""Report sections that need the benchmark package: accuracy under every extraction convention,
and the published figures a benchmark carries (e.g. HLVid's), printed beside ours.

Why re-extract here: the three published conventions give different numbers on the same outputs
("Answer: C." is A under one, C under another); showing them side by side tells a reader how
much of a difference between two papers is extraction. Only the raw ``output`` is needed, so
the data set itself is not.
"""

from __future__ import annotations

import pandas as pd

from harness.report.tables import RUN_KEYS


def _benchmark_class(name: str):
    try:
        from benchmarks.registry import get_benchmark_class
    except ImportError:
        return None
    try:
        return get_benchmark_class(str(name))
    except (KeyError, ImportError):
        return None


def extraction_table(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (%) per run under each convention, re-extracted from the raw outputs."""
    try:
        from benchmarks.extraction import CONVENTIONS, counts_unanswered, extract
    except ImportError:
        return pd.DataFrame()
    ok = df[df["ok"] & df["output"].notna()]
    if ok.empty:
        return pd.DataFrame()
    rows = []
    for keys, group in ok.groupby(RUN_KEYS, sort=False, dropna=False):
        cls = _benchmark_class(keys[1])
        fixed = getattr(cls, "fixed_choices", ("A", "B", "C", "D")) if cls is not None else ("A", "B", "C", "D")
        row = dict(zip(RUN_KEYS, keys))
        for conv in CONVENTIONS:
            n = k = 0
            for out, ans, counted in zip(group["output"], group["answer"], group["counted"]):
                if counted is False:  # an invalid sample stays out under every convention
                    continue
                letter = extract(str(out), conv, fixed)
                if letter is None and not counts_unanswered(conv):
                    continue
                n += 1
                k += int(letter is not None and letter == ans)
            row[conv] = 100 * k / n if n else float("nan")
            row[f"{conv} n"] = n
        rows.append(row)
    return pd.DataFrame(rows)


def published_table(df: pd.DataFrame) -> pd.DataFrame:
    """Published accuracies of the benchmarks in ``df`` (for reference, not computed here)."""
    rows = []
    for name in dict.fromkeys(df["benchmark"].dropna()):
        cls = _benchmark_class(name)
        for model, acc in (getattr(cls, "published", None) or {}).items():
            rows.append({"benchmark": name, "model": model, "published_accuracy": acc})
    return pd.DataFrame(rows)


def provenance_table(df: pd.DataFrame) -> pd.DataFrame:
    """Where the numbers came from: per experiment directory, git commit, key versions, hardware."""
    import json
    from pathlib import Path

    rows = []
    seen: set[Path] = set()
    for run_dir in dict.fromkeys(df["run_dir"]):
        for parent in list(Path(run_dir).parents)[:3]:
            metas = sorted(parent.glob("run_meta*.json"))
            if metas:
                break
        else:
            continue
        if parent in seen:
            continue
        seen.add(parent)
        meta = json.loads(metas[0].read_text())
        hw = meta.get("hardware") or {}
        versions = meta.get("versions") or {}
        gpus = ", ".join(g.get("name", "?") for g in hw.get("gpus") or []) or f"CPU x{hw.get('cpu_count')}"
        rows.append({
            "experiment": str(parent),
            "created": meta.get("created"),
            "git_commit": ((meta.get("git") or {}).get("commit") or "")[:12],
            "dirty": (meta.get("git") or {}).get("dirty"),
            "torch": versions.get("torch"),
            "transformers": versions.get("transformers"),
            "hardware": gpus,
            "ranks": meta.get("world_size", 1),
        })
    return pd.DataFrame(rows)


def scorer_table(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy the way the benchmark's published scorer counts it (benchmarks.stats.accuracy_table).

    Differences from the summary: a failed sample counts as wrong (a scorer sees no prediction
    for it), and the 95% interval is clustered by video (lmms-eval's stderr). Empty when the
    benchmarks package is absent or no run has answers.
    """
    try:
        from benchmarks.stats import accuracy_table
    except ImportError:
        return pd.DataFrame()
    from harness.report.load import split_columns

    tables = []
    for keys, group in df.groupby(RUN_KEYS, sort=False, dropna=False):
        if not group["correct"].notna().any():
            continue
        splits = [c for c in split_columns(group) if group[c].notna().any()]
        status = pd.Series("ok", index=group.index)
        status[~group["ok"]] = "no_prediction"
        status[group["ok"] & group["extracted"].isna()] = "unanswered"
        status[group["ok"] & ~group["counted"].fillna(True).astype(bool) & group["extracted"].notna()] = \
            "invalid_sample"
        scores = pd.DataFrame({
            "sample_id": group["sample_id"],
            "correct": group["correct"].fillna(False).astype(bool),
            "counted": (~group["ok"]) | group["counted"].fillna(True).astype(bool),
            "status": status,
            "cluster": group["video"].fillna(group["sample_id"]),
            **{c.removeprefix("split_"): group[c] for c in splits},
        })
        table = accuracy_table(scores, [c.removeprefix("split_") for c in splits], "cluster")
        # the summary shows a Wilson interval for a neighbouring number: name this one's method
        table = table.rename(columns={"stderr": "clustered_se", "ci95_low": "clustered95_low",
                                      "ci95_high": "clustered95_high"})
        for i, (k, v) in enumerate(zip(RUN_KEYS, keys)):
            table.insert(i, k, v)
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()

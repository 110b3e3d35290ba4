"""Report sections that need the benchmark package: accuracy under every extraction convention,
and the published figures a benchmark carries (e.g. HLVid's), printed beside ours.

Why re-extract here: the three published conventions give different numbers on the same outputs
("Answer: C." is A under one, C under another); showing them side by side tells a reader how
much of a difference between two papers is extraction. Only the raw ``output``, the options and
the run's benchmark settings are needed, so the data set itself is not; the scoring itself is
``benchmarks.scoring.score_answer``, the one ``eval`` and ``score`` use.
"""

from __future__ import annotations

from typing import Any

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


def _run_rules(run_dir: str, benchmark: str) -> Any:
    """The answer rules a run extracted with (``benchmarks.scoring.answer_rules``) from its run.json's
    benchmark settings (``reasoning_tags`` ...); None when the benchmark is unknown."""
    import json
    from pathlib import Path

    try:
        from benchmarks.scoring import answer_rules
    except ImportError:
        return None
    try:
        spec = json.loads((Path(run_dir) / "run.json").read_text()).get("benchmark") or {}
    except (OSError, ValueError):
        spec = {}
    return answer_rules(spec.get("name") or benchmark, spec.get("kwargs") or {})


def rescore(df: pd.DataFrame, convention: str) -> pd.DataFrame:
    """Every successful row scored again under ``convention`` by the shared scorer
    (``benchmarks.scoring.score_answer``, what ``eval`` and ``score`` use), with each run's own answer
    rules (letters, reasoning tags). Columns: pred, status, counted, correct; rows of a benchmark the
    package does not know are left out (its letters cannot be guessed).
    """
    import json

    from benchmarks import scoring

    rows = []
    ok = df[df["ok"] & df["output"].notna()]
    for (run_dir, bench), group in ok.groupby(["run_dir", "benchmark"], sort=False, dropna=False):
        rules = _run_rules(run_dir, bench)
        if rules is None:
            continue
        for idx, row in group.iterrows():
            options = json.loads(row["options"]) if isinstance(row.get("options"), str) else None
            reason = row.get("invalid_reason")
            score = scoring.score_answer(str(row["output"]), row["answer"],
                                         lambda text, o=options, r=rules: r.extract(text, o, convention), convention,
                                         reason if isinstance(reason, str) else None)
            rows.append({"index": idx, "pred": score.pred, "status": score.status, "counted": score.counted,
                         "correct": score.correct})
    if not rows:
        return pd.DataFrame(columns=["pred", "status", "counted", "correct"])
    return pd.DataFrame(rows).set_index("index")


def extraction_table(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (%) per run under each convention, re-scored from the raw outputs by the shared scorer."""
    try:
        from benchmarks.extraction import CONVENTIONS
    except ImportError:
        return pd.DataFrame()
    if df.empty or not (df["ok"] & df["output"].notna()).any():
        return pd.DataFrame()
    scored = {conv: rescore(df, conv) for conv in CONVENTIONS}
    if all(t.empty for t in scored.values()):
        return pd.DataFrame()
    rows = []
    for keys, group in df.groupby(RUN_KEYS, sort=False, dropna=False):
        row = dict(zip(RUN_KEYS, keys))
        for conv in CONVENTIONS:
            part = scored[conv].reindex(scored[conv].index.intersection(group.index))
            counted = part[part["counted"].astype(bool)]
            n, k = len(counted), int(counted["correct"].astype(bool).sum())
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
        # the shared scorer's status, as recorded (version-1 records: derived when loaded)
        status = group["status"].where(group["ok"] & group["status"].notna(), None)
        status = status.fillna("no_prediction")
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

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

"""Run directories -> one flat pandas DataFrame (one row per run x sample), shards merged.

Why flat columns (``tok_visual_after``, ``lat_prefill``, ``split_duration``): every table, plot
and the regression compare are then plain pandas group-bys, and users can load the same frame
(``load_records(["runs/demo"])``) for their own analysis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness.runner.records import RUN_FILE, latest_records
from harness.runner.schema import SampleRecord
from harness.stages import CACHED_GAZE, STAGES, TOTAL

OBJECT_COLUMNS = ("sel_masks",)  # nested values: in the frame for the report, not in records.csv
TOKEN_KEYS = ("visual_before", "visual_after", "prompt", "generated", "gazes")
__all__ = ["STAGES", "ReportError", "find_run_dirs", "load_records", "split_columns"]


class ReportError(ValueError):
    """No usable runs/records under the given paths; the message names them."""


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run directories (those holding run.json) at or under each path, in a stable order."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ReportError(f"{p}: no such run directory")
        if (p / RUN_FILE).is_file():
            found.append(p)
        else:
            found.extend(sorted(q.parent for q in p.rglob(RUN_FILE)))
    unique = list(dict.fromkeys(d.resolve() for d in found))
    if not unique:
        raise ReportError(f"no run directories (with {RUN_FILE}) under: {', '.join(map(str, paths))}")
    return unique


def _flatten(rec: SampleRecord, run: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """One typed record -> one flat row (the columns every table, plot and compare reads)."""
    budget = rec.budget
    error = rec.error
    row: dict[str, Any] = {
        "run_id": rec.run_id or run.get("run_id"),
        "run_dir": str(run_dir),
        "experiment": run.get("experiment"),
        "model": rec.model,
        "tiny_model": bool(rec.tiny_model),
        "benchmark": rec.benchmark,
        "pruner": rec.pruner,
        "pruner_label": rec.pruner_label,
        "budget_kind": budget.kind if budget else None,
        "budget_match": budget.match if budget else None,
        "sample_id": str(rec.sample_id),
        "video": rec.video,
        "question": rec.question,
        # a JSON list in one cell: options may hold any separator character
        "options": None if rec.options is None else json.dumps(list(rec.options), ensure_ascii=False),
        "answer": rec.answer,
        "extracted": rec.extracted,
        "correct": rec.correct,
        "counted": rec.counted,
        "status": rec.status,
        "invalid_reason": rec.invalid_reason,
        "extraction": rec.extraction,
        "prompt": rec.prompt,
        "output": rec.output,
        "ok": rec.ok,
        "error": None if error is None else f"{error.stage}: {error.type}: {error.message}",
        "peak_memory_mb": rec.peak_memory_mb,
        "rank": rec.rank,
    }
    for key, value in rec.pruner_params.items():
        if isinstance(value, int | float | str | bool) or value is None:
            row[f"param_{key}"] = value
    tokens = rec.tokens.model_dump() if rec.tokens is not None else {}
    for key in TOKEN_KEYS:
        row[f"tok_{key}"] = tokens.get(key)
    sel = rec.selection
    row["sel_kept"], row["sel_total"] = (sel.kept, sel.total) if sel else (None, None)
    # per frame group: what the exact regression check compares (a random pruner keeps as many, elsewhere)
    row["sel_kept_per_group"] = None if sel is None or sel.kept_per_group is None else json.dumps(sel.kept_per_group)
    row["sel_masks"] = sel.masks if sel else None  # a dict (harness.runner.masks); left out of records.csv
    frames = rec.frames or {}
    row["frames_height"], row["frames_width"] = frames.get("height"), frames.get("width")
    if row["tok_gazes"] is None and sel is not None:  # pruner-only runs and records older than the field
        row["tok_gazes"] = sel.info.get("gazed_total")
    row["route"] = _route(rec, run)
    latency = rec.latency
    for stage in STAGES:
        row[f"lat_{stage}"] = latency.get(stage)
    row["lat_total"] = latency.get(TOTAL)
    # a gaze read from the gaze cache: its time is not a gaze time (lat_gaze stays empty)
    row["lat_gaze_cached"] = latency.get(CACHED_GAZE)
    row["gaze_cache"] = rec.gaze_cache
    row["frames_shared"] = rec.frames_shared
    # batched generation (vLLM): >1 means the LLM stages are that call's time shared out, not per request
    row["latency_batched"] = rec.latency_batched or 1
    # in-LLM pruning (FastV): visual tokens per LLM layer, averaged over the layers
    row["tok_visual_avg_layers"] = ((rec.generation_extra or {}).get("llm_pruning") or {}).get("avg_visual_tokens")
    ev = rec.evidence or {}
    row["evidence_recall"] = ev.get("recall")
    row["evidence_hit"] = ev.get("hit")
    # budget-aware evidence scores (synthetic needle; benchmarks/evidence.py), absent for other benchmarks
    row["evidence_skill"] = ev.get("skill")
    row["evidence_kept_share"] = ev.get("kept_share")
    row["evidence_chance"] = ev.get("chance")
    row["evidence_findable"] = ev.get("findable")
    for key, value in rec.splits.items():
        row[f"split_{key}"] = value
    return row


def _route(rec: SampleRecord, run: dict[str, Any]) -> str | None:
    """How an AutoGaze run's gazes became LLM tokens: ``native`` or ``STAGE/POLICY`` (e.g.
    ``post_vit/expand``); for other pruners just the prune stage."""
    stage = (rec.generation_extra or {}).get("prune_stage") or (run.get("model") or {}).get("prune_stage")
    if stage == "native":
        return "native"
    policy = rec.pruner_params.get("policy") if rec.pruner == "autogaze" else None
    return f"{stage}/{policy}" if policy and stage else (policy or stage)


def load_records(paths: list[str | Path], include_failed: bool = True) -> pd.DataFrame:
    """All runs under ``paths``: the latest record per (run, sample), every shard file merged."""
    rows: list[dict[str, Any]] = []
    for run_dir in find_run_dirs(paths):
        run = json.loads((run_dir / RUN_FILE).read_text())
        for rec in latest_records(run_dir).values():
            rows.append(_flatten(rec, run, run_dir))
    if not rows:
        raise ReportError(f"no records yet in the runs under: {', '.join(map(str, paths))}")
    df = pd.DataFrame(rows)
    # one run id may appear under two given paths (e.g. a dir and its parent): keep it once
    df = df.drop_duplicates(subset=["run_id", "sample_id"], keep="last").reset_index(drop=True)
    if not include_failed:
        df = df[df.ok].reset_index(drop=True)
    for col in ["correct", "evidence_hit"]:
        df[col] = df[col].astype("boolean")
    return df


def split_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("split_")]

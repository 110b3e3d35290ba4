"""Is a new run comparable with its baseline at all? Settings and sample coverage, checked first.

Why: a paired test says nothing when the two runs answered different questions, under a
different extraction convention, from different frames, or with another pruner setting; the
gate would report noise (or a fake regression) as a verdict. Each run directory's ``run.json``
records what decides its numbers (written by the runner); this module lists every key whose
value differs between a baseline run and its counterpart, plus the record-level extraction
convention, and the share of baseline samples the new run never produced. ``--allow-mismatch``
names keys (or prefixes such as ``pruner.params``) a user compares across on purpose.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from harness.runner.records import RUN_FILE

# Keys that name a run or tune throughput, never its numbers (same list as the runner's resume check,
# except ``benchmark.limit``: a different limit is a different sample set here).
IGNORED_KEYS = frozenset({
    "run_id", "experiment", "notice", "model.name", "model.label", "model.device", "pruner.label",
    "pruner.grid_values", "frames.chunk_size", "frames.max_decoded_gb", "generation.batch_size",
})


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _defaults() -> dict[str, Any]:
    """Config schema defaults, so a key added after the baseline was made, at its default, is no change."""
    from harness.runner.config import BenchmarkConfig, FramesConfig, GenerationConfig, ModelConfig

    out: dict[str, Any] = {}
    for section, cls in (("model", ModelConfig), ("benchmark", BenchmarkConfig), ("frames", FramesConfig),
                         ("generation", GenerationConfig)):
        fields = cls().model_dump() if hasattr(cls, "model_dump") else dataclasses.asdict(cls())
        out.update(_flatten(json.loads(json.dumps(fields, default=str)), section))
    return out


def _allowed(key: str, allow: Iterable[str]) -> bool:
    return any(key == a or key.startswith(a + ".") for a in allow)


def run_settings(run_dir: str | Path) -> dict[str, Any]:
    """The flattened ``run.json`` of a run directory (empty when it has none)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return {}
    return _flatten(json.loads(json.dumps(json.loads(path.read_text()), default=str)))


def _show(value: Any, missing: object) -> str:
    return "(absent)" if value is missing else repr(value)


def setting_differences(base: dict[str, Any], new: dict[str, Any], allow: Iterable[str] = ()) -> list[str]:
    """``key: baseline X, new Y`` for each differing key not ignored or allowed."""
    allow = list(allow)
    defaults = _defaults()
    missing = object()
    out = []
    for key in sorted(set(base) | set(new)):
        if key in IGNORED_KEYS or _allowed(key, allow):
            continue
        b, n = base.get(key, missing), new.get(key, missing)
        if b is missing and key in defaults and n == defaults[key]:
            continue
        if n is missing and key in defaults and b == defaults[key]:
            continue
        if b != n:
            out.append(f"{key}: baseline {_show(b, missing)}, new {_show(n, missing)}")
    return out


def comparability_problems(base_df: pd.DataFrame, new_df: pd.DataFrame, pairs: dict[str, str],
                           allow: Iterable[str] = (), max_absent: float = 0.0) -> list[str]:
    """One line per reason the paired runs cannot be compared (empty list: comparable).

    ``max_absent`` is the largest share of a baseline run's samples the new run may lack.
    """
    allow = list(allow)
    problems = []
    for b_run, n_run in pairs.items():
        b, n = base_df[base_df["run_id"] == b_run], new_df[new_df["run_id"] == n_run]
        where = f"run {n_run}" if b_run == n_run else f"run {n_run} (baseline {b_run})"
        diffs = setting_differences(run_settings(b["run_dir"].iloc[0]), run_settings(n["run_dir"].iloc[0]), allow)
        if not _allowed("records.extraction", allow):
            b_conv = sorted({str(x) for x in b["extraction"].dropna()})
            n_conv = sorted({str(x) for x in n["extraction"].dropna()})
            if b_conv != n_conv:
                diffs.append(f"records.extraction: baseline {b_conv}, new {n_conv}")
        problems += [f"{where}: {d}" for d in diffs]
        absent = sorted(set(b["sample_id"]) - set(n["sample_id"]))
        if absent and len(absent) > max_absent * len(set(b["sample_id"])):
            shown = ", ".join(absent[:5]) + (" ..." if len(absent) > 5 else "")
            problems.append(f"{where}: {len(absent)} of {b['sample_id'].nunique()} baseline samples absent "
                            f"({shown}); more than --max-absent {max_absent:g}")
    return problems

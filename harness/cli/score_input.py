"""What ``score`` was given: the predictions, the benchmark they belong to, and its sample set.

Why here: the right sample set and convention depend on the input. A run directory of ours
says (``run.json``) with which benchmark settings and sample limit it ran, so its records are
scored on exactly those samples, not on the benchmark's defaults; any other file is scored
against the benchmark as named on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.base import Benchmark, Sample
from benchmarks.predictions import PredictionLog, read_prediction_log


class ScoreInputError(ValueError):
    """The input cannot be scored as asked (e.g. a run of another benchmark)."""


@dataclass
class ScoreInput:
    path: Path
    log: PredictionLog
    benchmark: Benchmark
    samples: list[Sample]  # the sample set the predictions are scored against
    sample_set: str  # where that set came from, printed


def _run_dir(path: Path) -> Path | None:
    """The run directory when ``path`` is one of ours (or a records file inside one)."""
    from harness.runner.records import RUN_FILE

    if path.is_dir() and (path / RUN_FILE).is_file():
        return path
    if path.is_file() and path.name.startswith("records") and (path.parent / RUN_FILE).is_file():
        return path.parent
    return None


def read_input(path: Path, benchmark: str, data_dir: str | None, strip_reasoning: bool) -> ScoreInput:
    import json

    from benchmarks.registry import canonical_name, get_benchmark
    from harness.runner.records import RUN_FILE, latest_records

    kwargs: dict[str, Any] = {}
    if strip_reasoning:
        kwargs["reasoning_tags"] = True
    run_dir = _run_dir(path)
    if run_dir is None:
        if path.is_dir():
            raise ScoreInputError(f"{path}: a directory without {RUN_FILE}; pass a predictions file or a run directory")
        if data_dir and benchmark != "synthetic_needle":
            kwargs["data_dir"] = data_dir
        bench = get_benchmark(benchmark, **kwargs)  # data problems first: they are the likelier mistake
        log = read_prediction_log(path)
        samples = list(bench.samples())
        return ScoreInput(path, log, bench, samples, f"the benchmark's full set ({len(samples)} questions)")
    run = json.loads((run_dir / RUN_FILE).read_text())
    spec = run.get("benchmark") or {}
    name = spec.get("name")
    if name and canonical_name(name) != canonical_name(benchmark):
        raise ScoreInputError(f"{run_dir / RUN_FILE}: the run is of benchmark {name!r}, not {benchmark!r}")
    run_kwargs = dict(spec.get("kwargs") or {})
    if data_dir and benchmark != "synthetic_needle":
        run_kwargs["data_dir"] = data_dir
    bench = get_benchmark(benchmark, **{**run_kwargs, **kwargs})
    limit = spec.get("limit")
    samples = list(bench.samples(limit))
    records = latest_records(run_dir).values()  # typed (harness.runner.schema), older versions migrated
    log = PredictionLog(
        pairs=[(r.sample_id, r.output if r.ok else None) for r in records],
        extractions={r.extraction for r in records if r.extraction is not None},
    )
    shown = ", ".join(f"{k}={v}" for k, v in run_kwargs.items()) or "defaults"
    where = f"the run's ({run_dir / RUN_FILE}: {benchmark} {shown}; limit {limit}; {len(samples)} questions)"
    return ScoreInput(path, log, bench, samples, where)

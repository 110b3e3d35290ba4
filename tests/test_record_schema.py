"""The typed record (harness/runner/schema.py): declared fields only, versioned, old records migrated."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from harness.report.load import load_records
from harness.runner.records import RecordWriter, latest_records, read_typed_records, record_files
from harness.runner.schema import SCHEMA_VERSION, RecordError, SampleRecord, migrate, parse_record
from harness.stages import STAGES

BASELINE = Path(__file__).resolve().parents[1] / "results" / "ci_regression"


def test_the_committed_version_1_baseline_loads_through_the_migration():
    run_dirs = sorted(p.parent for p in BASELINE.rglob("run.json"))
    assert run_dirs, "results/ci_regression has no runs"
    for run_dir in run_dirs:
        raw = [json.loads(line) for f in record_files(run_dir) for line in f.read_text().splitlines()]
        typed = read_typed_records(run_dir)
        assert len(typed) == len(raw) > 0
        for old, new in zip(raw, typed, strict=True):
            assert old.get("schema", 1) == 1 and new.schema_version == SCHEMA_VERSION
            # every field of the old line survives under the same name (the version key aside)
            dumped = new.model_dump(exclude_unset=True)
            for key, value in old.items():
                if key != "schema":
                    assert json.loads(json.dumps(dumped[key])) == value, key
            want = None if old["output"] is None else ("unanswered" if old["extracted"] is None else "ok")
            assert new.status == want
    df = load_records([BASELINE])
    assert len(df) == sum(len(read_typed_records(d)) for d in run_dirs) and df["ok"].all()


def test_no_field_outside_the_schema(tmp_path):
    rec = SampleRecord(sample_id="s0")
    with pytest.raises(ValidationError):
        rec.comment = "set on the side"  # an undeclared field cannot be set on a record
    with pytest.raises(ValidationError):
        rec.latency = {"gazing": 1.0}  # nor an unknown latency stage
    with RecordWriter(tmp_path / "records.jsonl") as w, pytest.raises(RecordError, match="comment"):
        w.write({"sample_id": "s0", "comment": "x"})  # a dict is validated before it is written
    rec.latency["gazing"] = 1.0  # a nested edit slips past assignment checks ...
    with RecordWriter(tmp_path / "records.jsonl") as w, pytest.raises(ValidationError, match="gazing"):
        w.write(rec)  # ... and is caught when written
    assert not (tmp_path / "records.jsonl").exists() or not (tmp_path / "records.jsonl").read_text()


def test_round_trip_and_pandas(tmp_path):
    rec = SampleRecord(sample_id="s1", run_id="m/none", pruner="none", output="A", extracted="A", correct=True,
                       status="ok", latency={"decode": 0.1, "vision": 0.2, "total": 0.3})
    with RecordWriter(tmp_path / "records.jsonl") as w:
        w.write(rec)
    line = json.loads((tmp_path / "records.jsonl").read_text())
    assert line["schema_version"] == SCHEMA_VERSION and "latency_batched" not in line  # written only when set
    assert read_typed_records(tmp_path) == [rec]
    frame = pd.read_json(tmp_path / "records.jsonl", lines=True)
    assert frame.loc[0, "sample_id"] == "s1" and frame.loc[0, "latency"]["vision"] == 0.2


def test_newer_or_broken_records_are_refused_with_one_line(tmp_path):
    with pytest.raises(RecordError, match=r"here: record schema version 9 is newer"):
        parse_record({"sample_id": "a", "schema_version": 9}, "here")
    with pytest.raises(RecordError, match=r"here: correct: "):
        parse_record({"sample_id": "a", "correct": "maybe"}, "here")
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps({"sample_id": "a", "error": None}) + "\n"
                    + json.dumps({"sample_id": "b", "bogus": 1}) + "\n")
    with pytest.warns(UserWarning, match=r"records.jsonl \(record 2\): bogus"):
        assert list(latest_records(tmp_path)) == ["a"]  # one bad line does not hide the run


def test_migration_derives_the_score_status():
    base = {"sample_id": "a", "schema": 1, "error": None}
    assert migrate({**base, "output": "A", "extracted": "A"})["status"] == "ok"
    assert migrate({**base, "output": "?", "extracted": None})["status"] == "unanswered"
    assert migrate({**base, "output": "A", "extracted": "A", "invalid_reason": "no options"})["status"] == \
        "invalid_sample"
    assert migrate({**base, "output": None})["status"] is None
    assert "schema" not in migrate(base) and migrate(base)["schema_version"] == SCHEMA_VERSION


def test_stage_names_are_defined_once():
    import harness.models.base as adapters
    import harness.report.load as report

    assert adapters.STAGES is STAGES and report.STAGES is STAGES
    assert "prune" in STAGES and "gaze" in STAGES


def _backend_internals(source: str) -> list[str]:
    """Modules below a backend package (``harness.backends.NAME.MODULE``) that ``source`` imports."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found += [n for n in names if n.startswith("harness.backends.") and n.count(".") > 2]
    return found


def test_the_runner_imports_no_backend_internals():
    """The flow is one-way: harness/runner names a backend only through its package (the factory in
    components.py), never a backend module's own types (BatchItem lives in harness/models/request.py)."""
    runner = Path(__file__).resolve().parents[1] / "harness" / "runner"
    offenders = {p.name: _backend_internals(p.read_text()) for p in sorted(runner.glob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}
    # the check sees the import the engine had before
    assert _backend_internals("from harness.backends.vllm.engine import BatchItem") == ["harness.backends.vllm.engine"]

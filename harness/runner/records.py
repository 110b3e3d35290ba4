"""Per-sample JSONL records: appended and flushed as each sample completes; read back for resume.

Why JSONL, one line per sample, flushed + fsynced: a run killed at any point (OOM, preemption,
Ctrl-C) loses at most the sample in flight; the partial last line it may leave is skipped on
read and sealed with a newline before the next append, so nothing already written is lost.
A rerun reads every record file of the run directory (all shards, any world size) to know
which samples are done.

What a line holds is ``schema.SampleRecord``: ``RecordWriter.write`` validates every record
against it, and ``read_typed_records`` / ``latest_records`` give typed records back (older
versions migrated). ``iter_records`` / ``read_run_records`` stay for raw access (tests, tools).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from harness.runner.schema import RecordError, SampleRecord, parse_record

R = TypeVar("R", SampleRecord, dict[str, Any])
RECORDS_GLOB = "records*.jsonl"
RUN_FILE = "run.json"  # beside the records: which model x benchmark x pruner setting this run is


def records_filename(rank: int = 0, world_size: int = 1) -> str:
    """One file per rank, so data-parallel ranks never write the same file."""
    return "records.jsonl" if world_size <= 1 else f"records.rank{rank:03d}-of-{world_size:03d}.jsonl"


def _jsonable(value: Any) -> Any:
    """Numpy/torch scalars and arrays, paths and NaN -> plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "tolist"):  # torch tensors
        return _jsonable(value.tolist())
    return str(value)


class RecordWriter:
    """Append-only JSONL writer; every ``write`` is flushed and fsynced before it returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fh: Any = None  # opened on the first write: a run that writes nothing leaves no file

    def _seal_partial_line(self) -> None:
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    with self.path.open("ab") as out:
                        out.write(b"\n")

    def write(self, record: SampleRecord | dict[str, Any]) -> None:
        """Validate ``record`` against :class:`SampleRecord` (a dict is parsed into one first), then append it."""
        typed = record if isinstance(record, SampleRecord) else parse_record(record, str(self.path))
        line = json.dumps(_jsonable(typed.to_json_dict()), ensure_ascii=False, allow_nan=False)
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._seal_partial_line()
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of one file; an undecodable line (a write cut short) is skipped with a warning."""
    path = Path(path)
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                warnings.warn(f"{path}:{lineno}: skipping a truncated/corrupt record line", stacklevel=2)
                continue
            if isinstance(rec, dict):
                yield rec


def record_files(run_dir: str | Path) -> list[Path]:
    return sorted(Path(run_dir).glob(RECORDS_GLOB))


def read_run_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of a run directory, all shards, in file order."""
    out: list[dict[str, Any]] = []
    for path in record_files(run_dir):
        out.extend(iter_records(path))
    return out


def read_typed_records(run_dir: str | Path) -> list[SampleRecord]:
    """Every record of a run directory as :class:`SampleRecord` (older versions migrated).

    A line that is JSON but not a valid record (an unknown key, a wrong type, a newer schema) is
    skipped with a warning naming the file, line and cause, like a truncated line: one bad line
    must not hide the rest of a run.
    """
    out: list[SampleRecord] = []
    for path in record_files(run_dir):
        for lineno, raw in enumerate(iter_records(path), 1):
            try:
                out.append(parse_record(raw, f"{path} (record {lineno})"))
            except RecordError as exc:
                warnings.warn(f"skipping an invalid record: {exc}", stacklevel=2)
    return out


def _sample_id(rec: SampleRecord | dict[str, Any]) -> str:
    return str(rec.sample_id if isinstance(rec, SampleRecord) else rec.get("sample_id"))


def _failed(rec: SampleRecord | dict[str, Any]) -> bool:
    return (rec.error if isinstance(rec, SampleRecord) else rec.get("error")) is not None


def latest_by_sample(records: list[R]) -> dict[str, R]:
    """The last record per sample id; a successful record wins over a later failed retry."""
    best: dict[str, R] = {}
    for rec in records:
        sid = _sample_id(rec)
        prev = best.get(sid)
        if prev is None or not (not _failed(prev) and _failed(rec)):
            best[sid] = rec
    return best


def latest_records(run_dir: str | Path) -> dict[str, SampleRecord]:
    """The record that counts per sample of a run directory (all shards), typed."""
    return latest_by_sample(read_typed_records(run_dir))


def done_sample_ids(run_dir: str | Path, retry_failed: bool = True) -> set[str]:
    """Samples a rerun skips: those with a successful record (and failed ones unless retried)."""
    return {sid for sid, rec in latest_records(run_dir).items() if rec.ok or not retry_failed}


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename), so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(_jsonable(data), indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)

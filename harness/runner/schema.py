"""The per-sample record, typed: what the runner writes, the resume reads and the report flattens.

Why a schema: a record used to be a dict of ~25 keys built in one place, filled in four and read
back by string keys in three others, so a renamed or misspelt key was silently ``None`` in the
report. Here every field is declared once, with its type; the writer validates each record
against this model (``extra="forbid"``: a key not declared here cannot reach disk) and the readers
get the same model back. On disk a record is still one JSON object per line, loadable with pandas.

Versions (``schema_version``): 1 = records written before this module (they carry ``"schema": 1``
or no version at all); 2 = this model. :func:`migrate` turns a version-1 record into a version-2
one (the committed ``results/ci_regression`` baseline is version 1 and loads through it). A record
of a newer version than this code knows is refused with a line naming it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.stages import LATENCY_KEYS

SCHEMA_VERSION = 2

#: How a sample scored (``benchmarks.scoring``): ``ok`` (a letter), ``unanswered`` (no letter),
#: ``invalid_sample`` (the sample cannot be scored), ``no_prediction`` (no output).
Status = Literal["ok", "unanswered", "invalid_sample", "no_prediction"]


#: Fields written only when set, as version 1 did: batched generation, an invalid sample, adapter extras.
ONLY_WHEN_SET = frozenset({"latency_batched", "latency_amortized", "invalid_reason", "generation_extra"})


class RecordError(ValueError):
    """A record line that is not a valid record (unknown key, wrong type, newer schema)."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorInfo(_Part):
    """Why a sample failed: the stage (data, decode, prompt, prune, evidence, generate, score)."""

    stage: str
    type: str
    message: str
    traceback: str = ""


class Tokens(_Part):
    """LLM token counts of one generation (``harness.models.base.TokenCounts``) plus AutoGaze's gazes."""

    visual_before: int | None = None
    visual_after: int | None = None
    prompt: int | None = None
    generated: int | None = None
    gazes: int | None = None  # AutoGaze's own gaze count (None when no AutoGaze ran)


class BudgetInfo(_Part):
    """The run's budget rule (``harness.runner.sweep.Budget``)."""

    kind: str = "none"
    value: float | int | None = None
    match: str | None = None


class SelectionSummary(_Part):
    """What the pruner kept: counts, the token grid, per-group counts, small facts and thumbnail masks."""

    kept: int | None = None
    total: int | None = None
    geometry: dict[str, Any] | None = None
    kept_per_group: list[int] | None = None
    info: dict[str, Any] = Field(default_factory=dict)
    masks: dict[str, Any] | None = None


class SampleRecord(BaseModel):
    """One sample of one run (model x benchmark x pruner setting). Field order is the order on disk."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    schema_version: int = SCHEMA_VERSION
    # which run and sample
    run_id: str | None = None
    sample_id: str
    benchmark: str | None = None
    model: str | None = None
    tiny_model: bool = False
    pruner: str | None = None
    pruner_label: str | None = None
    pruner_params: dict[str, Any] = Field(default_factory=dict)
    budget: BudgetInfo | None = None
    # the question
    video: str | None = None
    question: str | None = None
    options: list[str] | None = None
    answer: str | None = None
    splits: dict[str, Any] = Field(default_factory=dict)
    # the answer and its score (benchmarks.scoring.score_answer)
    prompt: str | None = None
    output: str | None = None
    extracted: str | None = None
    correct: bool | None = None
    counted: bool = True
    status: Status | None = None
    invalid_reason: str | None = None
    extraction: str | None = None
    # what it cost
    tokens: Tokens | None = None
    selection: SelectionSummary | None = None
    latency: dict[str, float] = Field(default_factory=dict)  # seconds per stage (harness.stages)
    latency_batched: int | None = None  # >1: the LLM stages are a batched call's time shared out
    latency_amortized: bool | None = None
    peak_memory_mb: float | None = None
    evidence: dict[str, Any] | None = None
    frames: dict[str, Any] | None = None
    gaze_cache: str | None = None
    frames_shared: bool | None = None
    generation_extra: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    rank: int | None = None
    finished: str | None = None

    @field_validator("latency")
    @classmethod
    def _known_stages(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(LATENCY_KEYS))
        if unknown:
            raise ValueError(f"unknown latency stage(s) {unknown}; valid: {', '.join(LATENCY_KEYS)}")
        return value

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json_dict(self) -> dict[str, Any]:
        """The record as written, re-validated first (a nested dict may have been edited): every field,
        except those of :data:`ONLY_WHEN_SET` and ``selection.masks`` when None (as version 1 wrote them)."""
        out = type(self).model_validate(self.model_dump()).model_dump()
        if out["selection"] is not None and out["selection"]["masks"] is None:
            del out["selection"]["masks"]  # absent when there is nothing to draw (``none`` keeps everything)
        return {k: v for k, v in out.items() if not (v is None and k in ONLY_WHEN_SET)}


def _derive_status(rec: dict[str, Any]) -> str | None:
    """A version-1 record's score status, from the fields that decided it."""
    if rec.get("error") is not None or rec.get("output") is None:
        return None
    if rec.get("invalid_reason"):
        return "invalid_sample"
    return "unanswered" if rec.get("extracted") is None else "ok"


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """A record as read from disk -> the current version's field set (a copy; ``raw`` is untouched).

    Version 1 (``"schema": 1`` or no version key): the version moves to ``schema_version`` and the
    score ``status`` is derived. Latencies are kept as recorded: a version-1 baseline run's selection
    time sits under ``gaze`` (it cannot be told apart from an adapter's own gazing, e.g. NVILA's).
    """
    rec = dict(raw)
    version = rec.pop("schema_version", None)
    legacy = rec.pop("schema", None)
    version = version if version is not None else (legacy if legacy is not None else 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RecordError(f"record schema version {version!r} is newer than this code's ({SCHEMA_VERSION}); "
                          f"update the harness to read it")
    if version == 1:
        rec.setdefault("status", _derive_status(rec))
    rec["schema_version"] = SCHEMA_VERSION
    return rec


def parse_record(raw: dict[str, Any], where: str = "record") -> SampleRecord:
    """Migrate and validate one record; :class:`RecordError` names ``where`` and the first problem."""
    try:
        return SampleRecord.model_validate(migrate(raw))
    except RecordError as exc:
        raise RecordError(f"{where}: {exc}") from None
    except ValidationError as exc:
        raise RecordError(f"{where}: {problem(exc)}") from None


def problem(exc: ValidationError) -> str:
    """The first thing the schema refused, in one line: ``field.path: message``."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "(record)"
    return f"{loc}: {first.get('msg')}"

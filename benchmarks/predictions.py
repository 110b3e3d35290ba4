"""Read model outputs to score: our JSONL, or lmms-eval's ``*_samples_<task>.jsonl`` logs.

Ours: one JSON object per line with a question id (``question_id`` | ``sample_id`` | ``id``)
and the raw model output (``output`` | ``text`` | ``response`` | ``prediction``; null when
the sample failed).

lmms-eval (``EvaluationTracker.save_results_samples``): one object per document with
``doc_id``, ``filtered_resps`` (the output after its filters and ``<think>`` stripping: a string,
or a list whose first element is the string, older releases nest one more level), ``resps``,
and, until 0.7.x, the ``doc`` itself; 0.7.x drops ``doc`` but keeps the task's
``process_results`` dict (e.g. ``videomme_perception_score``) which holds ``question_id``. The
question id is read from ``doc`` first, else from any such dict.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ID_KEYS = ("question_id", "sample_id", "id")
OUTPUT_KEYS = ("output", "text", "response", "prediction")


def _first_string(value: Any) -> str | None:
    while isinstance(value, list):
        if not value:
            return None
        value = value[0]
    return value if isinstance(value, str) else None


def _metric_dict(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The task's ``process_results`` dict of an lmms-eval sample (the one holding ``question_id``)."""
    for key, value in obj.items():
        if key != "doc" and isinstance(value, dict) and "question_id" in value:
            return value
    return None


def _lmms_eval_pair(obj: dict[str, Any], where: str) -> tuple[str, str | None]:
    qid = None
    doc = obj.get("doc")
    metric = _metric_dict(obj)
    if isinstance(doc, dict) and "question_id" in doc:
        qid = doc["question_id"]
    elif metric is not None:
        qid = metric["question_id"]
    if qid is None:
        raise ValueError(
            f"{where}: lmms-eval sample (doc_id {obj.get('doc_id')}) has no question_id in 'doc' or a metric dict"
        )
    output = _first_string(obj.get("filtered_resps"))
    if output is None:
        output = _first_string(obj.get("resps"))
    return str(qid), output


def _our_pair(obj: dict[str, Any], where: str) -> tuple[str, str | None]:
    qid = next((obj[k] for k in ID_KEYS if k in obj), None)
    if qid is None:
        raise ValueError(f"{where}: no question id (one of {', '.join(ID_KEYS)})")
    key = next((k for k in OUTPUT_KEYS if k in obj), None)
    if key is None:
        raise ValueError(f"{where}: no model output (one of {', '.join(OUTPUT_KEYS)})")
    output = obj[key]
    if output is not None and not isinstance(output, str):
        raise ValueError(f"{where}: output must be a string or null, got {type(output).__name__}")
    return str(qid), output


@dataclass
class PredictionLog:
    """Everything a predictions file says besides its outputs: which format, what scored it before.

    ``pred_answers``: for lmms-eval logs, the letter its task's own extractor wrote per question
    (``pred_answer`` in the metric dict), which tells which extractor (so which release) wrote
    the log. ``extractions``: for our run records, the convention the run scored with.
    """

    pairs: list[tuple[str, str | None]] = field(default_factory=list)
    lmms_eval: bool = False
    pred_answers: dict[str, str] = field(default_factory=dict)
    extractions: set[str] = field(default_factory=set)


def read_prediction_log(path: str | Path) -> PredictionLog:
    """All (question_id, output) pairs plus what the file says about how it was scored."""
    log = PredictionLog()
    for obj, where in _objects(Path(path)):
        if "doc_id" in obj and ("filtered_resps" in obj or "resps" in obj):
            qid, output = _lmms_eval_pair(obj, where)
            log.lmms_eval = True
            metric = _metric_dict(obj)
            if metric is not None and isinstance(metric.get("pred_answer"), str):
                log.pred_answers[qid] = metric["pred_answer"]
        else:
            qid, output = _our_pair(obj, where)
            if isinstance(obj.get("extraction"), str):
                log.extractions.add(obj["extraction"])
        log.pairs.append((qid, output))
    return log


def read_predictions(path: str | Path) -> Iterator[tuple[str, str | None]]:
    """(question_id, output) per line; the format is recognised per line."""
    for obj, where in _objects(Path(path)):
        if "doc_id" in obj and ("filtered_resps" in obj or "resps" in obj):
            yield _lmms_eval_pair(obj, where)
        else:
            yield _our_pair(obj, where)


def _objects(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """Each non-empty line's JSON object and its ``file:line`` (bad JSON names the line)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file not found")
    with path.open("rb") as fh:  # bytes: a line that is not UTF-8 is named, not a bare decode error
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{where}: not UTF-8 text (byte {exc.start + 1} of the line)") from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a BOM some editors write
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from exc
            except RecursionError:
                raise ValueError(f"{where}: JSON nested too deeply to be a prediction") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object per line")
            yield obj, where
